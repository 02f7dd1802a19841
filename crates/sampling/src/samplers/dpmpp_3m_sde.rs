//! `dpmpp_3m_sde` (and `dpmpp_3m_sde_gpu`): DPM-Solver++(3M) SDE with Brownian-tree noise.

use candle_core::Tensor;

use super::common::offset_first_sigma_for_snr;
use super::sde_step::SdeStep;
use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, div_scalar, scale, sub};

/// `sample_dpmpp_3m_sde(eta, s_noise)`.
#[derive(Clone, Copy, Debug)]
pub struct Dpmpp3mSde {
    /// Stochasticity (1.0).
    pub eta: f32,
    /// Noise multiplier (1.0).
    pub s_noise: f32,
    /// `"dpmpp_3m_sde"` or `"dpmpp_3m_sde_gpu"`.
    pub name: &'static str,
}

impl Dpmpp3mSde {
    /// `dpmpp_3m_sde`.
    pub const DEFAULT: Self = Self {
        eta: 1.0,
        s_noise: 1.0,
        name: "dpmpp_3m_sde",
    };
    /// `dpmpp_3m_sde_gpu`.
    pub const GPU: Self = Self {
        name: "dpmpp_3m_sde_gpu",
        ..Self::DEFAULT
    };
}

impl Sampler for Dpmpp3mSde {
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
        let (mut denoised_1, mut denoised_2): (Option<Tensor>, Option<Tensor>) = (None, None);
        let (mut h, mut h_1, mut h_2): (Option<f32>, Option<f32>, Option<f32>) = (None, None, None);
        for i in 0..total {
            let (sigma, sigma_next) = (sigmas[i], sigmas[i + 1]);
            let denoised = ctx.model(&x, sigma)?;
            ctx.report(i, total, sigma, &x, &denoised)?;
            if sigma_next == 0.0 {
                x = denoised.clone();
            } else {
                let step = SdeStep::new(sigma, sigma_next, self.eta, model);
                h = Some(step.h);
                x = step.first_order(&x, &denoised)?;
                let (h_eta, alpha_t) = (step.h_eta, step.alpha_t);
                let phi_2 = (-h_eta).exp_m1() / h_eta + 1.0;
                match (&denoised_1, &denoised_2, h_1, h_2) {
                    (Some(d1), Some(d2), Some(last), Some(before_last)) => {
                        let r0 = last / step.h;
                        let r1 = before_last / step.h;
                        let d1_0 = div_scalar(&sub(&denoised, d1)?, r0)?;
                        let d1_1 = div_scalar(&sub(d1, d2)?, r1)?;
                        let spread = sub(&d1_0, &d1_1)?;
                        let first = add(&d1_0, &div_scalar(&scale(&spread, r0)?, r0 + r1)?)?;
                        let second = div_scalar(&spread, r0 + r1)?;
                        let phi_3 = phi_2 / h_eta - 0.5;
                        x = sub(
                            &add(&x, &scale(&first, alpha_t * phi_2)?)?,
                            &scale(&second, alpha_t * phi_3)?,
                        )?;
                    }
                    (Some(d1), _, Some(last), _) => {
                        let r = last / step.h;
                        let d = div_scalar(&sub(&denoised, d1)?, r)?;
                        x = add(&x, &scale(&d, alpha_t * phi_2)?)?;
                    }
                    _ => {}
                }
                x = step.add_noise(x, noise.as_mut(), self.s_noise)?;
            }
            denoised_2 = denoised_1.take();
            denoised_1 = Some(denoised);
            h_2 = h_1;
            h_1 = h;
        }
        Ok(x)
    }
}
