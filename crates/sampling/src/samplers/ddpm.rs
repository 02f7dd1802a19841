//! `ddpm`: the original DDPM ancestral update, run on the variance-preserving latent.

use candle_core::Tensor;

use super::common::reciprocal;
use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::noise::NoiseSource;
use crate::tensor_ops::{add, div_scalar, scale, sub};

/// `sample_ddpm` (`generic_step_sampler` with `DDPMSampler_step`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Ddpm;

/// `DDPMSampler_step(x, sigma, sigma_prev, noise, noise_sampler)` on the VP latent `x`.
fn ddpm_step(
    x: &Tensor,
    sigma: f32,
    sigma_prev: f32,
    eps: &Tensor,
    noise: &mut dyn NoiseSource,
) -> Result<Tensor> {
    let alpha_cumprod = reciprocal(sigma * sigma + 1.0);
    let alpha_cumprod_prev = reciprocal(sigma_prev * sigma_prev + 1.0);
    let alpha = alpha_cumprod / alpha_cumprod_prev;
    let removed = div_scalar(&scale(eps, 1.0 - alpha)?, (1.0 - alpha_cumprod).sqrt())?;
    let mut mu = scale(&sub(x, &removed)?, reciprocal(alpha).sqrt())?;
    if sigma_prev > 0.0 {
        let spread = ((1.0 - alpha) * (1.0 - alpha_cumprod_prev) / (1.0 - alpha_cumprod)).sqrt();
        mu = add(&mu, &scale(&noise.noise(sigma, sigma_prev)?, spread)?)?;
    }
    Ok(mu)
}

impl Sampler for Ddpm {
    fn name(&self) -> &'static str {
        "ddpm"
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
            let vp = div_scalar(&x, (1.0 + sigma * sigma).sqrt())?;
            let eps = div_scalar(&sub(&x, &denoised)?, sigma)?;
            x = ddpm_step(&vp, sigma, sigma_next, &eps, noise.as_mut())?;
            if sigma_next != 0.0 {
                x = scale(&x, (1.0 + sigma_next * sigma_next).sqrt())?;
            }
        }
        Ok(x)
    }
}
