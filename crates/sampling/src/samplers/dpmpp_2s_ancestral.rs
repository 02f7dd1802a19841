//! `dpmpp_2s_ancestral`: DPM-Solver++(2S) single-step second-order steps to `sigma_down` plus
//! fresh noise, with the rectified-flow variant for `CONST` models.

use candle_core::Tensor;

use super::common::{ancestral_step, flow_ancestral_step};
use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, add_scaled, lincomb, scale, sub, to_d};
use crate::torch_math::rdiv;

/// `sample_dpmpp_2s_ancestral(eta, s_noise)`.
#[derive(Clone, Copy, Debug)]
pub struct Dpmpp2sAncestral {
    /// Ancestral noise amount (1.0).
    pub eta: f32,
    /// Noise multiplier (1.0).
    pub s_noise: f32,
}

impl Dpmpp2sAncestral {
    /// ComfyUI's defaults.
    pub const DEFAULT: Self = Self {
        eta: 1.0,
        s_noise: 1.0,
    };
}

impl Default for Dpmpp2sAncestral {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Dpmpp2sAncestral {
    fn sample_eps(
        &self,
        ctx: &mut SamplerContext<'_>,
        mut x: Tensor,
        sigmas: &[f32],
    ) -> Result<Tensor> {
        let mut noise = ctx.step_noise(&x)?;
        let total = sigmas.len().saturating_sub(1);
        let sigma_fn = |t: f32| (-t).exp();
        let t_fn = |sigma: f32| -sigma.ln();
        for i in 0..total {
            let (sigma, sigma_next) = (sigmas[i], sigmas[i + 1]);
            let denoised = ctx.model(&x, sigma)?;
            let (sigma_down, sigma_up) = ancestral_step(sigma, sigma_next, self.eta);
            ctx.report(i, total, sigma, &x, &denoised)?;
            if sigma_down == 0.0 {
                let d = to_d(&x, sigma, &denoised)?;
                x = add_scaled(&x, &d, sigma_down - sigma)?;
            } else {
                let (t, t_next) = (t_fn(sigma), t_fn(sigma_down));
                let h = t_next - t;
                let s = t + 0.5 * h;
                let x_2 = sub(
                    &scale(&x, sigma_fn(s) / sigma_fn(t))?,
                    &scale(&denoised, (-h * 0.5).exp_m1())?,
                )?;
                let denoised_2 = ctx.model(&x_2, sigma_fn(s))?;
                x = sub(
                    &scale(&x, sigma_fn(t_next) / sigma_fn(t))?,
                    &scale(&denoised_2, (-h).exp_m1())?,
                )?;
            }
            if sigma_next > 0.0 {
                let n = scale(
                    &scale(&noise.noise(sigma, sigma_next)?, self.s_noise)?,
                    sigma_up,
                )?;
                x = add(&x, &n)?;
            }
        }
        Ok(x)
    }

    fn sample_flow(
        &self,
        ctx: &mut SamplerContext<'_>,
        mut x: Tensor,
        sigmas: &[f32],
    ) -> Result<Tensor> {
        let mut noise = ctx.step_noise(&x)?;
        let total = sigmas.len().saturating_sub(1);
        let lambda_fn = |sigma: f32| ((1.0 - sigma) / sigma).ln();
        let sigma_fn = |lambda: f32| 1.0 / (lambda.exp() + 1.0);
        for i in 0..total {
            let (sigma, sigma_next) = (sigmas[i], sigmas[i + 1]);
            let denoised = ctx.model(&x, sigma)?;
            let step = flow_ancestral_step(sigma, sigma_next, self.eta);
            ctx.report(i, total, sigma, &x, &denoised)?;
            if sigma_next == 0.0 {
                let d = to_d(&x, sigma, &denoised)?;
                x = add_scaled(&x, &d, step.sigma_down - sigma)?;
            } else {
                // At σ = 1 the log-SNR is infinite; ComfyUI substitutes the Python float 0.9999.
                let (sigma_s, ratio_s) = if sigma == 1.0 {
                    (0.9999f32, rdiv(0.9999, sigma))
                } else {
                    let (t_i, t_down) = (lambda_fn(sigma), lambda_fn(step.sigma_down));
                    let h = t_down - t_i;
                    let s = t_i + 0.5 * h;
                    let sigma_s = sigma_fn(s);
                    (sigma_s, sigma_s / sigma)
                };
                let u = lincomb(ratio_s, &x, 1.0 - ratio_s, &denoised)?;
                let denoised_i = ctx.model(&u, sigma_s)?;
                let ratio_down = step.sigma_down / sigma;
                x = lincomb(ratio_down, &x, 1.0 - ratio_down, &denoised_i)?;
            }
            if sigma_next > 0.0 && self.eta > 0.0 {
                let n = scale(
                    &scale(&noise.noise(sigma, sigma_next)?, self.s_noise)?,
                    step.renoise,
                )?;
                x = add(&scale(&x, step.alpha_ratio)?, &n)?;
            }
        }
        Ok(x)
    }
}

impl Sampler for Dpmpp2sAncestral {
    fn name(&self) -> &'static str {
        "dpmpp_2s_ancestral"
    }

    fn sample(&self, ctx: &mut SamplerContext<'_>, x: Tensor, sigmas: &[f32]) -> Result<Tensor> {
        if ctx.model_sampling.is_const() {
            self.sample_flow(ctx, x, sigmas)
        } else {
            self.sample_eps(ctx, x, sigmas)
        }
    }
}
