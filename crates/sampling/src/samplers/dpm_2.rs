//! `dpm_2`: DPM-Solver-2-style midpoint steps in log sigma (Euler on the last step).

use candle_core::Tensor;

use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add_scaled, to_d};

/// `sample_dpm_2` with `s_churn = 0`. KSampler drops its penultimate sigma.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dpm2;

/// `exp(lerp(log a, log b, 0.5))`, with torch's lerp for weight ≥ 0.5: `b − (b − a)·0.5`.
pub(crate) fn log_midpoint(a: f32, b: f32) -> f32 {
    let (log_a, log_b) = (a.ln(), b.ln());
    (log_b - (log_b - log_a) * 0.5).exp()
}

impl Sampler for Dpm2 {
    fn name(&self) -> &'static str {
        "dpm_2"
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
        let total = sigmas.len().saturating_sub(1);
        for i in 0..total {
            let (sigma, sigma_next) = (sigmas[i], sigmas[i + 1]);
            let denoised = ctx.model(&x, sigma)?;
            let d = to_d(&x, sigma, &denoised)?;
            ctx.report(i, total, sigma, &x, &denoised)?;
            if sigma_next == 0.0 {
                x = add_scaled(&x, &d, sigma_next - sigma)?;
            } else {
                let sigma_mid = log_midpoint(sigma, sigma_next);
                let x_2 = add_scaled(&x, &d, sigma_mid - sigma)?;
                let denoised_2 = ctx.model(&x_2, sigma_mid)?;
                let d_2 = to_d(&x_2, sigma_mid, &denoised_2)?;
                x = add_scaled(&x, &d_2, sigma_next - sigma)?;
            }
        }
        Ok(x)
    }
}
