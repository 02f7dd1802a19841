//! `c_concat` for Flux models whose `img_in` reads more channels than they output (ComfyUI's
//! `model_base.Flux.concat_cond`): Flux Fill gets the masked-image latent (16 channels, in
//! model space) and the pixel mask packed 8×8 into 64 channels; a model reading at most twice
//! its output channels gets the image latent only. Entries without `concat_latent_image` get
//! zeros, entries without `concat_mask` the sampler's noise mask or all ones, as in ComfyUI.

use candle_core::{DType, Device, Tensor};
use kiln_sampling::LatentFormat;

use crate::error::{NodesError, TensorContext};
use crate::resample::{common_upscale, Crop, Planes, UpscaleMethod};
use crate::types::CondMeta;

/// Pixels per latent cell along each side: the mask is packed `FACTOR × FACTOR` into channels.
const FACTOR: usize = 8;

/// The channel counts of a Flux transformer, read from its `img_in` and `final_layer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConcatChannels {
    /// Input channels per latent cell, concat included.
    pub(crate) input: usize,
    /// Predicted channels per latent cell.
    pub(crate) output: usize,
}

/// What every entry's concat is built against (the noise's shape, the prepared noise mask).
pub(crate) struct ConcatTarget<'a> {
    /// The network's channels, `None` for networks that read no extra channels.
    pub(crate) channels: Option<ConcatChannels>,
    /// `[B, C, h, w]` of the noise.
    pub(crate) shape: (usize, usize, usize, usize),
    /// How latents are scaled into model space (`process_latent_in`).
    pub(crate) latent_format: &'a LatentFormat,
    /// The sampler's noise mask after `prepare_mask` (`[B, C, h, w]`), if any.
    pub(crate) denoise_mask: Option<&'a Tensor>,
}

impl ConcatTarget<'_> {
    /// The `c_concat` tensor of one entry, `None` when the model reads no extra channels.
    pub(crate) fn for_entry(&self, meta: &CondMeta) -> Result<Option<Tensor>, NodesError> {
        let Some(ConcatChannels { input, output }) = self.channels else {
            return Ok(None);
        };
        if input <= output {
            return Ok(None);
        }
        let (batch, channels, height, width) = self.shape;
        let image = match &meta.concat_latent_image {
            Some(image) => image
                .to_dtype(DType::F32)
                .context("reading the concat latent")?,
            None => Tensor::zeros((batch, channels, height, width), DType::F32, &Device::Cpu)
                .context("building an empty concat latent")?,
        };
        let image = resize_planes(&image, width, height, "concat_latent_image")?;
        let image = resize_to_batch(&image, batch)?;
        let image =
            self.latent_format
                .process_in(&image)
                .map_err(|source| NodesError::Sampling {
                    context: "scaling the concat latent".to_owned(),
                    source: Box::new(source),
                })?;
        if input <= output * 2 {
            return Ok(Some(image));
        }
        let mask = match (&meta.concat_mask, self.denoise_mask) {
            (Some(mask), _) => mask_b1hw(mask)?,
            (None, Some(mask)) => mask_b1hw(mask)?,
            (None, None) => Tensor::ones((batch, 1, height, width), DType::F32, &Device::Cpu)
                .context("building an all-ones concat mask")?,
        };
        let mask = resize_planes(&mask, width * FACTOR, height * FACTOR, "concat_mask")?;
        let mask = pack_mask(&mask)?;
        let mask = resize_to_batch(&mask, batch)?;
        let concat = Tensor::cat(&[&image, &mask], 1).context("joining the concat inputs")?;
        Ok(Some(concat))
    }
}

/// `torch.mean(mask, dim=1, keepdim=True)` of a `[B, C, H, W]` mask (`[B, H, W]` read as one
/// channel).
fn mask_b1hw(mask: &Tensor) -> Result<Tensor, NodesError> {
    let mask = mask
        .to_dtype(DType::F32)
        .context("reading the concat mask")?;
    match *mask.dims() {
        [batch, height, width] => mask
            .reshape((batch, 1, height, width))
            .context("reshaping the concat mask"),
        [_, _, _, _] => mask.mean_keepdim(1).context("averaging the concat mask"),
        ref other => Err(NodesError::input(
            "positive",
            format!("concat_mask must be [B, 1, H, W], got {other:?}"),
        )),
    }
}

/// `common_upscale(x, width, height, "bilinear", "center")`.
fn resize_planes(
    x: &Tensor,
    width: usize,
    height: usize,
    what: &str,
) -> Result<Tensor, NodesError> {
    let planes = Planes::from_nchw(x)?;
    if planes.width == width && planes.height == height {
        // Bilinear resampling to the same size is the identity.
        return x
            .to_device(&Device::Cpu)
            .context("reading the concat input");
    }
    if planes.width == 0 || planes.height == 0 {
        return Err(NodesError::input(
            "positive",
            format!("{what} is empty ({:?})", x.dims()),
        ));
    }
    common_upscale(
        &planes,
        width,
        height,
        UpscaleMethod::Bilinear,
        Crop::Center,
    )?
    .to_nchw()
}

