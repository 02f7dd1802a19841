//! `LatentFormat`: how a model family scales VAE latents before sampling and back afterwards
//! (ComfyUI's `comfy/latent_formats.py`).

use candle_core::Tensor;

use crate::error::Result;
use crate::tensor_ops::{add_scalar, div_scalar, scale};

/// A latent space: channel count plus the affine map between VAE latents and sampler latents.
///
/// `process_in(x) = (x − shift)·scale`, `process_out(x) = x / scale + shift`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatentFormat {
    /// Latent channels (4 for SD/SDXL, 16 for SD3/Flux).
    pub channels: usize,
    /// Multiplier applied after the shift.
    pub scale_factor: f32,
    /// Offset subtracted before scaling (0 for SD/SDXL).
    pub shift_factor: f32,
}

impl LatentFormat {
    /// SD 1.x / SD 2.x (`SD15`): ×0.18215.
    pub const SD15: Self = Self {
        channels: 4,
        scale_factor: 0.18215,
        shift_factor: 0.0,
    };
    /// SDXL: ×0.13025.
    pub const SDXL: Self = Self {
        channels: 4,
        scale_factor: 0.13025,
        shift_factor: 0.0,
    };
    /// SD3 / SD3.5: `(x − 0.0609)·1.5305`.
    pub const SD3: Self = Self {
        channels: 16,
        scale_factor: 1.5305,
        shift_factor: 0.0609,
    };
    /// Flux: `(x − 0.1159)·0.3611`.
    pub const FLUX: Self = Self {
        channels: 16,
        scale_factor: 0.3611,
        shift_factor: 0.1159,
    };

    /// VAE latent → sampler latent.
    pub fn process_in(&self, latent: &Tensor) -> Result<Tensor> {
        if self.shift_factor == 0.0 {
            return scale(latent, self.scale_factor);
        }
        scale(&add_scalar(latent, -self.shift_factor)?, self.scale_factor)
    }

    /// Sampler latent → VAE latent.
    pub fn process_out(&self, latent: &Tensor) -> Result<Tensor> {
        let unscaled = div_scalar(latent, self.scale_factor)?;
        if self.shift_factor == 0.0 {
            return Ok(unscaled);
        }
        add_scalar(&unscaled, self.shift_factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn process_out_inverts_process_in() {
        let x = Tensor::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap();
        for format in [
            LatentFormat::SD15,
            LatentFormat::SDXL,
            LatentFormat::SD3,
            LatentFormat::FLUX,
        ] {
            let back = format.process_out(&format.process_in(&x).unwrap()).unwrap();
            let diff: f32 = (back - &x)
                .unwrap()
                .abs()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(diff < 1e-6);
        }
    }

    #[test]
    fn sd3_shifts_before_scaling() {
        let x = Tensor::new(&[1.0f32], &Device::Cpu).unwrap();
        let y: Vec<f32> = LatentFormat::SD3.process_in(&x).unwrap().to_vec1().unwrap();
        assert!((y[0] - (1.0 - 0.0609) * 1.5305).abs() < 1e-6);
    }
}
