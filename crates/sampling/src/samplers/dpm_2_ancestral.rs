//! `dpm_2_ancestral`: `dpm_2` midpoint steps down to `sigma_down` plus fresh noise, with the
//! rectified-flow variant for `CONST` models.

use candle_core::Tensor;

use super::common::{ancestral_step, flow_ancestral_step};
use super::dpm_2::log_midpoint;
use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, add_scaled, scale, to_d};

/// `sample_dpm_2_ancestral(eta, s_noise)`. KSampler drops its penultimate sigma.
#[derive(Clone, Copy, Debug)]
pub struct Dpm2Ancestral {
    /// Ancestral noise amount (1.0).
    pub eta: f32,
    /// Noise multiplier (1.0).
    pub s_noise: f32,
}

impl Dpm2Ancestral {
    /// ComfyUI's defaults.
    pub const DEFAULT: Self = Self {
        eta: 1.0,
        s_noise: 1.0,
    };
}

impl Default for Dpm2Ancestral {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Sampler for Dpm2Ancestral {
    fn name(&self) -> &'static str {
        "dpm_2_ancestral"
    }

    fn discards_penultimate_sigma(&self) -> bool {
        true
    }

    fn sample(
        &self,
        ctx: &mut SamplerContext<'_>,
        mut x: Tensor,
        sigmas: &[f32],
    ) -> Result<Tensor> {
        let mut noise = ctx.step_noise(&x)?;
        let flow = ctx.model_sampling.is_const();
        let total = sigmas.len().saturating_sub(1);
        for i in 0..total {
            let (sigma, sigma_next) = (sigmas[i], sigmas[i + 1]);
            let denoised = ctx.model(&x, sigma)?;
            let (sigma_down, sigma_up, alpha_ratio) = if flow {
                let step = flow_ancestral_step(sigma, sigma_next, self.eta);
                (step.sigma_down, step.renoise, Some(step.alpha_ratio))
            } else {
                let (down, up) = ancestral_step(sigma, sigma_next, self.eta);
                (down, up, None)
            };
            ctx.report(i, total, sigma, &x, &denoised)?;
            let d = to_d(&x, sigma, &denoised)?;
            if sigma_down == 0.0 {
                x = add_scaled(&x, &d, sigma_down - sigma)?;
                continue;
            }
            let sigma_mid = log_midpoint(sigma, sigma_down);
            let x_2 = add_scaled(&x, &d, sigma_mid - sigma)?;
            let denoised_2 = ctx.model(&x_2, sigma_mid)?;
            let d_2 = to_d(&x_2, sigma_mid, &denoised_2)?;
            x = add_scaled(&x, &d_2, sigma_down - sigma)?;
            let n = scale(
                &scale(&noise.noise(sigma, sigma_next)?, self.s_noise)?,
                sigma_up,
            )?;
            x = match alpha_ratio {
                Some(ratio) => add(&scale(&x, ratio)?, &n)?,
                None => add(&x, &n)?,
            };
        }
        Ok(x)
    }
}
