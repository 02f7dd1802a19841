//! [`Noise`]: ComfyUI's `NOISE` — where a custom sampler's initial noise comes from
//! (`RandomNoise`'s seeded draw or `DisableNoise`'s zeros), plus the seed its ancestral and SDE
//! steps use.

use candle_core::{DType, Device, Tensor};
use kiln_graph::Value;
use kiln_sampling::{prepare_noise, NormalKernel};

use crate::error::{NodesError, TensorContext};

/// How the initial noise is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseKind {
    /// `Noise_EmptyNoise`: zeros.
    Empty,
    /// `Noise_RandomNoise`: `comfy.sample.prepare_noise` with the seed.
    Random,
}

/// A noise generator (`NOISE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Noise {
    /// Zeros or seeded noise.
    pub kind: NoiseKind,
    /// The seed of the initial draw and of the per-step noise of ancestral/SDE samplers
    /// (`noise.seed`; 0 for `DisableNoise`).
    pub seed: u64,
}

impl Noise {
    /// ComfyUI's type name.
    pub const TYPE: &'static str = "NOISE";

    /// `RandomNoise(seed)`.
    pub fn random(seed: u64) -> Self {
        Noise {
            kind: NoiseKind::Random,
            seed,
        }
    }

    /// `DisableNoise`: zeros, seed 0.
    pub fn disabled() -> Self {
        Noise {
            kind: NoiseKind::Empty,
            seed: 0,
        }
    }

    /// `generate_noise(latent)`: zeros or `prepare_noise(samples, seed, batch_index)` shaped
    /// like `samples` (already fixed to the model's channel count), f32 on the CPU.
    pub fn generate(
        &self,
        samples: &Tensor,
        batch_index: Option<&[usize]>,
        kernel: NormalKernel,
    ) -> Result<Tensor, NodesError> {
        match self.kind {
            NoiseKind::Empty => {
                Tensor::zeros(samples.dims(), DType::F32, &Device::Cpu).context("zero noise")
            }
            NoiseKind::Random => prepare_noise(samples.dims(), self.seed, batch_index, kernel)
                .map_err(|source| NodesError::Sampling {
                    context: "drawing the initial noise".to_owned(),
                    source: Box::new(source),
                }),
        }
    }

    /// Wraps the generator as a node value.
    pub fn into_value(self) -> Value {
        Value::object(Self::TYPE, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_noise_is_prepare_noise_and_empty_is_zero() {
        let like = Tensor::zeros((2, 4, 3, 3), DType::F32, &Device::Cpu).unwrap();
        let drawn = Noise::random(5)
            .generate(&like, Some(&[1, 0]), NormalKernel::default())
            .unwrap();
        let want = prepare_noise(&[2, 4, 3, 3], 5, Some(&[1, 0]), NormalKernel::default()).unwrap();
        let diff: f32 = (drawn - want)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(diff, 0.0);
        let zeros = Noise::disabled()
            .generate(&like, None, NormalKernel::default())
            .unwrap();
        assert_eq!(zeros.dims(), &[2, 4, 3, 3]);
        let sum: f32 = zeros.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert_eq!(sum, 0.0);
    }
}
