//! What a sampler works with: the [`Denoiser`] (model plus CFG, implemented outside this crate),
//! the [`Progress`] callback, and the [`SamplerContext`] bundling them with the model's
//! [`ModelSampling`] and the run's [`NoiseFactory`].

use std::ops::ControlFlow;

use candle_core::Tensor;

use crate::error::{Result, SamplingError};
use crate::model_sampling::ModelSampling;
use crate::noise::{NoiseFactory, NoiseSource};

/// The model as samplers see it: a noisy latent and its noise level in, the denoised latent
/// (after classifier-free guidance) out.
pub trait Denoiser {
    /// The denoised prediction for `x` at noise level `sigma`.
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor>;
}

impl<F> Denoiser for F
where
    F: FnMut(&Tensor, f64) -> Result<Tensor>,
{
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        self(x, sigma)
    }
}

/// What a sampler reports after each step's model evaluation (where ComfyUI calls its
/// `callback`): used for progress, previews and interruption.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo<'a> {
    /// Index of the step, from 0.
    pub step: usize,
    /// Number of steps in this run (`len(sigmas) - 1`).
    pub total: usize,
    /// The noise level of the step.
    pub sigma: f32,
    /// The latent at the start of the step.
    pub x: &'a Tensor,
    /// The model's denoised prediction for it (what previews show).
    pub denoised: &'a Tensor,
}

/// Receives [`StepInfo`] after every step; returning `ControlFlow::Break` stops the sampler
/// with [`SamplingError::Interrupted`].
pub trait Progress {
    /// Called once per step.
    fn on_step(&mut self, info: &StepInfo<'_>) -> ControlFlow<()>;
}

impl<F> Progress for F
where
    F: FnMut(&StepInfo<'_>) -> ControlFlow<()>,
{
    fn on_step(&mut self, info: &StepInfo<'_>) -> ControlFlow<()> {
        self(info)
    }
}

/// A [`Progress`] that never interrupts and ignores every step.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn on_step(&mut self, _info: &StepInfo<'_>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// Everything one sampling run needs besides the latent and the sigmas.
pub struct SamplerContext<'a> {
    /// The model plus guidance.
    pub denoiser: &'a mut dyn Denoiser,
    /// The model's noise schedule and prediction type.
    pub model_sampling: &'a ModelSampling,
    /// Where ancestral and SDE samplers get their per-step noise.
    pub noise: &'a dyn NoiseFactory,
    /// Called after every step.
    pub progress: &'a mut dyn Progress,
}

impl std::fmt::Debug for SamplerContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamplerContext")
            .field("model_sampling", &self.model_sampling.schedule())
            .finish_non_exhaustive()
    }
}

impl SamplerContext<'_> {
    /// Evaluates the denoiser at `sigma`.
    pub(crate) fn model(&mut self, x: &Tensor, sigma: f32) -> Result<Tensor> {
        self.denoiser.denoise(x, f64::from(sigma))
    }

    /// Reports a finished model evaluation; an interrupt becomes an error.
    pub(crate) fn report(
        &mut self,
        step: usize,
        total: usize,
        sigma: f32,
        x: &Tensor,
        denoised: &Tensor,
    ) -> Result<()> {
        let info = StepInfo {
            step,
            total,
            sigma,
            x,
            denoised,
        };
        match self.progress.on_step(&info) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(SamplingError::Interrupted { step, total }),
        }
    }

    /// `default_noise_sampler(x, seed)`.
    pub(crate) fn step_noise(&self, x: &Tensor) -> Result<Box<dyn NoiseSource>> {
        self.noise.step_noise(x)
    }

    /// `BrownianTreeNoiseSampler(x, min(sigmas > 0), max(sigmas), seed)`.
    pub(crate) fn brownian_noise(
        &self,
        x: &Tensor,
        sigmas: &[f32],
    ) -> Result<Box<dyn NoiseSource>> {
        let sigma_min = sigmas
            .iter()
            .copied()
            .filter(|&s| s > 0.0)
            .fold(f32::INFINITY, f32::min);
        let sigma_max = sigmas.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        self.noise.brownian_noise(x, sigma_min, sigma_max)
    }
}
