//! `LatentUpscaleBy` ("Upscale Latent By"): resizes latents by a factor.

use kiln_graph::{
    ComboInput, ExecutionContext, FloatInput, InputSpec, Node, NodeError, NodeInputs, NodeOutput,
    NodeSchema, OutputSpec,
};

use crate::node_util::object;
use crate::resample::{common_upscale, python_round, Crop, Planes, UpscaleMethod};
use crate::types::Latent;

/// `LatentUpscaleBy`.
pub struct LatentUpscaleBy;

impl Node for LatentUpscaleBy {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("LatentUpscaleBy")
            .display_name("Upscale Latent By")
            .category("latent")
            .input(InputSpec::required("samples", "LATENT"))
            .input(InputSpec::required(
                "upscale_method",
                ComboInput::new(UpscaleMethod::LATENT.map(UpscaleMethod::name)),
            ))
            .input(InputSpec::required(
                "scale_by",
                FloatInput::new(1.5, 0.01, 8.0).step(0.01),
            ))
            .output(OutputSpec::new("LATENT"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let latent = object::<Latent>(inputs, "samples")?;
        let method = UpscaleMethod::parse(
            inputs.string("upscale_method")?,
            &UpscaleMethod::LATENT,
            "upscale_method",
        )?;
        let scale_by = inputs.float("scale_by")?;
        let (_, _, h, w) = latent.dims4("samples")?;
        let width = python_round(w as f64 * scale_by);
        let height = python_round(h as f64 * scale_by);
        let resized = common_upscale(
            &Planes::from_nchw(&latent.samples)?,
            width,
            height,
            method,
            Crop::Disabled,
        )?;
        let mut out = latent.as_ref().clone();
        out.samples = resized.to_nchw()?;
        Ok(NodeOutput::new(vec![out.into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;
    use kiln_graph::Value;

    #[test]
    fn scales_and_rounds_half_to_even() {
        let inputs = NodeInputs::new()
            .with("samples", Latent::zeros(1, 4, 5, 3).unwrap().into_value())
            .with("upscale_method", Value::String("nearest-exact".into()))
            .with("scale_by", Value::Float(1.5));
        let out = run_node(&LatentUpscaleBy, &inputs).unwrap();
        let latent = out.values[0].downcast::<Latent>("LATENT").unwrap();
        // round(7.5) = 8, round(4.5) = 4.
        assert_eq!(latent.samples.dims(), &[1, 4, 8, 4]);
    }
}
