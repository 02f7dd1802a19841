//! Noise schedules, samplers and bit-exact PyTorch CPU noise: the numeric core of ComfyUI's
//! `KSampler`, independent of any model.
//!
//! * [`TorchGenerator`] reproduces `torch.randn` on the CPU bit for bit (MT19937 plus torch's
//!   AVX2 or scalar Box–Muller), so a seed gives the same initial noise as ComfyUI.
//! * [`ModelSampling`] holds a model's sigma table and prediction type (EPS, V, rectified flow);
//!   [`LatentFormat`] its latent scaling.
//! * [`schedulers`] turns a model sampling and a step count into sigmas (`karras`, `normal`, …).
//! * [`samplers`] walks those sigmas (`euler`, `dpmpp_2m`, `uni_pc`, …), calling a
//!   [`samplers::Denoiser`] that the model crate implements.
//! * [`ksampler_sigmas`], [`StepRange`] and [`sample`] do what `KSampler`/`KSamplerAdvanced`
//!   do around a sampler.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use kiln_sampling::samplers::{sampler_by_name, NoProgress, SamplerContext};
//! use kiln_sampling::schedulers::scheduler_by_name;
//! use kiln_sampling::{ksampler_sigmas, prepare_noise, sample, LatentFormat, ModelSampling,
//!     NormalKernel, Prediction, TorchCpuNoise};
//!
//! # fn main() -> kiln_sampling::Result<()> {
//! let model = ModelSampling::discrete(Prediction::Eps);
//! let sampler = sampler_by_name("euler_ancestral")?;
//! let sigmas = ksampler_sigmas(&model, scheduler_by_name("karras")?, sampler, 20, 1.0)?;
//! let noise = prepare_noise(&[1, 4, 8, 8], 42, None, NormalKernel::Avx2)?;
//! let latent = Tensor::zeros((1, 4, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
//! // A stand-in for a real model: predicts a blank image.
//! let mut denoiser = |x: &Tensor, _sigma: f64| Ok(x.zeros_like().unwrap());
//! let mut ctx = SamplerContext {
//!     denoiser: &mut denoiser,
//!     model_sampling: &model,
//!     noise: &TorchCpuNoise::new(42),
//!     progress: &mut NoProgress,
//! };
//! let out = sample(sampler, &mut ctx, &noise, &latent, &sigmas, &LatentFormat::SD15)?;
//! assert_eq!(out.dims(), &[1, 4, 8, 8]);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod avx_mathfun;
mod beta_distribution;
mod brownian_tree;
mod error;
mod ksampler;
mod latent_format;
mod model_sampling;
mod mt19937;
mod noise;
pub mod samplers;
pub mod schedulers;
mod seed_sequence;
mod tensor_ops;
mod torch_math;
mod torch_rng;

pub use brownian_tree::BrownianTreeNoise;
pub use error::{Result, SamplingError};
pub use ksampler::{ksampler_sigmas, sample, StepRange};
pub use latent_format::LatentFormat;
pub use model_sampling::{flux_shift_for_resolution, ModelSampling, Prediction, SigmaSchedule};
pub use noise::{prepare_noise, NoiseFactory, NoiseSource, TorchCpuNoise};
pub use torch_rng::{NormalKernel, TorchGenerator};