/// `mask.view(B, h, 8, w, 8).permute(0, 2, 4, 1, 3).reshape(B, 64, h, w)`: each latent
/// cell's 8×8 pixels become 64 channels, row-major within the cell.
fn pack_mask(mask: &Tensor) -> Result<Tensor, NodesError> {
    let (batch, _, full_height, full_width) = mask.dims4().context("packing the concat mask")?;
    let (height, width) = (full_height / FACTOR, full_width / FACTOR);
    mask.reshape((batch, height, FACTOR, width, FACTOR))
        .and_then(|m| m.permute((0, 2, 4, 1, 3)))
        .and_then(|m| m.contiguous())
        .and_then(|m| m.reshape((batch, FACTOR * FACTOR, height, width)))
        .context("packing the concat mask")
}

/// `comfy.utils.resize_to_batch_size`: rows picked evenly from the input batch.
pub(crate) fn resize_to_batch(tensor: &Tensor, batch: usize) -> Result<Tensor, NodesError> {
    let rows = tensor.dim(0).context("resizing to the batch")?;
    if rows == batch {
        return Ok(tensor.clone());
    }
    if rows == 0 {
        return Err(NodesError::input("positive", "a concat input has no rows"));
    }
    if batch <= 1 {
        return tensor.narrow(0, 0, batch).context("resizing to the batch");
    }
    let picks: Vec<u32> = if batch < rows {
        let scale = (rows - 1) as f64 / (batch - 1) as f64;
        (0..batch)
            .map(|i| ((i as f64 * scale).round_ties_even() as usize).min(rows - 1) as u32)
            .collect()
    } else {
        let scale = rows as f64 / batch as f64;
        (0..batch)
            .map(|i| (((i as f64 + 0.5) * scale).floor() as usize).min(rows - 1) as u32)
            .collect()
    };
    let picks = Tensor::new(picks.as_slice(), tensor.device()).context("resizing to the batch")?;
    tensor
        .index_select(&picks, 0)
        .context("resizing to the batch")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(denoise_mask: Option<&Tensor>, input: usize) -> ConcatTarget<'_> {
        ConcatTarget {
            channels: Some(ConcatChannels { input, output: 16 }),
            shape: (2, 16, 2, 3),
            latent_format: &LatentFormat::FLUX,
            denoise_mask,
        }
    }

    #[test]
    fn mask_pixels_become_channels_row_major_within_each_cell() {
        // One latent row of two cells; pixel (y, x) holds y * 16 + x.
        let values: Vec<f32> = (0..8 * 16).map(|v| v as f32).collect();
        let mask = Tensor::from_vec(values, (1, 1, 8, 16), &Device::Cpu).unwrap();
        let packed = pack_mask(&mask).unwrap();
        assert_eq!(packed.dims(), &[1, 64, 1, 2]);
        let cells = packed.squeeze(0).unwrap().to_vec3::<f32>().unwrap();
        // Channel dy * 8 + dx of cell (0, cx) is pixel (dy, cx * 8 + dx).
        assert_eq!(cells[9][0][0], 16.0 + 1.0);
        assert_eq!(cells[9][0][1], 16.0 + 9.0);
        assert_eq!(cells[63][0][1], 7.0 * 16.0 + 15.0);
    }

    #[test]
    fn fill_concat_defaults_to_scaled_zeros_and_the_noise_mask() {
        let noise_mask = Tensor::zeros((2, 16, 2, 3), DType::F32, &Device::Cpu).unwrap();
        let concat = target(Some(&noise_mask), 96)
            .for_entry(&CondMeta::default())
            .unwrap()
            .unwrap();
        assert_eq!(concat.dims(), &[2, 80, 2, 3]);
        let image = concat.narrow(1, 0, 16).unwrap().flatten_all().unwrap();
        let expected = LatentFormat::FLUX
            .process_in(&Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        assert!(image
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .all(|&v| v == expected));
        let mask_sum = concat.narrow(1, 16, 64).unwrap().sum_all().unwrap();
        assert_eq!(mask_sum.to_scalar::<f32>().unwrap(), 0.0);
        // Without a noise mask the mask channels are ones.
        let concat = target(None, 96)
            .for_entry(&CondMeta::default())
            .unwrap()
            .unwrap();
        let mask_min = concat
            .narrow(1, 16, 64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .min(0);
        assert_eq!(mask_min.unwrap().to_scalar::<f32>().unwrap(), 1.0);
    }

    #[test]
    fn models_without_extra_channels_get_no_concat_and_control_models_get_the_image() {
        assert!(target(None, 16)
            .for_entry(&CondMeta::default())
            .unwrap()
            .is_none());
        let image_only = target(None, 32)
            .for_entry(&CondMeta::default())
            .unwrap()
            .unwrap();
        assert_eq!(image_only.dims(), &[2, 16, 2, 3]);
    }

    #[test]
    fn batches_resize_like_comfyui() {
        let t = Tensor::new(&[0f32, 1.0, 2.0, 3.0], &Device::Cpu).unwrap();
        let picked = |batch| {
            resize_to_batch(&t, batch)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(picked(2), vec![0.0, 3.0]);
        assert_eq!(picked(3), vec![0.0, 2.0, 3.0]);
        assert_eq!(picked(6), vec![0.0, 1.0, 1.0, 2.0, 3.0, 3.0]);
        assert_eq!(picked(1), vec![0.0]);
    }
}
