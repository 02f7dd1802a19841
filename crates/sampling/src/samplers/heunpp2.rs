//! `heunpp2`: Heun++ (third-order where three sigmas remain, Heun on the penultimate step,
//! Euler on the last), from sd-webui-samplers-scheduler.

use candle_core::Tensor;

use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, add_scaled, scale, to_d};

/// `sample_heunpp2` with `s_churn = 0`.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeunPp2;

impl Sampler for HeunPp2 {
    fn name(&self) -> &'static str {
        "heunpp2"
    }

    fn sample(
        &self,
        ctx: &mut SamplerContext<'_>,
        mut x: Tensor,
        sigmas: &[f32],
    ) -> Result<Tensor> {
        let total = sigmas.len().saturating_sub(1);
        let Some(&s_end) = sigmas.last() else {
            return Ok(x);
        };
        let first = sigmas[0];
        for i in 0..total {
            let (sigma, sigma_next) = (sigmas[i], sigmas[i + 1]);
            let denoised = ctx.model(&x, sigma)?;
            let d = to_d(&x, sigma, &denoised)?;
            ctx.report(i, total, sigma, &x, &denoised)?;
            let dt = sigma_next - sigma;
            if sigma_next == s_end {
                x = add_scaled(&x, &d, dt)?;
            } else if sigmas[i + 2] == s_end {
                let x_2 = add_scaled(&x, &d, dt)?;
                let denoised_2 = ctx.model(&x_2, sigma_next)?;
                let d_2 = to_d(&x_2, sigma_next, &denoised_2)?;
                let w2 = sigma_next / (2.0 * first);
                let w1 = 1.0 - w2;
                let d_prime = add(&scale(&d, w1)?, &scale(&d_2, w2)?)?;
                x = add_scaled(&x, &d_prime, dt)?;
            } else {
                let sigma_after = sigmas[i + 2];
                let x_2 = add_scaled(&x, &d, dt)?;
                let denoised_2 = ctx.model(&x_2, sigma_next)?;
                let d_2 = to_d(&x_2, sigma_next, &denoised_2)?;
                let x_3 = add_scaled(&x_2, &d_2, sigma_after - sigma_next)?;
                let denoised_3 = ctx.model(&x_3, sigma_after)?;
                let d_3 = to_d(&x_3, sigma_after, &denoised_3)?;
                let w = 3.0 * first;
                let w2 = sigma_next / w;
                let w3 = sigma_after / w;
                let w1 = 1.0 - w2 - w3;
                let d_prime = add(&add(&scale(&d, w1)?, &scale(&d_2, w2)?)?, &scale(&d_3, w3)?)?;
                x = add_scaled(&x, &d_prime, dt)?;
            }
        }
        Ok(x)
    }
}
