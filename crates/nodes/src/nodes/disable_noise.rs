//! `DisableNoise`: zero initial noise for `SamplerCustomAdvanced` (continuing a partly sampled
//! latent).

use kiln_graph::{
    ExecutionContext, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, OutputSpec,
};

use crate::types::Noise;

/// `DisableNoise`.
pub struct DisableNoise;

impl Node for DisableNoise {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("DisableNoise")
            .category("sampling/custom_sampling/noise")
            .python_module("comfy_extras.nodes_custom_sampler")
            .output(OutputSpec::new(Noise::TYPE))
    }

    fn execute(
        &self,
        _inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        Ok(NodeOutput::new(vec![Noise::disabled().into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;

    #[test]
    fn gives_empty_noise_with_seed_zero_and_no_inputs() {
        let info = DisableNoise.schema().to_object_info(&|_| Vec::new());
        assert_eq!(info["input"], serde_json::json!({"required": {}}));
        let out = run_node(&DisableNoise, &NodeInputs::new()).unwrap();
        let noise = out.values[0].downcast::<Noise>("NOISE").unwrap();
        assert_eq!(*noise, Noise::disabled());
        assert_eq!(noise.seed, 0);
    }
}
