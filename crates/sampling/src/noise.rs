//! Per-step noise for ancestral and SDE samplers: the [`NoiseSource`] a sampler draws from and
//! the [`NoiseFactory`] that creates one per sampling run, with [`TorchCpuNoise`] reproducing
//! what ComfyUI draws on the CPU.

use candle_core::Tensor;

use crate::brownian_tree::BrownianTreeNoise;
use crate::error::{Result, TensorContext};
use crate::torch_rng::{NormalKernel, TorchGenerator};

/// Noise for one step, from `sigma` down to `sigma_next`, shaped like the latent.
pub trait NoiseSource {
    /// Unit-variance noise for the step `sigma → sigma_next`.
    fn noise(&mut self, sigma: f32, sigma_next: f32) -> Result<Tensor>;
}

/// Creates the noise sources of one sampling run.
pub trait NoiseFactory {
    /// `default_noise_sampler(x, seed)`: a fresh stream, one `randn_like(x)` per call.
    fn step_noise(&self, x: &Tensor) -> Result<Box<dyn NoiseSource>>;

    /// `BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed)`: increments of one Brownian
    /// motion over `[sigma_min, sigma_max]`, normalised to unit variance.
    fn brownian_noise(
        &self,
        x: &Tensor,
        sigma_min: f32,
        sigma_max: f32,
    ) -> Result<Box<dyn NoiseSource>>;
}

/// ComfyUI's noise on the CPU: a `torch.Generator` seeded with the sampling seed for ancestral
/// samplers (bit-exact), a `torchsde.BrownianTree` with that seed as entropy for SDE samplers
/// (bit-exact increments; the final division by `√|Δσ|` can differ in the last bit because
/// torch's float32 `sqrt` goes through MKL on x86).
///
/// ComfyUI draws ancestral noise on the model's device, so its CUDA or MPS images differ from
/// these; its CPU images (and its non-`_gpu` SDE samplers on any device) match.
#[derive(Clone, Copy, Debug)]
pub struct TorchCpuNoise {
    /// The sampling seed.
    pub seed: u64,
    /// Which torch CPU kernel to reproduce.
    pub kernel: NormalKernel,
}

impl TorchCpuNoise {
    /// Noise for `seed` with torch's AVX2 kernel.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            kernel: NormalKernel::default(),
        }
    }
}

impl NoiseFactory for TorchCpuNoise {
    fn step_noise(&self, x: &Tensor) -> Result<Box<dyn NoiseSource>> {
        Ok(Box::new(GeneratorNoise {
            generator: TorchGenerator::manual_seed(self.seed).with_kernel(self.kernel),
            like: x.clone(),
        }))
    }

    fn brownian_noise(
        &self,
        x: &Tensor,
        sigma_min: f32,
        sigma_max: f32,
    ) -> Result<Box<dyn NoiseSource>> {
        Ok(Box::new(BrownianTreeNoise::new(
            x,
            sigma_min,
            sigma_max,
            self.seed,
            self.kernel,
        )?))
    }
}

/// `default_noise_sampler`: `torch.randn(x.size(), generator=g)` per call.
struct GeneratorNoise {
    generator: TorchGenerator,
    like: Tensor,
}

impl NoiseSource for GeneratorNoise {
    fn noise(&mut self, _sigma: f32, _sigma_next: f32) -> Result<Tensor> {
        randn_like(&mut self.generator, &self.like)
    }
}

/// `torch.randn_like(like, generator=generator)` drawn on the CPU and moved to `like`'s device
/// and dtype.
pub(crate) fn randn_like(generator: &mut TorchGenerator, like: &Tensor) -> Result<Tensor> {
    let values = generator.randn(like.dims());
    Tensor::from_vec(values, like.shape(), &candle_core::Device::Cpu)
        .and_then(|t| t.to_device(like.device()))
        .and_then(|t| t.to_dtype(like.dtype()))
        .context("randn_like")
}

/// `comfy.sample.prepare_noise(latent, seed, batch_index)`: the initial noise, drawn with
/// `torch.manual_seed(seed)` on the CPU. With `batch_index`, one `[1, …]` draw per index up to
/// the largest, keeping the draws whose index is listed (in the listed order).
pub fn prepare_noise(
    shape: &[usize],
    seed: u64,
    batch_index: Option<&[usize]>,
    kernel: NormalKernel,
) -> Result<Tensor> {
    let mut generator = TorchGenerator::manual_seed(seed).with_kernel(kernel);
    let device = candle_core::Device::Cpu;
    let Some(indices) = batch_index.filter(|indices| !indices.is_empty()) else {
        let values = generator.randn(shape);
        return Tensor::from_vec(values, shape, &device).context("prepare_noise");
    };
    let mut item_shape = shape.to_vec();
    if let Some(batch) = item_shape.first_mut() {
        *batch = 1;
    }
    let largest = indices.iter().copied().max().unwrap_or(0);
    let draws: Vec<Vec<f32>> = (0..=largest)
        .map(|_| generator.randn(&item_shape))
        .collect();
    let mut values = Vec::with_capacity(indices.len() * draws[0].len());
    for &index in indices {
        values.extend_from_slice(&draws[index]);
    }
    item_shape[0] = indices.len();
    Tensor::from_vec(values, item_shape, &device).context("prepare_noise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_noise_is_randn_of_the_shape() {
        let noise = prepare_noise(&[1, 4, 2, 2], 7, None, NormalKernel::Avx2).unwrap();
        let want = TorchGenerator::manual_seed(7).randn(&[1, 4, 2, 2]);
        assert_eq!(noise.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want);
    }

    #[test]
    fn batch_index_draws_per_item_and_skips_unused() {
        let noise = prepare_noise(&[2, 4, 2, 2], 7, Some(&[2, 0]), NormalKernel::Avx2).unwrap();
        let mut generator = TorchGenerator::manual_seed(7);
        let first = generator.randn(&[1, 4, 2, 2]);
        let _unused = generator.randn(&[1, 4, 2, 2]);
        let third = generator.randn(&[1, 4, 2, 2]);
        let got = noise.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(noise.dims(), &[2, 4, 2, 2]);
        assert_eq!(got[..16], third[..]);
        assert_eq!(got[16..], first[..]);
    }

    #[test]
    fn step_noise_restarts_the_stream_for_each_run() {
        let x = Tensor::zeros(
            (1, 4, 2, 2),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let factory = TorchCpuNoise::new(3);
        let a = factory.step_noise(&x).unwrap().noise(1.0, 0.5).unwrap();
        let b = factory.step_noise(&x).unwrap().noise(1.0, 0.5).unwrap();
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b);
    }
}
