//! The first-order data-prediction step and the Brownian noise term shared by the DPM-Solver++
//! multistep SDE samplers (`dpmpp_2m_sde`, `dpmpp_3m_sde`), in ComfyUI's operation order.

use candle_core::Tensor;

use super::common::half_log_snr;
use crate::error::Result;
use crate::model_sampling::ModelSampling;
use crate::noise::NoiseSource;
use crate::tensor_ops::{add, scale};

/// The half-log-SNR quantities of one step `σ → σ'` with stochasticity `η`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SdeStep {
    /// `σ`.
    sigma: f32,
    /// `σ'`.
    sigma_next: f32,
    /// `η`.
    eta: f32,
    /// `h = λ' − λ`.
    pub(crate) h: f32,
    /// `h·(η + 1)`.
    pub(crate) h_eta: f32,
    /// `α' = σ'·e^λ'`.
    pub(crate) alpha_t: f32,
}

impl SdeStep {
    /// The step from `sigma` to `sigma_next` (> 0) under `model`'s half-log-SNR.
    pub(crate) fn new(sigma: f32, sigma_next: f32, eta: f32, model: &ModelSampling) -> Self {
        let lambda_s = half_log_snr(sigma, model);
        let lambda_t = half_log_snr(sigma_next, model);
        let h = lambda_t - lambda_s;
        Self {
            sigma,
            sigma_next,
            eta,
            h,
            h_eta: h * (eta + 1.0),
            alpha_t: sigma_next * lambda_t.exp(),
        }
    }

    /// `φ = −expm1(−h·(η + 1))`.
    pub(crate) fn phi(&self) -> f32 {
        -(-self.h_eta).exp_m1()
    }

    /// `σ'/σ·e^(−hη)·x + α'·φ·denoised`.
    pub(crate) fn first_order(&self, x: &Tensor, denoised: &Tensor) -> Result<Tensor> {
        add(
            &scale(x, self.sigma_next / self.sigma * (-self.h * self.eta).exp())?,
            &scale(denoised, self.alpha_t * self.phi())?,
        )
    }

    /// `x + noise·σ'·√(−expm1(−2hη))·s_noise`, drawing the noise only when `η` and `s_noise`
    /// are both positive (ComfyUI draws nothing otherwise, which keeps the stream aligned).
    pub(crate) fn add_noise(
        &self,
        x: Tensor,
        noise: &mut dyn NoiseSource,
        s_noise: f32,
    ) -> Result<Tensor> {
        if !(self.eta > 0.0 && s_noise > 0.0) {
            return Ok(x);
        }
        let n = noise.noise(self.sigma, self.sigma_next)?;
        let amount = (-(-2.0 * self.h * self.eta).exp_m1()).sqrt();
        add(
            &x,
            &scale(&scale(&scale(&n, self.sigma_next)?, amount)?, s_noise)?,
        )
    }
}
