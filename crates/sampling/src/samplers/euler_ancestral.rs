//! `euler_ancestral`: Euler steps down to `sigma_down` plus fresh noise `sigma_up`; the
//! rectified-flow variant (`sample_euler_ancestral_RF`) for `CONST` models.

use candle_core::Tensor;

use super::common::{ancestral_step, flow_ancestral_step};
use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, add_scaled, lincomb, scale, to_d};

/// `sample_euler_ancestral(eta, s_noise)`.
#[derive(Clone, Copy, Debug)]
pub struct EulerAncestral {
    /// Ancestral noise amount (1.0).
    pub eta: f32,
    /// Noise multiplier (1.0).
    pub s_noise: f32,
}

impl Default for EulerAncestral {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl EulerAncestral {
    /// ComfyUI's defaults.
    pub const DEFAULT: Self = Self {
        eta: 1.0,
        s_noise: 1.0,
    };
}

impl Sampler for EulerAncestral {
    fn name(&self) -> &'static str {
        "euler_ancestral"
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
            if flow {
                ctx.report(i, total, sigma, &x, &denoised)?;
                if sigma_next == 0.0 {
                    x = denoised;
                    continue;
                }
                let step = flow_ancestral_step(sigma, sigma_next, self.eta);
                let ratio = step.sigma_down / sigma;
                x = lincomb(ratio, &x, 1.0 - ratio, &denoised)?;
                if self.eta > 0.0 {
                    let n = scale(
                        &scale(&noise.noise(sigma, sigma_next)?, self.s_noise)?,
                        step.renoise,
                    )?;
                    x = add(&scale(&x, step.alpha_ratio)?, &n)?;
                }
            } else {
                let (sigma_down, sigma_up) = ancestral_step(sigma, sigma_next, self.eta);
                ctx.report(i, total, sigma, &x, &denoised)?;
                if sigma_down == 0.0 {
                    x = denoised;
                    continue;
                }
                let d = to_d(&x, sigma, &denoised)?;
                let stepped = add_scaled(&x, &d, sigma_down - sigma)?;
                let n = scale(
                    &scale(&noise.noise(sigma, sigma_next)?, self.s_noise)?,
                    sigma_up,
                )?;
                x = add(&stepped, &n)?;
            }
        }
        Ok(x)
    }
}
