//! `euler` (Karras et al. 2022, Algorithm 2 without churn) and `ddim`, which ComfyUI runs as
//! Euler (its only difference, random noise for masked inpainting, is outside this crate).

use candle_core::Tensor;

use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add_scaled, to_d};

/// `sample_euler` with `s_churn = 0`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Euler;

/// `ddim`: `euler` under ComfyUI's other name.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ddim;

fn euler(ctx: &mut SamplerContext<'_>, mut x: Tensor, sigmas: &[f32]) -> Result<Tensor> {
    let total = sigmas.len().saturating_sub(1);
    for i in 0..total {
        let (sigma, sigma_next) = (sigmas[i], sigmas[i + 1]);
        let denoised = ctx.model(&x, sigma)?;
        let d = to_d(&x, sigma, &denoised)?;
        ctx.report(i, total, sigma, &x, &denoised)?;
        x = add_scaled(&x, &d, sigma_next - sigma)?;
    }
    Ok(x)
}

impl Sampler for Euler {
    fn name(&self) -> &'static str {
        "euler"
    }

    fn sample(&self, ctx: &mut SamplerContext<'_>, x: Tensor, sigmas: &[f32]) -> Result<Tensor> {
        euler(ctx, x, sigmas)
    }
}

impl Sampler for Ddim {
    fn name(&self) -> &'static str {
        "ddim"
    }

    fn sample(&self, ctx: &mut SamplerContext<'_>, x: Tensor, sigmas: &[f32]) -> Result<Tensor> {
        euler(ctx, x, sigmas)
    }
}
