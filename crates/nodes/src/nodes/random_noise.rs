//! `RandomNoise`: the seeded initial noise of `SamplerCustomAdvanced` (the same draw as
//! `KSampler`'s for the same seed, per `batch_index`).

use kiln_graph::{
    ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, OutputSpec,
};

use crate::nodes::ksampler::seed_input;
use crate::types::Noise;

/// `RandomNoise`.
pub struct RandomNoise;

impl Node for RandomNoise {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("RandomNoise")
            .category("sampling/custom_sampling/noise")
            .python_module("comfy_extras.nodes_custom_sampler")
            .input(InputSpec::required("noise_seed", seed_input()))
            .output(OutputSpec::new(Noise::TYPE))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let seed = inputs.uint("noise_seed")?;
        Ok(NodeOutput::new(vec![Noise::random(seed).into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;
    use kiln_graph::Value;

    #[test]
    fn schema_matches_comfyui() {
        let info = RandomNoise.schema().to_object_info(&|_| Vec::new());
        assert_eq!(
            info["input"]["required"]["noise_seed"],
            serde_json::json!(["INT", {"default": 0, "min": 0, "max": 18446744073709551615u64,
                "control_after_generate": true}])
        );
        assert_eq!(info["output"], serde_json::json!(["NOISE"]));
        assert_eq!(info["category"], "sampling/custom_sampling/noise");
    }

    #[test]
    fn keeps_the_seed_and_rejects_a_negative_one() {
        let out = run_node(
            &RandomNoise,
            &NodeInputs::new().with("noise_seed", Value::Int(77)),
        )
        .unwrap();
        let noise = out.values[0].downcast::<Noise>("NOISE").unwrap();
        assert_eq!(*noise, Noise::random(77));
        let err = run_node(
            &RandomNoise,
            &NodeInputs::new().with("noise_seed", Value::Int(-1)),
        )
        .unwrap_err();
        assert!(err.to_string().contains("noise_seed"), "{err}");
    }
}
