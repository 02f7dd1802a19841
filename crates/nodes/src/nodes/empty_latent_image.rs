//! `EmptyLatentImage`: a batch of zero latents `[B, 4, H/8, W/8]`.

use kiln_graph::{
    ExecutionContext, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};

use crate::node_util::{size_input, MAX_RESOLUTION};
use crate::types::Latent;

/// `EmptyLatentImage` ("Empty Latent Image").
pub struct EmptyLatentImage;

/// A zero latent batch of `channels` channels sized by the `width`, `height` and `batch_size`
/// inputs (pixel sizes floor-divided by eight), shared by the empty-latent nodes.
pub(crate) fn empty_latent_output(
    inputs: &NodeInputs,
    channels: usize,
) -> Result<NodeOutput, NodeError> {
    let width = size_input(inputs, "width")?;
    let height = size_input(inputs, "height")?;
    let batch = size_input(inputs, "batch_size")?;
    let latent = Latent::zeros(batch, channels, height / 8, width / 8)?;
    Ok(NodeOutput::new(vec![latent.into_value()]))
}

impl Node for EmptyLatentImage {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("EmptyLatentImage")
            .display_name("Empty Latent Image")
            .category("latent")
            .description("Create a new batch of empty latent images to be denoised via sampling.")
            .input(
                InputSpec::required("width", IntInput::new(512, 16, MAX_RESOLUTION).step(8))
                    .tooltip("The width of the latent images in pixels."),
            )
            .input(
                InputSpec::required("height", IntInput::new(512, 16, MAX_RESOLUTION).step(8))
                    .tooltip("The height of the latent images in pixels."),
            )
            .input(
                InputSpec::required("batch_size", IntInput::new(1, 1, 4096))
                    .tooltip("The number of latent images in the batch."),
            )
            .output(OutputSpec::new("LATENT").tooltip("The empty latent image batch."))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        empty_latent_output(inputs, 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;
    use kiln_graph::Value;

    #[test]
    fn shape_is_floor_divided_by_eight() {
        let inputs = NodeInputs::new()
            .with("width", Value::Int(100))
            .with("height", Value::Int(64))
            .with("batch_size", Value::Int(2));
        let out = run_node(&EmptyLatentImage, &inputs).unwrap();
        let latent = out.values[0].downcast::<Latent>("LATENT").unwrap();
        assert_eq!(latent.samples.dims(), &[2, 4, 8, 12]);
        assert!(latent.noise_mask.is_none() && latent.batch_index.is_none());
        let sum: f32 = latent.samples.sum_all().unwrap().to_scalar().unwrap();
        assert_eq!(sum, 0.0);
    }
}
