//! `heun`: Karras et al. (2022) Algorithm 2 (second-order Heun steps, Euler on the last step).

use candle_core::Tensor;

use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, add_scaled, div_scalar, to_d};

/// `sample_heun` with `s_churn = 0`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Heun;

impl Sampler for Heun {
    fn name(&self) -> &'static str {
        "heun"
    }

    fn sample(
        &self,
        ctx: &mut SamplerContext<'_>,
        mut x: Tensor,
        sigmas: &[f32],
    ) -> Result<Tensor> {
        let total = sigmas.len().saturating_sub(1);
        for i in 0..total {
            let (sigma, sigma_next) = (sigmas[i], sigmas[i + 1]);
            let denoised = ctx.model(&x, sigma)?;
            let d = to_d(&x, sigma, &denoised)?;
            ctx.report(i, total, sigma, &x, &denoised)?;
            let dt = sigma_next - sigma;
            if sigma_next == 0.0 {
                x = add_scaled(&x, &d, dt)?;
            } else {
                let x_2 = add_scaled(&x, &d, dt)?;
                let denoised_2 = ctx.model(&x_2, sigma_next)?;
                let d_2 = to_d(&x_2, sigma_next, &denoised_2)?;
                let d_prime = div_scalar(&add(&d, &d_2)?, 2.0)?;
                x = add_scaled(&x, &d_prime, dt)?;
            }
        }
        Ok(x)
    }
}
