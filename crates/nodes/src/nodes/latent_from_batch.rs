//! `LatentFromBatch`: a slice of a latent batch, remembering the original batch positions so
//! sampling draws the same noise per image as the full batch would.

use kiln_graph::{
    ExecutionContext, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};

use crate::error::TensorContext;
use crate::node_util::{object, size_input};
use crate::types::Latent;

/// `LatentFromBatch` ("Latent From Batch").
pub struct LatentFromBatch;

impl Node for LatentFromBatch {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("LatentFromBatch")
            .display_name("Latent From Batch")
            .category("latent/batch")
            .input(InputSpec::required("samples", "LATENT"))
            .input(InputSpec::required("batch_index", IntInput::new(0, 0, 63)))
            .input(InputSpec::required("length", IntInput::new(1, 1, 64)))
            .output(OutputSpec::new("LATENT"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let latent = object::<Latent>(inputs, "samples")?;
        let (batch, ..) = latent.dims4("samples")?;
        let start = size_input(inputs, "batch_index")?.min(batch.saturating_sub(1));
        let length = size_input(inputs, "length")?.min(batch - start);
        let mut out = latent.as_ref().clone();
        out.samples = latent
            .samples
            .narrow(0, start, length)
            .context("LatentFromBatch: slicing samples")?;
        if let Some(mask) = &latent.noise_mask {
            let masks = mask.dim(0).context("LatentFromBatch: reading noise_mask")?;
            if masks != 1 {
                let mask = if masks < batch {
                    let repeats = batch.div_ceil(masks);
                    let mut shape = vec![1; mask.rank()];
                    shape[0] = repeats;
                    mask.repeat(shape)
                        .and_then(|m| m.narrow(0, 0, batch))
                        .context("LatentFromBatch: repeating noise_mask")?
                } else {
                    mask.clone()
                };
                out.noise_mask = Some(
                    mask.narrow(
                        0,
                        start,
                        length.min(mask.dim(0).unwrap_or(0).saturating_sub(start)),
                    )
                    .context("LatentFromBatch: slicing noise_mask")?,
                );
            }
        }
        out.batch_index = Some(match &latent.batch_index {
            None => (start..start + length).collect(),
            Some(indices) => indices.iter().skip(start).take(length).copied().collect(),
        });
        Ok(NodeOutput::new(vec![out.into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;
    use candle_core::{Device, Tensor};
    use kiln_graph::Value;

    fn batch(n: usize) -> Latent {
        let values: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let samples = Tensor::from_vec(values, (n, 1, 1, 1), &Device::Cpu).unwrap();
        Latent::new(samples)
    }

    fn take(latent: Latent, index: i128, length: i128) -> Latent {
        let inputs = NodeInputs::new()
            .with("samples", latent.into_value())
            .with("batch_index", Value::Int(index))
            .with("length", Value::Int(length));
        let out = run_node(&LatentFromBatch, &inputs).unwrap();
        out.values[0]
            .downcast::<Latent>("LATENT")
            .unwrap()
            .as_ref()
            .clone()
    }

    #[test]
    fn slices_and_clamps_like_comfyui() {
        let out = take(batch(4), 1, 2);
        assert_eq!(
            out.samples.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [1.0, 2.0]
        );
        assert_eq!(out.batch_index, Some(vec![1, 2]));
        // Index past the end clamps to the last item, length to what is left.
        let out = take(batch(4), 10, 5);
        assert_eq!(out.batch_index, Some(vec![3]));
        // An existing batch_index is sliced, not recomputed.
        let mut input = batch(3);
        input.batch_index = Some(vec![7, 8, 9]);
        assert_eq!(take(input, 1, 2).batch_index, Some(vec![8, 9]));
    }

    #[test]
    fn per_item_masks_are_sliced_single_masks_kept() {
        let mut input = batch(4);
        input.noise_mask =
            Some(Tensor::zeros((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap());
        assert_eq!(take(input, 2, 2).noise_mask.unwrap().dims(), &[1, 1, 2, 2]);
        let mut input = batch(4);
        let masks: Vec<f32> = (0..2).map(|i| i as f32).collect();
        input.noise_mask = Some(Tensor::from_vec(masks, (2, 1, 1, 1), &Device::Cpu).unwrap());
        // Two masks repeat to four: [0, 1, 0, 1]; items 1..3 get [1, 0].
        let mask = take(input, 1, 2).noise_mask.unwrap();
        assert_eq!(
            mask.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [1.0, 0.0]
        );
    }
}
