//! `EmptySD3LatentImage`: a batch of zero 16-channel latents `[B, 16, H/8, W/8]` (SD3 and
//! Flux).

use kiln_graph::{
    ExecutionContext, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};

use crate::node_util::MAX_RESOLUTION;
use crate::nodes::empty_latent_image::empty_latent_output;
use crate::types::Latent;

/// `EmptySD3LatentImage`.
pub struct EmptySd3LatentImage;

/// Latent channels of the SD3/Flux VAE.
const SD3_LATENT_CHANNELS: usize = 16;

impl Node for EmptySd3LatentImage {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("EmptySD3LatentImage")
            .category("latent/sd3")
            .python_module("comfy_extras.nodes_sd3")
            .input(InputSpec::required(
                "width",
                IntInput::new(1024, 16, MAX_RESOLUTION).step(16),
            ))
            .input(InputSpec::required(
                "height",
                IntInput::new(1024, 16, MAX_RESOLUTION).step(16),
            ))
            .input(InputSpec::required("batch_size", IntInput::new(1, 1, 4096)))
            .output(OutputSpec::new(Latent::TYPE))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        empty_latent_output(inputs, SD3_LATENT_CHANNELS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;
    use kiln_graph::Value;

    #[test]
    fn schema_matches_comfyui() {
        let info = EmptySd3LatentImage.schema().to_object_info(&|_| Vec::new());
        assert_eq!(
            info["input"]["required"]["width"],
            serde_json::json!(["INT", {"default": 1024, "min": 16, "max": 16384, "step": 16}])
        );
        assert_eq!(
            info["input"]["required"]["batch_size"],
            serde_json::json!(["INT", {"default": 1, "min": 1, "max": 4096}])
        );
        assert_eq!(info["category"], "latent/sd3");
        assert_eq!(info["python_module"], "comfy_extras.nodes_sd3");
    }

    #[test]
    fn sixteen_channel_zeros_floor_divided_by_eight() {
        let inputs = NodeInputs::new()
            .with("width", Value::Int(200))
            .with("height", Value::Int(64))
            .with("batch_size", Value::Int(2));
        let out = run_node(&EmptySd3LatentImage, &inputs).unwrap();
        let latent = out.values[0].downcast::<Latent>("LATENT").unwrap();
        assert_eq!(latent.samples.dims(), &[2, 16, 8, 25]);
        let sum: f32 = latent
            .samples
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(sum, 0.0);
        let err = run_node(
            &EmptySd3LatentImage,
            &NodeInputs::new()
                .with("width", Value::Int(64))
                .with("height", Value::Int(-64))
                .with("batch_size", Value::Int(1)),
        )
        .unwrap_err();
        assert!(err.to_string().contains("height"), "{err}");
    }
}
