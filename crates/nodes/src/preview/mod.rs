//! Sampler previews, as ComfyUI's `latent_preview.py`: a [`Previewer`] picked once per sampling
//! run from `--preview-method` turns each step's denoised prediction (`x0`) into a JPEG sized to
//! fit `--preview-size`, which the sampler reports with its progress.
//!
//! `auto` means latent2rgb, as in ComfyUI. `taesd` uses the family's decoder from
//! `models/vae_approx` and falls back to latent2rgb, with one logged line, when the file is
//! missing.

mod latent2rgb;
mod taesd;

use std::io::Cursor;

use candle_core::{DType, Device, Tensor};
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::RgbImage;
use kiln_detect::Architecture;
use kiln_graph::{PreviewFormat, PreviewImage};

use crate::error::{NodesError, TensorContext};
use crate::resample::python_round;
use crate::services::{NodeServices, PreviewMethod};

pub use latent2rgb::{preview_byte, Latent2Rgb};
pub use taesd::{taesd_decoder_name, TaesdDecoder};

/// ComfyUI's `--preview-size` default: the longest side of a preview.
pub const DEFAULT_PREVIEW_SIZE: u32 = 512;

/// The JPEG quality of previews (`image.save(..., quality=95)` in ComfyUI's `send_image`).
pub const PREVIEW_JPEG_QUALITY: u8 = 95;

/// What turns a latent into preview pixels.
#[derive(Debug, Clone)]
pub enum PreviewDecoder {
    /// A per-family linear map, one pixel per latent cell.
    Latent2Rgb(Latent2Rgb),
    /// The TAESD decoder, full resolution.
    Taesd(Box<TaesdDecoder>),
}

/// Makes the preview images of one sampling run.
#[derive(Debug, Clone)]
pub struct Previewer {
    decoder: PreviewDecoder,
    max_size: u32,
}

impl Previewer {
    /// A previewer with `decoder` whose images fit in `max_size × max_size`.
    pub fn new(decoder: PreviewDecoder, max_size: u32) -> Previewer {
        Previewer { decoder, max_size }
    }

    /// `latent_preview.get_previewer`: the previewer `--preview-method` asks for with a model of
    /// `architecture` whose sampling runs on `device`, or `None` (method `none`, or a family
    /// without preview factors).
    pub fn for_model(
        services: &NodeServices,
        architecture: Architecture,
        device: &Device,
        max_size: u32,
    ) -> Option<Previewer> {
        let method = match services.preview_method() {
            PreviewMethod::None => return None,
            PreviewMethod::Auto => PreviewMethod::Latent2Rgb,
            method => method,
        };
        if method == PreviewMethod::Taesd {
            if let Some(decoder) = find_taesd(services, architecture, device) {
                return Some(Previewer::new(
                    PreviewDecoder::Taesd(Box::new(decoder)),
                    max_size,
                ));
            }
        }
        Latent2Rgb::for_architecture(architecture)
            .map(|map| Previewer::new(PreviewDecoder::Latent2Rgb(map), max_size))
    }

    /// The decoder in use.
    pub fn decoder(&self) -> &PreviewDecoder {
        &self.decoder
    }

    /// The longest preview side.
    pub fn max_size(&self) -> u32 {
        self.max_size
    }

    /// `decode_latent_to_preview`: the first latent of the batch `x0` (sampler space) as
    /// pixels, before resizing.
    pub fn decode(&self, x0: &Tensor) -> Result<RgbImage, NodesError> {
        match &self.decoder {
            PreviewDecoder::Latent2Rgb(map) => map.decode(x0),
            PreviewDecoder::Taesd(decoder) => {
                let first = x0.narrow(0, 0, 1).context("taking the first latent")?;
                let decoded = decoder.decode(&first)?;
                image_from_chw(&decoded)
            }
        }
    }

    /// The preview of `x0` as ComfyUI sends it: decoded, resized to fit, JPEG-encoded.
    pub fn render(&self, x0: &Tensor) -> Result<PreviewImage, NodesError> {
        encode_preview(&self.decode(x0)?, self.max_size)
    }
}

/// The TAESD decoder of `architecture` from `vae_approx` (the first listed file whose name
/// starts with the family's prefix, as ComfyUI picks it), or `None` after one logged line.
fn find_taesd(
    services: &NodeServices,
    architecture: Architecture,
    device: &Device,
) -> Option<TaesdDecoder> {
    let prefix = taesd_decoder_name(architecture)?;
    let folders = services.folders();
    let path = folders
        .list("vae_approx")
        .unwrap_or_default()
        .into_iter()
        .find(|name| name.starts_with(prefix))
        .and_then(|name| folders.resolve("vae_approx", &name));
    let Some(path) = path else {
        tracing::warn!(
            "Warning: TAESD previews enabled, but could not find models/vae_approx/{prefix}"
        );
        return None;
    };
    // ComfyUI would fail the prompt on an unreadable file; a preview is not worth that, so
    // this falls back to latent2rgb instead.
    match TaesdDecoder::load(&path, device) {
        Ok(decoder) => Some(decoder),
        Err(error) => {
            tracing::warn!(
                "TAESD previews enabled, but {} cannot be used ({error}); using latent2rgb",
                path.display()
            );
            None
        }
    }
}

