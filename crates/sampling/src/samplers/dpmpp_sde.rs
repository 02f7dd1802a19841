//! `dpmpp_sde` (and `dpmpp_sde_gpu`): DPM-Solver++ (stochastic), a single-step second-order SDE
//! solver in half-log-SNR with Brownian-tree noise.

use candle_core::Tensor;

use super::common::{
    ancestral_step, half_log_snr, half_log_snr_to_sigma, offset_first_sigma_for_snr,
};
use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, lincomb, scale, sub};

/// `sample_dpmpp_sde(eta, s_noise, r)`.
///
/// The `_gpu` name differs in ComfyUI only by building the Brownian tree on the model's device;
/// on the CPU both are identical, and this crate always draws on the CPU.
#[derive(Clone, Copy, Debug)]
pub struct DpmppSde {
    /// Stochasticity (1.0).
    pub eta: f32,
    /// Noise multiplier (1.0).
    pub s_noise: f32,
    /// Position of the intermediate evaluation in log-SNR (0.5).
    pub r: f32,
    /// `"dpmpp_sde"` or `"dpmpp_sde_gpu"`.
    pub name: &'static str,
}

impl DpmppSde {
    /// ComfyUI's `dpmpp_sde`.
    pub const DEFAULT: Self = Self {
        eta: 1.0,
        s_noise: 1.0,
        r: 0.5,
        name: "dpmpp_sde",
    };
    /// ComfyUI's `dpmpp_sde_gpu`.
    pub const GPU: Self = Self {
        name: "dpmpp_sde_gpu",
        ..Self::DEFAULT
    };
}

impl Default for DpmppSde {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Sampler for DpmppSde {
    fn name(&self) -> &'static str {
        self.name
    }

    fn sample(
        &self,
        ctx: &mut SamplerContext<'_>,
        mut x: Tensor,
        sigmas: &[f32],
    ) -> Result<Tensor> {
        if sigmas.len() <= 1 {
            return Ok(x);
        }
        let mut noise = ctx.brownian_noise(&x, sigmas)?;
        let model = ctx.model_sampling;
        let sigmas = offset_first_sigma_for_snr(sigmas, model);
        let total = sigmas.len() - 1;
        // fac = 1 / (2r) is a Python float.
        let fac = (1.0 / (2.0 * f64::from(self.r))) as f32;
        let inject = self.eta > 0.0 && self.s_noise > 0.0;
        for i in 0..total {
            let (sigma, sigma_next) = (sigmas[i], sigmas[i + 1]);
            let denoised = ctx.model(&x, sigma)?;
            ctx.report(i, total, sigma, &x, &denoised)?;
            if sigma_next == 0.0 {
                x = denoised;
                continue;
            }
            let lambda_s = half_log_snr(sigma, model);
            let lambda_t = half_log_snr(sigma_next, model);
            let h = lambda_t - lambda_s;
            let lambda_s_1 = lambda_s + self.r * h;
            let sigma_s_1 = half_log_snr_to_sigma(lambda_s_1, model);
            let alpha_s = sigma * lambda_s.exp();
            let alpha_s_1 = sigma_s_1 * lambda_s_1.exp();
            let alpha_t = sigma_next * lambda_t.exp();

            // Step 1
            let (sd, su) = ancestral_step((-lambda_s).exp(), (-lambda_s_1).exp(), self.eta);
            let h_ = -sd.ln() - lambda_s;
            let mut x_2 = sub(
                &scale(&x, alpha_s_1 / alpha_s * (-h_).exp())?,
                &scale(&denoised, alpha_s_1 * (-h_).exp_m1())?,
            )?;
            if inject {
                let n = noise.noise(sigma, sigma_s_1)?;
                x_2 = add(
                    &x_2,
                    &scale(&scale(&scale(&n, alpha_s_1)?, self.s_noise)?, su)?,
                )?;
            }
            let denoised_2 = ctx.model(&x_2, sigma_s_1)?;

            // Step 2
            let (sd, su) = ancestral_step((-lambda_s).exp(), (-lambda_t).exp(), self.eta);
            let h_ = -sd.ln() - lambda_s;
            let denoised_d = lincomb(1.0 - fac, &denoised, fac, &denoised_2)?;
            x = sub(
                &scale(&x, alpha_t / alpha_s * (-h_).exp())?,
                &scale(&denoised_d, alpha_t * (-h_).exp_m1())?,
            )?;
            if inject {
                let n = noise.noise(sigma, sigma_next)?;
                x = add(&x, &scale(&scale(&scale(&n, alpha_t)?, self.s_noise)?, su)?)?;
            }
        }
        Ok(x)
    }
}
