//! `lcm`: latent consistency sampling: jump to the denoised latent, re-noise to the next sigma.

use candle_core::Tensor;

use super::{Sampler, SamplerContext};
use crate::error::Result;

/// `sample_lcm`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lcm;

impl Sampler for Lcm {
    fn name(&self) -> &'static str {
        "lcm"
    }

    fn sample(
        &self,
        ctx: &mut SamplerContext<'_>,
        mut x: Tensor,
        sigmas: &[f32],
    ) -> Result<Tensor> {
        let mut noise = ctx.step_noise(&x)?;
        let total = sigmas.len().saturating_sub(1);
        for i in 0..total {
            let (sigma, sigma_next) = (sigmas[i], sigmas[i + 1]);
            let denoised = ctx.model(&x, sigma)?;
            ctx.report(i, total, sigma, &x, &denoised)?;
            x = denoised;
            if sigma_next > 0.0 {
                let n = noise.noise(sigma, sigma_next)?;
                x = ctx
                    .model_sampling
                    .noise_scaling(sigma_next, &n, &x, false)?;
            }
        }
        Ok(x)
    }
}
