//! `ImageScaleBy` ("Upscale Image By"): resizes images by a factor.

use kiln_graph::{
    ComboInput, ExecutionContext, FloatInput, InputSpec, Node, NodeError, NodeInputs, NodeOutput,
    NodeSchema, OutputSpec,
};

use crate::node_util::object;
use crate::resample::{common_upscale, python_round, Crop, Planes, UpscaleMethod};
use crate::types::Image;

/// `ImageScaleBy`.
pub struct ImageScaleBy;

impl Node for ImageScaleBy {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("ImageScaleBy")
            .display_name("Upscale Image By")
            .category("image/upscaling")
            .input(InputSpec::required("image", "IMAGE"))
            .input(InputSpec::required(
                "upscale_method",
                ComboInput::new(UpscaleMethod::IMAGE.map(UpscaleMethod::name)),
            ))
            .input(InputSpec::required(
                "scale_by",
                FloatInput::new(1.0, 0.01, 8.0).step(0.01),
            ))
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
        let scale_by = inputs.float("scale_by")?;
        let (_, h, w, _) = image.dims4("image")?;
        let planes = Planes::from_nhwc(&image.pixels)?;
        let resized = common_upscale(
            &planes,
            python_round(w as f64 * scale_by),
            python_round(h as f64 * scale_by),
            method,
            Crop::Disabled,
        )?;
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
    fn doubles_with_nearest() {
        let values: Vec<f32> = (0..6).map(|v| v as f32 / 10.0).collect();
        let image = Image::new(Tensor::from_vec(values, (1, 1, 2, 3), &Device::Cpu).unwrap());
        let inputs = NodeInputs::new()
            .with("image", image.into_value())
            .with("upscale_method", Value::String("nearest-exact".into()))
            .with("scale_by", Value::Float(2.0));
        let out = run_node(&ImageScaleBy, &inputs).unwrap();
        let image = out.values[0].downcast::<Image>("IMAGE").unwrap();
        assert_eq!(image.pixels.dims(), &[1, 2, 4, 3]);
        let first_row: Vec<f32> =
            image.pixels.flatten_all().unwrap().to_vec1().unwrap()[..12].to_vec();
        assert_eq!(
            first_row,
            [0.0, 0.1, 0.2, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.3, 0.4, 0.5]
        );
    }
}