/// A `[1, 3, H, W]` image in `-1..1` as 8-bit pixels (`preview_to_image` after `movedim`).
fn image_from_chw(image: &Tensor) -> Result<RgbImage, NodesError> {
    let (_, channels, height, width) = image.dims4().context("reading the decoded preview")?;
    if channels != 3 {
        return Err(NodesError::input(
            "x0",
            format!("a preview decoder produced {channels} channels, not 3"),
        ));
    }
    let bytes: Vec<u8> = image
        .narrow(0, 0, 1)
        .and_then(|first| first.squeeze(0))
        .and_then(|first| first.permute((1, 2, 0)))
        .and_then(|hwc| hwc.to_dtype(DType::F32))
        .and_then(|hwc| hwc.to_device(&Device::Cpu))
        .and_then(|hwc| hwc.flatten_all())
        .and_then(|hwc| hwc.to_vec1::<f32>())
        .context("reading the decoded preview")?
        .into_iter()
        .map(preview_byte)
        .collect();
    let too_large = || NodesError::input("x0", "decoded preview too large");
    let width = u32::try_from(width).map_err(|_| too_large())?;
    let height = u32::try_from(height).map_err(|_| too_large())?;
    RgbImage::from_raw(width, height, bytes).ok_or_else(too_large)
}

/// Pillow's `ImageOps.contain(image, (max_size, max_size))` size: the aspect ratio kept, the
/// longer side made `max_size` (small previews grow, as in ComfyUI), sides rounded half to even.
pub fn contain_size(width: u32, height: u32, max_size: u32) -> (u32, u32) {
    if width == 0 || height == 0 || width == height {
        return (max_size, max_size);
    }
    let to_u32 = |side: usize| u32::try_from(side).unwrap_or(max_size).max(1);
    if width > height {
        let side = python_round(f64::from(height) / f64::from(width) * f64::from(max_size));
        (max_size, to_u32(side))
    } else {
        let side = python_round(f64::from(width) / f64::from(height) * f64::from(max_size));
        (to_u32(side), max_size)
    }
}

/// `send_image`: `image` resized (bilinear) to fit `max_size` and encoded as JPEG quality 95.
pub fn encode_preview(image: &RgbImage, max_size: u32) -> Result<PreviewImage, NodesError> {
    if image.width() == 0 || image.height() == 0 {
        return Err(NodesError::input("x0", "cannot preview an empty latent"));
    }
    let max_size = max_size.max(1);
    let (width, height) = contain_size(image.width(), image.height(), max_size);
    let resized;
    let image = if (width, height) == image.dimensions() {
        image
    } else {
        // The triangle filter widened when shrinking is Pillow's BILINEAR resampling.
        resized = image::imageops::resize(image, width, height, FilterType::Triangle);
        &resized
    };
    let mut bytes = Vec::new();
    image
        .write_with_encoder(JpegEncoder::new_with_quality(
            &mut Cursor::new(&mut bytes),
            PREVIEW_JPEG_QUALITY,
        ))
        .map_err(|error| NodesError::input("x0", format!("cannot encode the preview: {error}")))?;
    Ok(PreviewImage {
        format: PreviewFormat::Jpeg,
        bytes,
    })
}

/// The previews of one sampling run: after the first failure (a decoder that does not fit the
/// latent) it logs once and reports progress without images for the rest of the run.
#[derive(Debug, Default)]
pub(crate) struct StepPreviews {
    previewer: Option<Previewer>,
}

impl StepPreviews {
    /// Previews from `previewer`, none when it is `None`.
    pub(crate) fn new(previewer: Option<Previewer>) -> StepPreviews {
        StepPreviews { previewer }
    }

    /// The preview of this step's `x0`, if any.
    pub(crate) fn preview(&mut self, x0: &Tensor) -> Option<PreviewImage> {
        let previewer = self.previewer.as_ref()?;
        match previewer.render(x0) {
            Ok(image) => Some(image),
            Err(error) => {
                tracing::warn!("previews disabled for this run: {error}");
                self.previewer = None;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contain_size_fits_the_longer_side() {
        assert_eq!(contain_size(8, 8, 512), (512, 512));
        assert_eq!(contain_size(128, 64, 512), (512, 256));
        assert_eq!(contain_size(64, 128, 512), (256, 512));
        // 3/8·512 = 192; 5/7·512 = 365.71 → 366.
        assert_eq!(contain_size(8, 3, 512), (512, 192));
        assert_eq!(contain_size(5, 7, 512), (366, 512));
        // 1/1024·512 = 0.5 rounds half to even (0) and is kept at one pixel.
        assert_eq!(contain_size(1024, 1, 512), (512, 1));
    }

    #[test]
    fn empty_images_are_an_error() {
        assert!(matches!(
            encode_preview(&RgbImage::new(0, 4), 512),
            Err(NodesError::InvalidInput { .. })
        ));
    }

    #[test]
    fn failing_previews_stop_after_the_first_error() {
        let previewer = Previewer::new(PreviewDecoder::Latent2Rgb(Latent2Rgb::SD15), 16);
        let mut previews = StepPreviews::new(Some(previewer));
        let good = Tensor::zeros((1, 4, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let bad = Tensor::zeros((1, 16, 2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(previews.preview(&good).is_some());
        assert!(previews.preview(&bad).is_none());
        assert!(previews.preview(&good).is_none());
    }
}
