//! `dpmpp_2m`: DPM-Solver++(2M), the second-order multistep solver in log sigma.

use candle_core::Tensor;

use super::common::reciprocal;
use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{scale, sub};

/// `sample_dpmpp_2m`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dpmpp2m;

impl Sampler for Dpmpp2m {
    fn name(&self) -> &'static str {
        "dpmpp_2m"
    }

    fn sample(
        &self,
        ctx: &mut SamplerContext<'_>,
        mut x: Tensor,
        sigmas: &[f32],
    ) -> Result<Tensor> {
        let total = sigmas.len().saturating_sub(1);
        let sigma_fn = |t: f32| (-t).exp();
        let t_fn = |sigma: f32| -sigma.ln();
        let mut old_denoised: Option<Tensor> = None;
        for i in 0..total {
            let (sigma, sigma_next) = (sigmas[i], sigmas[i + 1]);
            let denoised = ctx.model(&x, sigma)?;
            ctx.report(i, total, sigma, &x, &denoised)?;
            let (t, t_next) = (t_fn(sigma), t_fn(sigma_next));
            let h = t_next - t;
            let keep = sigma_fn(t_next) / sigma_fn(t);
            let towards = (-h).exp_m1();
            x = match &old_denoised {
                Some(old) if sigma_next != 0.0 => {
                    let h_last = t - t_fn(sigmas[i - 1]);
                    let r = h_last / h;
                    let half_inverse_r = reciprocal(2.0 * r);
                    let denoised_d = sub(
                        &scale(&denoised, 1.0 + half_inverse_r)?,
                        &scale(old, half_inverse_r)?,
                    )?;
                    sub(&scale(&x, keep)?, &scale(&denoised_d, towards)?)?
                }
                _ => sub(&scale(&x, keep)?, &scale(&denoised, towards)?)?,
            };
            old_denoised = Some(denoised);
        }
        Ok(x)
    }
}
