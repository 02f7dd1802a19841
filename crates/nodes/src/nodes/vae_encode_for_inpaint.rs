//! `VAEEncodeForInpaint` ("VAE Encode (for Inpainting)"): encodes the image with the masked
//! pixels set to grey (0.5) and attaches the mask, grown by `grow_mask_by` pixels, as the
//! latent's noise mask.

use kiln_graph::{
    ExecutionContext, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};

use crate::error::NodesError;
use crate::node_util::{object, size_input};
use crate::resample::{common_upscale, Crop, Planes, UpscaleMethod};
use crate::types::{Image, Latent, Mask, Vae};
use crate::vae_network::{autoencoder, model_error};

/// `VAEEncodeForInpaint`.
pub struct VaeEncodeForInpaint;

/// `clamp(conv2d(mask, ones(g, g), padding=ceil((g-1)/2)), 0, 1)` for one-channel planes.
pub(crate) fn grow_mask(mask: &Planes, grow: usize) -> Planes {
    if grow == 0 {
        return mask.clone();
    }
    let padding = (grow - 1).div_ceil(2);
    let out_h = (mask.height + 2 * padding + 1).saturating_sub(grow);
    let out_w = (mask.width + 2 * padding + 1).saturating_sub(grow);
    let mut out = Planes::zeros(mask.batch, 1, out_h, out_w);
    for b in 0..mask.batch {
        for y in 0..out_h {
            for x in 0..out_w {
                let mut sum = 0.0f32;
                for ky in 0..grow {
                    for kx in 0..grow {
                        let (sy, sx) = (
                            (y + ky) as isize - padding as isize,
                            (x + kx) as isize - padding as isize,
                        );
                        if sy >= 0
                            && sx >= 0
                            && (sy as usize) < mask.height
                            && (sx as usize) < mask.width
                        {
                            sum += mask.at(b, 0, sy as usize, sx as usize);
                        }
                    }
                }
                let index = out.index(b, 0, y, x);
                out.data[index] = sum.clamp(0.0, 1.0);
            }
        }
    }
    out
}

impl Node for VaeEncodeForInpaint {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("VAEEncodeForInpaint")
            .display_name("VAE Encode (for Inpainting)")
            .category("latent/inpaint")
            .input(InputSpec::required("pixels", "IMAGE"))
            .input(InputSpec::required("vae", "VAE"))
            .input(InputSpec::required("mask", "MASK"))
            .input(InputSpec::required(
                "grow_mask_by",
                IntInput::new(6, 0, 64).step(1),
            ))
            .output(OutputSpec::new("LATENT"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let image = object::<Image>(inputs, "pixels")?;
        let vae = object::<Vae>(inputs, "vae")?;
        let mask = object::<Mask>(inputs, "mask")?;
        let grow = size_input(inputs, "grow_mask_by")?;
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
        let (mb, mh, mw) = mask.dims3("mask")?;
        let mask_planes =
            Planes::from_nchw(&mask.values.reshape((mb, 1, mh, mw)).map_err(|source| {
                NodesError::Tensor {
                    context: "VAEEncodeForInpaint",
                    source,
                }
            })?)?;
        let mask_full = common_upscale(
            &mask_planes,
            width,
            height,
            UpscaleMethod::Bilinear,
            Crop::Disabled,
        )?;
        let (off_y, off_x) = ((height % ratio) / 2, (width % ratio) / 2);
        let mask_crop = mask_full.crop(off_y, off_x, crop_h, crop_w);
        let mut pixels = Planes::from_nhwc(&image.pixels)?.crop(off_y, off_x, crop_h, crop_w);
        let mut rounded = mask_crop.clone();
        for v in &mut rounded.data {
            *v = v.round_ties_even();
        }
        for b in 0..batch {
            // Masks broadcast over the image batch when there is a single one.
            let mb_index = if rounded.batch == 1 {
                0
            } else {
                b.min(rounded.batch - 1)
            };
            for c in 0..channels.min(3) {
                for y in 0..crop_h {
                    for x in 0..crop_w {
                        let keep = 1.0 - rounded.at(mb_index, 0, y, x);
                        let index = pixels.index(b, c, y, x);
                        pixels.data[index] = (pixels.data[index] - 0.5) * keep + 0.5;
                    }
                }
            }
        }
        // The VAE's weights stay resident only while it runs.
        let _in_use = vae.weights.in_use();
        let samples = autoencoder(&vae)?
            .encode(&pixels.to_nhwc()?)
            .map_err(model_error("VAE encoding"))?;
        let mut grown = grow_mask(&rounded, grow).crop(0, 0, crop_h, crop_w);
        for v in &mut grown.data {
            *v = v.round_ties_even();
        }
        let mut latent = Latent::new(samples);
        latent.noise_mask = Some(grown.to_nchw()?);
        Ok(NodeOutput::new(vec![latent.into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_spreads_a_single_pixel_like_conv2d() {
        let mut mask = Planes::zeros(1, 1, 8, 8);
        let at = mask.index(0, 0, 4, 4);
        mask.data[at] = 1.0;
        // g = 3, padding 1: a 3x3 block around (4, 4), same size.
        let grown = grow_mask(&mask, 3);
        assert_eq!((grown.height, grown.width), (8, 8));
        let ones: Vec<(usize, usize)> = (0..8)
            .flat_map(|y| (0..8).map(move |x| (y, x)))
            .filter(|&(y, x)| grown.at(0, 0, y, x) == 1.0)
            .collect();
        assert_eq!(ones.len(), 9);
        assert!(ones.contains(&(3, 3)) && ones.contains(&(5, 5)));
        // g = 6, padding 3: output one larger; the block spans rows 2..=7 (y - 3 + ky = 4).
        let grown = grow_mask(&mask, 6);
        assert_eq!((grown.height, grown.width), (9, 9));
        assert_eq!(grown.at(0, 0, 2, 2), 1.0);
        assert_eq!(grown.at(0, 0, 7, 7), 1.0);
        assert_eq!(grown.at(0, 0, 1, 1), 0.0);
    }
}
