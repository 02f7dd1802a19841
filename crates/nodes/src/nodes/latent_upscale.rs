//! `LatentUpscale` ("Upscale Latent"): resizes latents to a pixel size (÷ 8), keeping the aspect
//! ratio when one side is 0, never below 64 pixels.

use kiln_graph::{
    ComboInput, ExecutionContext, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput,
    NodeSchema, OutputSpec,
};

use crate::node_util::{object, size_input, MAX_RESOLUTION};
use crate::resample::{common_upscale, python_round, Crop, Planes, UpscaleMethod};
use crate::types::Latent;

/// `LatentUpscale`.
pub struct LatentUpscale;

impl Node for LatentUpscale {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("LatentUpscale")
            .display_name("Upscale Latent")
            .category("latent")
            .input(InputSpec::required("samples", "LATENT"))
            .input(InputSpec::required(
                "upscale_method",
                ComboInput::new(UpscaleMethod::LATENT.map(UpscaleMethod::name)),
            ))
            .input(InputSpec::required(
                "width",
                IntInput::new(512, 0, MAX_RESOLUTION).step(8),
            ))
            .input(InputSpec::required(
                "height",
                IntInput::new(512, 0, MAX_RESOLUTION).step(8),
            ))
            .input(InputSpec::required("crop", ComboInput::new(Crop::NAMES)))
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
        let crop = Crop::parse(inputs.string("crop")?, "crop")?;
        let (mut width, mut height) = (size_input(inputs, "width")?, size_input(inputs, "height")?);
        if width == 0 && height == 0 {
            return Ok(NodeOutput::new(vec![latent.as_ref().clone().into_value()]));
        }
        let (_, _, latent_h, latent_w) = latent.dims4("samples")?;
        if width == 0 {
            height = height.max(64);
            width = python_round(latent_w as f64 * height as f64 / latent_h as f64).max(64);
        } else if height == 0 {
            width = width.max(64);
            height = python_round(latent_h as f64 * width as f64 / latent_w as f64).max(64);
        } else {
            width = width.max(64);
            height = height.max(64);
        }
        let planes = Planes::from_nchw(&latent.samples)?;
        let resized = common_upscale(&planes, width / 8, height / 8, method, crop)?;
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

    fn upscale(width: i128, height: i128) -> Vec<usize> {
        let latent = Latent::zeros(1, 4, 8, 16).unwrap();
        let inputs = NodeInputs::new()
            .with("samples", latent.into_value())
            .with("upscale_method", Value::String("bilinear".into()))
            .with("width", Value::Int(width))
            .with("height", Value::Int(height))
            .with("crop", Value::String("disabled".into()));
        let out = run_node(&LatentUpscale, &inputs).unwrap();
        let latent = out.values[0].downcast::<Latent>("LATENT").unwrap();
        latent.samples.dims().to_vec()
    }

    #[test]
    fn sizes_follow_comfyui_rules() {
        assert_eq!(upscale(256, 128), [1, 4, 16, 32]);
        // Height 0 keeps the aspect: round(8 * 256 / 16) = 128 px.
        assert_eq!(upscale(256, 0), [1, 4, 16, 32]);
        // Width 0: round(16 * 64 / 8) = 128 px.
        assert_eq!(upscale(0, 64), [1, 4, 8, 16]);
        // Minimum 64 px per side.
        assert_eq!(upscale(16, 16), [1, 4, 8, 8]);
        // Both 0: unchanged.
        assert_eq!(upscale(0, 0), [1, 4, 8, 16]);
    }

    #[test]
    fn unknown_method_names_the_input() {
        let inputs = NodeInputs::new()
            .with("samples", Latent::zeros(1, 4, 8, 8).unwrap().into_value())
            .with("upscale_method", Value::String("lanczos".into()))
            .with("width", Value::Int(128))
            .with("height", Value::Int(128))
            .with("crop", Value::String("disabled".into()));
        let err = run_node(&LatentUpscale, &inputs).unwrap_err();
        assert!(err.to_string().contains("upscale_method"), "{err}");
    }
}
