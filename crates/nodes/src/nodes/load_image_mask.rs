//! `LoadImageMask`: one channel of an input-folder image as a `MASK` (alpha inverted, so
//! opaque = 0); images without alpha give an all-zero mask of their size.

use candle_core::{Device, Tensor};
use kiln_graph::{
    ChangePolicy, ComboInput, ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput,
    NodeSchema, OutputSpec,
};

use crate::error::{NodesError, TensorContext};
use crate::image_io::decode_image;
use crate::nodes::load_image::image_path;
use crate::services::{NodeServices, INPUT_FILES};
use crate::types::Mask;

/// `LoadImageMask` ("Load Image (as Mask)").
pub struct LoadImageMask;

const CHANNELS: [&str; 4] = ["alpha", "red", "green", "blue"];

impl Node for LoadImageMask {
    fn fingerprint_with_services(
        &self,
        inputs: &NodeInputs,
        services: &(dyn std::any::Any + Send + Sync),
    ) -> Option<String> {
        crate::nodes::load_image::fingerprint_with(services.downcast_ref::<NodeServices>()?, inputs)
    }

    fn schema(&self) -> NodeSchema {
        NodeSchema::new("LoadImageMask")
            .display_name("Load Image (as Mask)")
            .category("mask")
            .input(
                InputSpec::required("image", ComboInput::dynamic(INPUT_FILES))
                    .option("image_upload", true),
            )
            .input(InputSpec::required("channel", ComboInput::new(CHANNELS)))
            .output(OutputSpec::new("MASK"))
            .change_policy(ChangePolicy::Fingerprint)
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let services = NodeServices::of(ctx)?;
        let path = image_path(services, inputs)?;
        let channel = inputs.string("channel")?;
        let index = CHANNELS
            .iter()
            .position(|c| *c == channel)
            .ok_or_else(|| NodesError::input("channel", format!("unknown channel '{channel}'")))?;
        let decoded = decode_image(&path, "image")?;
        let values: Vec<f32> = match index {
            // Pillow's convert("RGBA") gives opaque alpha (mask 0) to images without one.
            0 => match &decoded.alpha {
                Some(alpha) => alpha.iter().map(|&a| 1.0 - f32::from(a) / 255.0).collect(),
                None => vec![0.0; decoded.width * decoded.height],
            },
            rgb => decoded
                .rgb
                .iter()
                .skip(rgb - 1)
                .step_by(3)
                .map(|&v| f32::from(v) / 255.0)
                .collect(),
        };
        let mask = Tensor::from_vec(values, (1, decoded.height, decoded.width), &Device::Cpu)
            .context("LoadImageMask: building the mask")?;
        Ok(NodeOutput::new(vec![Mask::new(mask).into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run_with, services};
    use kiln_graph::Value;

    #[test]
    fn channels_select_and_alpha_inverts() {
        let base = tempfile::tempdir().unwrap();
        let services = services(base.path());
        std::fs::create_dir_all(services.input_directory()).unwrap();
        let img = image::RgbaImage::from_raw(1, 1, vec![255, 51, 0, 204]).unwrap();
        img.save(services.input_directory().join("m.png")).unwrap();
        let run = |channel: &str| {
            let inputs = NodeInputs::new()
                .with("image", Value::String("m.png".into()))
                .with("channel", Value::String(channel.into()));
            let out = run_with(&LoadImageMask, &inputs, &services).unwrap();
            let mask = out.values[0].downcast::<Mask>("MASK").unwrap();
            mask.values.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0]
        };
        assert_eq!(run("red"), 1.0);
        assert_eq!(run("green"), 0.2);
        assert_eq!(run("blue"), 0.0);
        assert_eq!(run("alpha"), 1.0 - 0.8);
    }
}
