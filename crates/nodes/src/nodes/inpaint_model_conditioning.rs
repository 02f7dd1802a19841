//! `InpaintModelConditioning`: prepares an inpainting model's inputs — the image with its
//! masked pixels greyed is VAE-encoded into both conditionings (`concat_latent_image`, with the
//! mask as `concat_mask`) and the untouched image becomes the latent to sample from, carrying
//! the mask as its noise mask unless `noise_mask` is off.

use kiln_graph::{
    BooleanInput, ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};

use crate::error::{NodesError, TensorContext};
use crate::node_util::object;
use crate::resample::{common_upscale, Crop, Planes, UpscaleMethod};
use crate::types::{Conditioning, Image, Latent, Mask, Vae};
use crate::vae_network::{autoencoder, model_error};

/// `InpaintModelConditioning`.
pub struct InpaintModelConditioning;

impl Node for InpaintModelConditioning {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("InpaintModelConditioning")
            .category("conditioning/inpaint")
            .input(InputSpec::required("positive", Conditioning::TYPE))
            .input(InputSpec::required("negative", Conditioning::TYPE))
            .input(InputSpec::required("vae", Vae::TYPE))
            .input(InputSpec::required("pixels", Image::TYPE))
            .input(InputSpec::required("mask", Mask::TYPE))
            .input(
                InputSpec::required("noise_mask", BooleanInput::new(true)).tooltip(
                    "Add a noise mask to the latent so sampling will only happen within the \
                     mask. Might improve results or completely break things depending on the \
                     model.",
                ),
            )
            .output(OutputSpec::new(Conditioning::TYPE).named("positive"))
            .output(OutputSpec::new(Conditioning::TYPE).named("negative"))
            .output(OutputSpec::new(Latent::TYPE).named("latent"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let positive = object::<Conditioning>(inputs, "positive")?;
        let negative = object::<Conditioning>(inputs, "negative")?;
        let vae = object::<Vae>(inputs, "vae")?;
        let image = object::<Image>(inputs, "pixels")?;
        let mask = object::<Mask>(inputs, "mask")?;
        let noise_mask = inputs.bool("noise_mask")?;

        let (batch, height, width, channels) = image.dims4("pixels")?;
        let ratio = Vae::DOWNSCALE_RATIO;
        let (crop_h, crop_w) = ((height / ratio) * ratio, (width / ratio) * ratio);
        if crop_h == 0 || crop_w == 0 {
            return Err(NodesError::input(
                "pixels",
                format!("{width}x{height} is smaller than one latent cell"),
            )
            .into());
        }
        let (mask_batch, mask_h, mask_w) = mask.dims3("mask")?;
        if mask_batch != 1 && mask_batch != batch {
            return Err(NodesError::input(
                "mask",
                format!("{mask_batch} masks cannot apply to {batch} images"),
            )
            .into());
        }
        // The mask is resized to the image (bilinear), then both are centre-cropped to whole
        // latent cells.
        let mask_planes = Planes::from_nchw(
            &mask
                .values
                .reshape((mask_batch, 1, mask_h, mask_w))
                .context("InpaintModelConditioning: reading the mask")?,
        )?;
        let (off_y, off_x) = ((height % ratio) / 2, (width % ratio) / 2);
        let mask_crop = common_upscale(
            &mask_planes,
            width,
            height,
            UpscaleMethod::Bilinear,
            Crop::Disabled,
        )?
        .crop(off_y, off_x, crop_h, crop_w);

        let mut greyed = Planes::from_nhwc(&image.pixels)?.crop(off_y, off_x, crop_h, crop_w);
        for b in 0..batch {
            let mask_index = if mask_batch == 1 { 0 } else { b };
            for c in 0..channels.min(3) {
                for y in 0..crop_h {
                    for x in 0..crop_w {
                        let keep = 1.0 - mask_crop.at(mask_index, 0, y, x).round_ties_even();
                        let index = greyed.index(b, c, y, x);
                        greyed.data[index] = (greyed.data[index] - 0.5) * keep + 0.5;
                    }
                }
            }
        }
        // The VAE's weights stay resident only while it runs.
        let _in_use = vae.weights.in_use();
        let encoder = autoencoder(&vae)?;
        let concat_latent = encoder
            .encode(&greyed.to_nhwc()?)
            .map_err(model_error("VAE encoding the masked image"))?;
        let original = encoder
            .encode(&image.pixels)
            .map_err(model_error("VAE encoding the image"))?;

        let mask_tensor = mask_crop.to_nchw()?;
        let mut latent = Latent::new(original);
        if noise_mask {
            latent.noise_mask = Some(mask_tensor.clone());
        }
        let with_concat = |conditioning: &Conditioning| {
            conditioning.map_meta(|meta| {
                meta.concat_latent_image = Some(concat_latent.clone());
                meta.concat_mask = Some(mask_tensor.clone());
            })
        };
        Ok(NodeOutput::new(vec![
            with_concat(&positive).into_value(),
            with_concat(&negative).into_value(),
            latent.into_value(),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_matches_comfyui() {
        let info = InpaintModelConditioning
            .schema()
            .to_object_info(&|_| Vec::new());
        let required = &info["input"]["required"];
        assert_eq!(required["positive"], serde_json::json!(["CONDITIONING"]));
        assert_eq!(required["pixels"], serde_json::json!(["IMAGE"]));
        assert_eq!(required["mask"], serde_json::json!(["MASK"]));
        assert_eq!(required["noise_mask"][0], "BOOLEAN");
        assert_eq!(
            required["noise_mask"][1],
            serde_json::json!({"default": true, "tooltip": "Add a noise mask to the latent so \
                sampling will only happen within the mask. Might improve results or completely \
                break things depending on the model."})
        );
        assert_eq!(
            info["input_order"]["required"],
            serde_json::json!([
                "positive",
                "negative",
                "vae",
                "pixels",
                "mask",
                "noise_mask"
            ])
        );
        assert_eq!(
            info["output"],
            serde_json::json!(["CONDITIONING", "CONDITIONING", "LATENT"])
        );
        assert_eq!(
            info["output_name"],
            serde_json::json!(["positive", "negative", "latent"])
        );
        assert_eq!(info["category"], "conditioning/inpaint");
        assert_eq!(info["python_module"], "nodes");
    }
}
