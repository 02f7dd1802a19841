//! [`Latent2Rgb`]: ComfyUI's cheapest preview — every latent cell becomes one RGB pixel through
//! a fixed per-family linear map (`latent_rgb_factors` + `latent_rgb_factors_bias` of
//! `comfy/latent_formats.py`, applied by `latent_preview.py: Latent2RGBPreviewer`).

use candle_core::{DType, Device, Tensor};
use image::RgbImage;
use kiln_detect::Architecture;

use crate::error::{NodesError, TensorContext};

/// `SD15.latent_rgb_factors` (also used by SD 2.x), rows per latent channel, columns R, G, B.
const SD15_FACTORS: [[f32; 3]; 4] = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
];

/// `SDXL.latent_rgb_factors` (also the refiner's).
const SDXL_FACTORS: [[f32; 3]; 4] = [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
];

/// `SDXL.latent_rgb_factors_bias`.
const SDXL_BIAS: [f32; 3] = [0.1084, -0.0175, -0.0011];

/// `SD3.latent_rgb_factors`.
const SD3_FACTORS: [[f32; 3]; 16] = [
    [-0.0922, -0.0175, 0.0749],
    [0.0311, 0.0633, 0.0954],
    [0.1994, 0.0927, 0.0458],
    [0.0856, 0.0339, 0.0902],
    [0.0587, 0.0272, -0.0496],
    [-0.0006, 0.1104, 0.0309],
    [0.0978, 0.0306, 0.0427],
    [-0.0042, 0.1038, 0.1358],
    [-0.0194, 0.0020, 0.0669],
    [-0.0488, 0.0130, -0.0268],
    [0.0922, 0.0988, 0.0951],
    [-0.0278, 0.0524, -0.0542],
    [0.0332, 0.0456, 0.0895],
    [-0.0069, -0.0030, -0.0810],
    [-0.0596, -0.0465, -0.0293],
    [-0.1448, -0.1463, -0.1189],
];

/// `SD3.latent_rgb_factors_bias`.
const SD3_BIAS: [f32; 3] = [0.2394, 0.2135, 0.1925];

/// `Flux.latent_rgb_factors`.
const FLUX_FACTORS: [[f32; 3]; 16] = [
    [-0.0346, 0.0244, 0.0681],
    [0.0034, 0.0210, 0.0687],
    [0.0275, -0.0668, -0.0433],
    [-0.0174, 0.0160, 0.0617],
    [0.0859, 0.0721, 0.0329],
    [0.0004, 0.0383, 0.0115],
    [0.0405, 0.0861, 0.0915],
    [-0.0236, -0.0185, -0.0259],
    [-0.0245, 0.0250, 0.1180],
    [0.1008, 0.0755, -0.0421],
    [-0.0515, 0.0201, 0.0011],
    [0.0428, -0.0012, -0.0036],
    [0.0817, 0.0765, 0.0749],
    [-0.1264, -0.0522, -0.1103],
    [-0.0280, -0.0881, -0.0499],
    [-0.1262, -0.0982, -0.0778],
];

/// `Flux.latent_rgb_factors_bias`.
const FLUX_BIAS: [f32; 3] = [-0.0329, -0.0718, -0.0851];

/// A latent family's linear latent → RGB map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latent2Rgb {
    factors: &'static [[f32; 3]],
    bias: [f32; 3],
}

impl Latent2Rgb {
    /// `latent_formats.SD15` (SD 1.x and 2.x): 4 channels, no bias.
    pub const SD15: Latent2Rgb = Latent2Rgb {
        factors: &SD15_FACTORS,
        bias: [0.0; 3],
    };
    /// `latent_formats.SDXL` (base and refiner): 4 channels.
    pub const SDXL: Latent2Rgb = Latent2Rgb {
        factors: &SDXL_FACTORS,
        bias: SDXL_BIAS,
    };
    /// `latent_formats.SD3`: 16 channels.
    pub const SD3: Latent2Rgb = Latent2Rgb {
        factors: &SD3_FACTORS,
        bias: SD3_BIAS,
    };
    /// `latent_formats.Flux`: 16 channels.
    pub const FLUX: Latent2Rgb = Latent2Rgb {
        factors: &FLUX_FACTORS,
        bias: FLUX_BIAS,
    };

    /// The map of a diffusion model family, `None` for families without one (text encoders,
    /// standalone VAEs).
    pub fn for_architecture(architecture: Architecture) -> Option<Latent2Rgb> {
        match architecture {
            Architecture::Sd1 | Architecture::Sd2 => Some(Latent2Rgb::SD15),
            Architecture::Sdxl | Architecture::SdxlRefiner => Some(Latent2Rgb::SDXL),
            Architecture::Sd3 => Some(Latent2Rgb::SD3),
            Architecture::Flux => Some(Latent2Rgb::FLUX),
            _ => None,
        }
    }

