//! `SplitSigmas`: cuts a schedule at a step into `high_sigmas` (`[..=step]`) and `low_sigmas`
//! (`[step..]`), sharing the sigma at `step`.

use kiln_graph::{
    ExecutionContext, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};

use crate::node_util::{object, size_input};
use crate::types::Sigmas;

/// `SplitSigmas`.
pub struct SplitSigmas;

/// Python's `sigmas[:step + 1]`, `sigmas[step:]` (slices clamp to the list).
pub(crate) fn split_at_step(sigmas: &[f32], step: usize) -> (Vec<f32>, Vec<f32>) {
    let high_end = step.saturating_add(1).min(sigmas.len());
    let low_start = step.min(sigmas.len());
    (sigmas[..high_end].to_vec(), sigmas[low_start..].to_vec())
}

impl Node for SplitSigmas {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("SplitSigmas")
            .category("sampling/custom_sampling/sigmas")
            .python_module("comfy_extras.nodes_custom_sampler")
            .input(InputSpec::required("sigmas", Sigmas::TYPE))
            .input(InputSpec::required("step", IntInput::new(0, 0, 10000)))
            .output(OutputSpec::new(Sigmas::TYPE).named("high_sigmas"))
            .output(OutputSpec::new(Sigmas::TYPE).named("low_sigmas"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let sigmas = object::<Sigmas>(inputs, "sigmas")?;
        let step = size_input(inputs, "step")?;
        let (high, low) = split_at_step(&sigmas.values, step);
        Ok(NodeOutput::new(vec![
            Sigmas::new(high).into_value(),
            Sigmas::new(low).into_value(),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;
    use kiln_graph::Value;

    #[test]
    fn splits_like_python_slices() {
        let sigmas = [4.0, 3.0, 2.0, 1.0, 0.0];
        assert_eq!(
            split_at_step(&sigmas, 2),
            (vec![4.0, 3.0, 2.0], vec![2.0, 1.0, 0.0])
        );
        assert_eq!(split_at_step(&sigmas, 0), (vec![4.0], sigmas.to_vec()));
        assert_eq!(split_at_step(&sigmas, 99), (sigmas.to_vec(), vec![]));
    }

    #[test]
    fn schema_and_bad_step() {
        let info = SplitSigmas.schema().to_object_info(&|_| Vec::new());
        assert_eq!(
            info["output_name"],
            serde_json::json!(["high_sigmas", "low_sigmas"])
        );
        assert_eq!(
            info["input"]["required"]["step"],
            serde_json::json!(["INT", {"default": 0, "min": 0, "max": 10000}])
        );
        let err = run_node(
            &SplitSigmas,
            &NodeInputs::new()
                .with("sigmas", Sigmas::new(vec![1.0, 0.0]).into_value())
                .with("step", Value::Int(-1)),
        )
        .unwrap_err();
        assert!(err.to_string().contains("step"), "{err}");
    }
}
