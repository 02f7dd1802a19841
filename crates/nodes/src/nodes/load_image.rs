//! `LoadImage`: an image of the input folder as `IMAGE` `[1, H, W, 3]` plus `MASK` = 1 − alpha
//! (`[1, 64, 64]` zeros without alpha), EXIF orientation applied; re-runs when the file's
//! sha256 changes.

use candle_core::{Device, Tensor};
use kiln_graph::{
    ChangePolicy, ComboInput, ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput,
    NodeSchema, OutputSpec,
};

use crate::error::{NodesError, TensorContext};
use crate::image_io::{decode_image, file_sha256};
use crate::services::{NodeServices, INPUT_IMAGES};
use crate::types::{Image, Mask};

/// `LoadImage` ("Load Image").
pub struct LoadImage;

/// The file an `image` input names, or an error naming the input.
pub(crate) fn image_path(
    services: &NodeServices,
    inputs: &NodeInputs,
) -> Result<std::path::PathBuf, NodeError> {
    let name = inputs.string("image")?;
    services
        .annotated_path(name)
        .ok_or_else(|| NodesError::input("image", format!("Invalid image file: {name}")).into())
}

impl Node for LoadImage {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("LoadImage")
            .display_name("Load Image")
            .category("image")
            .input(
                InputSpec::required("image", ComboInput::dynamic(INPUT_IMAGES))
                    .option("image_upload", true),
            )
            .output(OutputSpec::new("IMAGE"))
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
        let decoded = decode_image(&path, "image")?;
        let (h, w) = (decoded.height, decoded.width);
        let pixels: Vec<f32> = decoded.rgb.iter().map(|&v| f32::from(v) / 255.0).collect();
        let image = Tensor::from_vec(pixels, (1, h, w, 3), &Device::Cpu)
            .context("LoadImage: building the image")?;
        let mask = match &decoded.alpha {
            Some(alpha) => {
                let values: Vec<f32> = alpha.iter().map(|&a| 1.0 - f32::from(a) / 255.0).collect();
                Tensor::from_vec(values, (1, h, w), &Device::Cpu)
            }
            None => Tensor::zeros((1, 64, 64), candle_core::DType::F32, &Device::Cpu),
        }
        .context("LoadImage: building the mask")?;
        Ok(NodeOutput::new(vec![
            Image::new(image).into_value(),
            Mask::new(mask).into_value(),
        ]))
    }

    fn fingerprint_with_services(
        &self,
        inputs: &NodeInputs,
        services: &(dyn std::any::Any + Send + Sync),
    ) -> Option<String> {
        // ComfyUI's IS_CHANGED: the sha256 of the image file, so an edited file re-runs.
        fingerprint_with(services.downcast_ref::<NodeServices>()?, inputs)
    }
}

/// `IS_CHANGED` with services: the sha256 of the file the `image` input names (also used by
/// `LoadImageMask`). `None` when the name is bad or the file unreadable.
pub fn fingerprint_with(services: &NodeServices, inputs: &NodeInputs) -> Option<String> {
    let path = image_path(services, inputs).ok()?;
    file_sha256(&path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run_with, services};
    use kiln_graph::Value;

    #[test]
    fn loads_rgba_with_inverted_alpha_mask() {
        let base = tempfile::tempdir().unwrap();
        let services = services(base.path());
        std::fs::create_dir_all(services.input_directory()).unwrap();
        let img = image::RgbaImage::from_raw(2, 1, vec![255, 0, 0, 255, 0, 0, 255, 51]).unwrap();
        img.save(services.input_directory().join("a.png")).unwrap();
        let inputs = NodeInputs::new().with("image", Value::String("a.png".into()));
        let out = run_with(&LoadImage, &inputs, &services).unwrap();
        let image = out.values[0].downcast::<Image>("IMAGE").unwrap();
        let mask = out.values[1].downcast::<Mask>("MASK").unwrap();
        assert_eq!(image.pixels.dims(), &[1, 1, 2, 3]);
        let px = image
            .pixels
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(px, [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        let m = mask.values.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(m, [0.0, 1.0 - 51.0 / 255.0]);
        assert!(fingerprint_with(&services, &inputs).unwrap().len() == 64);
    }

    #[test]
    fn rgb_gives_64px_zero_mask_and_bad_names_fail() {
        let base = tempfile::tempdir().unwrap();
        let services = services(base.path());
        std::fs::create_dir_all(services.input_directory()).unwrap();
        image::RgbImage::new(3, 2)
            .save(services.input_directory().join("b.png"))
            .unwrap();
        let inputs = NodeInputs::new().with("image", Value::String("b.png".into()));
        let out = run_with(&LoadImage, &inputs, &services).unwrap();
        let mask = out.values[1].downcast::<Mask>("MASK").unwrap();
        assert_eq!(mask.values.dims(), &[1, 64, 64]);
        for name in ["../b.png", "/etc/passwd", "missing.png"] {
            let inputs = NodeInputs::new().with("image", Value::String(name.into()));
            let err = run_with(&LoadImage, &inputs, &services).unwrap_err();
            assert!(err.to_string().contains("image"), "{name}: {err}");
        }
    }
}
