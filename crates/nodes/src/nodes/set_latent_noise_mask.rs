//! `SetLatentNoiseMask`: attaches an inpainting mask (`[B, 1, H, W]`) to latents.

use kiln_graph::{
    ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, OutputSpec,
};

use crate::error::TensorContext;
use crate::node_util::object;
use crate::types::{Latent, Mask};

/// `SetLatentNoiseMask` ("Set Latent Noise Mask").
pub struct SetLatentNoiseMask;

impl Node for SetLatentNoiseMask {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("SetLatentNoiseMask")
            .display_name("Set Latent Noise Mask")
            .category("latent/inpaint")
            .input(InputSpec::required("samples", "LATENT"))
            .input(InputSpec::required("mask", "MASK"))
            .output(OutputSpec::new("LATENT"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let latent = object::<Latent>(inputs, "samples")?;
        let mask = object::<Mask>(inputs, "mask")?;
        let (batch, height, width) = mask.dims3("mask")?;
        let mut out = latent.as_ref().clone();
        out.noise_mask = Some(
            mask.values
                .reshape((batch, 1, height, width))
                .context("SetLatentNoiseMask: reshaping the mask")?,
        );
        Ok(NodeOutput::new(vec![out.into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;
    use candle_core::{DType, Device, Tensor};

    #[test]
    fn mask_becomes_b1hw() {
        let mask = Mask::new(Tensor::ones((16, 24), DType::F32, &Device::Cpu).unwrap());
        let inputs = NodeInputs::new()
            .with("samples", Latent::zeros(1, 4, 2, 3).unwrap().into_value())
            .with("mask", mask.into_value());
        let out = run_node(&SetLatentNoiseMask, &inputs).unwrap();
        let latent = out.values[0].downcast::<Latent>("LATENT").unwrap();
        assert_eq!(latent.noise_mask.as_ref().unwrap().dims(), &[1, 1, 16, 24]);
    }
}
