//! `ImageScale` ("Upscale Image"): resizes images to a size, 0 for one side keeps the aspect.

use kiln_graph::{
    ComboInput, ExecutionContext, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput,
    NodeSchema, OutputSpec,
};

use crate::node_util::{object, size_input, MAX_RESOLUTION};
use crate::resample::{common_upscale, python_round, Crop, Planes, UpscaleMethod};
use crate::types::Image;

/// `ImageScale`.
pub struct ImageScale;

impl Node for ImageScale {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("ImageScale")
            .display_name("Upscale Image")
            .category("image/upscaling")
            .input(InputSpec::required("image", "IMAGE"))
            .input(InputSpec::required(
                "upscale_method",
                ComboInput::new(UpscaleMethod::IMAGE.map(UpscaleMethod::name)),
            ))
            .input(InputSpec::required(
                "width",
                IntInput::new(512, 0, MAX_RESOLUTION).step(1),
            ))
            .input(InputSpec::required(
                "height",
                IntInput::new(512, 0, MAX_RESOLUTION).step(1),
            ))
            .input(InputSpec::required("crop", ComboInput::new(Crop::NAMES)))
            .output(OutputSpec::new("IMAGE"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let image = object::<Image>(inputs, "image")?;
        let method = UpscaleMethod::parse(
            inputs.string("upscale_method")?,
            &UpscaleMethod::IMAGE,
            "upscale_method",
        )?;
        let crop = Crop::parse(inputs.string("crop")?, "crop")?;
        let (mut width, mut height) = (size_input(inputs, "width")?, size_input(inputs, "height")?);
        if width == 0 && height == 0 {
            return Ok(NodeOutput::new(vec![image.as_ref().clone().into_value()]));
        }
        let (_, h, w, _) = image.dims4("image")?;
        if width == 0 {
            width = python_round(w as f64 * height as f64 / h as f64).max(1);
        } else if height == 0 {
            height = python_round(h as f64 * width as f64 / w as f64).max(1);
        }
        let planes = Planes::from_nhwc(&image.pixels)?;
        let resized = common_upscale(&planes, width, height, method, crop)?;
        Ok(NodeOutput::new(vec![
            Image::new(resized.to_nhwc()?).into_value()
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;
    use candle_core::{Device, Tensor};
    use kiln_graph::Value;

    #[test]
    fn keeps_aspect_when_one_side_is_zero() {
        let image = Image::new(
            Tensor::ones((1, 10, 20, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
        let inputs = NodeInputs::new()
            .with("image", image.into_value())
            .with("upscale_method", Value::String("lanczos".into()))
            .with("width", Value::Int(0))
            .with("height", Value::Int(5))
            .with("crop", Value::String("disabled".into()));
        let out = run_node(&ImageScale, &inputs).unwrap();
        let image = out.values[0].downcast::<Image>("IMAGE").unwrap();
        assert_eq!(image.pixels.dims(), &[1, 5, 10, 3]);
        let min: f32 = image
            .pixels
            .flatten_all()
            .unwrap()
            .min(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(min, 1.0);
    }
}
