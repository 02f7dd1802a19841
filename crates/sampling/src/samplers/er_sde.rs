//! `er_sde`: the extended reverse-time SDE solver (VP ER-SDE-Solver-3, arXiv 2309.06169) with
//! ComfyUI's default noise scaler `λ·(e^{λ^0.3} + 10)`.

use candle_core::Tensor;

use super::common::{half_log_snr, offset_first_sigma_for_snr};
use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, div_scalar, scale, sub};

/// `sample_er_sde(s_noise=1, max_stage=3)`.
#[derive(Clone, Copy, Debug)]
pub struct ErSde {
    /// Noise multiplier (1.0).
    pub s_noise: f32,
    /// Highest solver stage (3).
    pub max_stage: usize,
}

impl ErSde {
    /// ComfyUI's defaults.
    pub const DEFAULT: Self = Self {
        s_noise: 1.0,
        max_stage: 3,
    };
}

impl Default for ErSde {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Points of the rectangle rule for the stage-2/3 integrals.
const INTEGRATION_POINTS: u16 = 200;

/// `default_er_sde_noise_scaler`: `x·(exp(x^0.3) + 10)`.
fn noise_scaler(x: f32) -> f32 {
    x * (x.powf(0.3).exp() + 10.0)
}

impl Sampler for ErSde {
    fn name(&self) -> &'static str {
        "er_sde"
    }

    fn sample(
        &self,
        ctx: &mut SamplerContext<'_>,
        mut x: Tensor,
        sigmas: &[f32],
    ) -> Result<Tensor> {
        let mut noise = ctx.step_noise(&x)?;
        let model = ctx.model_sampling;
        let sigmas = offset_first_sigma_for_snr(sigmas, model);
        let lambdas: Vec<f32> = sigmas
            .iter()
            .map(|&s| (-half_log_snr(s, model)).exp())
            .collect();
        let total = sigmas.len().saturating_sub(1);
        let mut old_denoised: Option<Tensor> = None;
        let mut old_denoised_d: Option<Tensor> = None;
        for i in 0..total {
            let (sigma, sigma_next) = (sigmas[i], sigmas[i + 1]);
            let denoised = ctx.model(&x, sigma)?;
            ctx.report(i, total, sigma, &x, &denoised)?;
            let stage = self.max_stage.min(i + 1);
            if sigma_next == 0.0 {
                x = denoised.clone();
            } else {
                let (lambda_s, lambda_t) = (lambdas[i], lambdas[i + 1]);
                let alpha_s = sigma / lambda_s;
                let alpha_t = sigma_next / lambda_t;
                let r_alpha = alpha_t / alpha_s;
                let scaled_t = noise_scaler(lambda_t);
                let r = scaled_t / noise_scaler(lambda_s);
                x = add(
                    &scale(&x, r_alpha * r)?,
                    &scale(&denoised, alpha_t * (1.0 - r))?,
                )?;
                if let (true, Some(old)) = (stage >= 2, &old_denoised) {
                    let dt = lambda_t - lambda_s;
                    let step = -dt / f32::from(INTEGRATION_POINTS);
                    let (mut s, mut s_u) = (0.0f64, 0.0f64);
                    for k in 0..INTEGRATION_POINTS {
                        let position = lambda_t + f32::from(k) * step;
                        let scaled = noise_scaler(position);
                        s += f64::from(1.0 / scaled);
                        s_u += f64::from((position - lambda_s) / scaled);
                    }
                    let s = s as f32 * step;
                    let denoised_d = div_scalar(&sub(&denoised, old)?, lambda_s - lambdas[i - 1])?;
                    x = add(&x, &scale(&denoised_d, alpha_t * (dt + s * scaled_t))?)?;
                    if let (true, Some(old_d)) = (stage >= 3, &old_denoised_d) {
                        let s_u = s_u as f32 * step;
                        let denoised_u = div_scalar(
                            &sub(&denoised_d, old_d)?,
                            (lambda_s - lambdas[i - 2]) / 2.0,
                        )?;
                        x = add(
                            &x,
                            &scale(&denoised_u, alpha_t * ((dt * dt) / 2.0 + s_u * scaled_t))?,
                        )?;
                    }
                    old_denoised_d = Some(denoised_d);
                }
                if self.s_noise > 0.0 {
                    let amount = (lambda_t * lambda_t - lambda_s * lambda_s * (r * r)).sqrt();
                    let amount = if amount.is_nan() { 0.0 } else { amount };
                    let n = noise.noise(sigma, sigma_next)?;
                    x = add(
                        &x,
                        &scale(&scale(&scale(&n, alpha_t)?, self.s_noise)?, amount)?,
                    )?;
                }
            }
            old_denoised = Some(denoised);
        }
        Ok(x)
    }
}
