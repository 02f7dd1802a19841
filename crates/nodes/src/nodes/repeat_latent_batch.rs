//! `RepeatLatentBatch`: the batch repeated `amount` times (with per-item masks and batch
//! indices offset per repeat).

use kiln_graph::{
    ExecutionContext, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};

use crate::error::TensorContext;
use crate::node_util::{object, size_input};
use crate::types::Latent;

/// `RepeatLatentBatch` ("Repeat Latent Batch").
pub struct RepeatLatentBatch;

fn repeat_batch(
    tensor: &candle_core::Tensor,
    amount: usize,
) -> candle_core::Result<candle_core::Tensor> {
    let mut shape = vec![1; tensor.rank()];
    if let Some(first) = shape.first_mut() {
        *first = amount;
    }
    tensor.repeat(shape)
}

impl Node for RepeatLatentBatch {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("RepeatLatentBatch")
            .display_name("Repeat Latent Batch")
            .category("latent/batch")
            .input(InputSpec::required("samples", "LATENT"))
            .input(InputSpec::required("amount", IntInput::new(1, 1, 64)))
            .output(OutputSpec::new("LATENT"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let latent = object::<Latent>(inputs, "samples")?;
        let amount = size_input(inputs, "amount")?.max(1);
        let mut out = latent.as_ref().clone();
        out.samples =
            repeat_batch(&latent.samples, amount).context("RepeatLatentBatch: samples")?;
        if let Some(mask) = &latent.noise_mask {
            if mask.dim(0).unwrap_or(1) > 1 {
                out.noise_mask =
                    Some(repeat_batch(mask, amount).context("RepeatLatentBatch: noise_mask")?);
            }
        }
        if let Some(indices) = &latent.batch_index {
            if let (Some(&max), Some(&min)) = (indices.iter().max(), indices.iter().min()) {
                let offset = max - min + 1;
                let mut repeated = indices.clone();
                for i in 1..amount {
                    repeated.extend(indices.iter().map(|x| x + i * offset));
                }
                out.batch_index = Some(repeated);
            }
        }
        Ok(NodeOutput::new(vec![out.into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;
    use kiln_graph::Value;

    #[test]
    fn repeats_samples_and_offsets_indices() {
        let mut latent = Latent::zeros(2, 4, 2, 2).unwrap();
        latent.batch_index = Some(vec![3, 4]);
        let inputs = NodeInputs::new()
            .with("samples", latent.into_value())
            .with("amount", Value::Int(3));
        let out = run_node(&RepeatLatentBatch, &inputs).unwrap();
        let latent = out.values[0].downcast::<Latent>("LATENT").unwrap();
        assert_eq!(latent.samples.dims(), &[6, 4, 2, 2]);
        assert_eq!(latent.batch_index, Some(vec![3, 4, 5, 6, 7, 8]));
    }
}