    /// Latent channels the map expects.
    pub fn channels(&self) -> usize {
        self.factors.len()
    }

    /// The factors, one `[R, G, B]` row per latent channel.
    pub fn factors(&self) -> &'static [[f32; 3]] {
        self.factors
    }

    /// The bias added to each pixel (zeros where ComfyUI has none).
    pub fn bias(&self) -> [f32; 3] {
        self.bias
    }

    /// One RGB value of one cell of channel-major `values` (`[C, H·W]`) before mapping to bytes:
    /// `F.linear(x0.movedim(0, -1), factors.T, bias)`.
    fn project_cell(&self, values: &[f32], cells: usize, cell: usize, colour: usize) -> f32 {
        let sum = self
            .factors
            .iter()
            .enumerate()
            .fold(0.0f32, |sum, (channel, row)| {
                sum + values[channel * cells + cell] * row[colour]
            });
        sum + self.bias[colour]
    }

    /// The preview of the first latent of the batch `x0` (`[B, C, H, W]`, sampler space): an
    /// `W × H` RGB image, one pixel per latent cell.
    pub fn decode(&self, x0: &Tensor) -> Result<RgbImage, NodesError> {
        let (_, channels, height, width) = x0
            .dims4()
            .map_err(|_| NodesError::input("x0", "a preview needs a [B, C, H, W] latent"))?;
        if channels != self.channels() {
            return Err(NodesError::input(
                "x0",
                format!(
                    "latent2rgb for {} channels got a {channels}-channel latent",
                    self.channels()
                ),
            ));
        }
        let values: Vec<f32> = x0
            .narrow(0, 0, 1)
            .and_then(|first| first.to_dtype(DType::F32))
            .and_then(|first| first.to_device(&Device::Cpu))
            .and_then(|first| first.flatten_all())
            .and_then(|first| first.to_vec1())
            .context("reading the latent for a preview")?;
        let cells = height * width;
        let too_large = || NodesError::input("x0", "latent too large for a preview image");
        let image_width = u32::try_from(width).map_err(|_| too_large())?;
        let image_height = u32::try_from(height).map_err(|_| too_large())?;
        let mut pixels = Vec::with_capacity(cells * 3);
        for cell in 0..cells {
            for colour in 0..3 {
                pixels.push(preview_byte(
                    self.project_cell(&values, cells, cell, colour),
                ));
            }
        }
        RgbImage::from_raw(image_width, image_height, pixels).ok_or_else(too_large)
    }
}

/// `latent_preview.preview_to_image` for one value: `-1..1` → `0..255` as
/// `((x + 1) / 2).clamp(0, 1) · 255`, truncated to `uint8` (NaN becomes 0, as torch's cast does
/// on common hardware).
pub fn preview_byte(value: f32) -> u8 {
    let scaled = ((value + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0;
    // `as` truncates toward zero and maps NaN to 0, which is torch's float → uint8 cast here.
    scaled as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_byte_maps_and_truncates_like_torch() {
        assert_eq!(preview_byte(-1.0), 0);
        assert_eq!(preview_byte(1.0), 255);
        assert_eq!(preview_byte(5.0), 255);
        assert_eq!(preview_byte(-3.0), 0);
        // (0 + 1) / 2 · 255 = 127.5 truncates to 127.
        assert_eq!(preview_byte(0.0), 127);
        assert_eq!(preview_byte(f32::NAN), 0);
    }

    #[test]
    fn families_have_their_channel_counts() {
        assert_eq!(Latent2Rgb::SD15.channels(), 4);
        assert_eq!(Latent2Rgb::SDXL.channels(), 4);
        assert_eq!(Latent2Rgb::SD3.channels(), 16);
        assert_eq!(Latent2Rgb::FLUX.channels(), 16);
        assert_eq!(
            Latent2Rgb::for_architecture(Architecture::Sd2),
            Some(Latent2Rgb::SD15)
        );
        assert_eq!(
            Latent2Rgb::for_architecture(Architecture::SdxlRefiner),
            Some(Latent2Rgb::SDXL)
        );
        assert_eq!(Latent2Rgb::for_architecture(Architecture::ClipL), None);
    }

    #[test]
    fn wrong_channel_count_is_an_input_error() {
        let x0 = Tensor::zeros((1, 16, 2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(
            Latent2Rgb::SD15.decode(&x0),
            Err(NodesError::InvalidInput { .. })
        ));
    }
}
