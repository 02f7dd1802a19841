//! `FlipSigmas`: reverses a schedule (for unsampling), replacing a leading 0 with 0.0001.

use kiln_graph::{
    ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, OutputSpec,
};

use crate::node_util::object;
use crate::types::Sigmas;

/// `FlipSigmas`.
pub struct FlipSigmas;

/// `sigmas.flip(0)` with a first 0 raised to 0.0001 (a sampler cannot start at σ = 0).
pub(crate) fn flip(sigmas: &[f32]) -> Vec<f32> {
    let mut flipped: Vec<f32> = sigmas.iter().rev().copied().collect();
    if let Some(first) = flipped.first_mut() {
        if *first == 0.0 {
            *first = 0.0001;
        }
    }
    flipped
}

impl Node for FlipSigmas {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("FlipSigmas")
            .category("sampling/custom_sampling/sigmas")
            .python_module("comfy_extras.nodes_custom_sampler")
            .input(InputSpec::required("sigmas", Sigmas::TYPE))
            .output(OutputSpec::new(Sigmas::TYPE))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let sigmas = object::<Sigmas>(inputs, "sigmas")?;
        Ok(NodeOutput::new(vec![
            Sigmas::new(flip(&sigmas.values)).into_value()
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverses_and_lifts_a_leading_zero() {
        assert_eq!(flip(&[3.0, 1.0, 0.0]), [0.0001, 1.0, 3.0]);
        assert_eq!(flip(&[3.0, 1.0, 0.5]), [0.5, 1.0, 3.0]);
        assert!(flip(&[]).is_empty());
        let info = FlipSigmas.schema().to_object_info(&|_| Vec::new());
        assert_eq!(info["output"], serde_json::json!(["SIGMAS"]));
        assert_eq!(info["category"], "sampling/custom_sampling/sigmas");
    }
}
