//! `dpmpp_2m_sde` and `dpmpp_2m_sde_heun` (plus their `_gpu` names): DPM-Solver++(2M) SDE with
//! Brownian-tree noise, midpoint or Heun correction.

use candle_core::Tensor;

use super::common::{offset_first_sigma_for_snr, reciprocal};
use super::sde_step::SdeStep;
use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, scale, sub};

/// The second-order correction of [`Dpmpp2mSde`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SolverType {
    /// `solver_type='midpoint'`.
    Midpoint,
    /// `solver_type='heun'`.
    Heun,
}

/// `sample_dpmpp_2m_sde(eta, s_noise, solver_type)`.
///
/// The `_gpu` names differ in ComfyUI only by building the Brownian tree on the model's device.
#[derive(Clone, Copy, Debug)]
pub struct Dpmpp2mSde {
    /// Stochasticity (1.0).
    pub eta: f32,
    /// Noise multiplier (1.0).
    pub s_noise: f32,
    /// Midpoint (`dpmpp_2m_sde`) or Heun (`dpmpp_2m_sde_heun`).
    pub solver: SolverType,
    /// The registered name.
    pub name: &'static str,
}

impl Dpmpp2mSde {
    /// `dpmpp_2m_sde`.
    pub const MIDPOINT: Self = Self {
        eta: 1.0,
        s_noise: 1.0,
        solver: SolverType::Midpoint,
        name: "dpmpp_2m_sde",
    };
    /// `dpmpp_2m_sde_gpu`.
    pub const MIDPOINT_GPU: Self = Self {
        name: "dpmpp_2m_sde_gpu",
        ..Self::MIDPOINT
    };
    /// `dpmpp_2m_sde_heun`.
    pub const HEUN: Self = Self {
        solver: SolverType::Heun,
        name: "dpmpp_2m_sde_heun",
        ..Self::MIDPOINT
    };
    /// `dpmpp_2m_sde_heun_gpu`.
    pub const HEUN_GPU: Self = Self {
        name: "dpmpp_2m_sde_heun_gpu",
        ..Self::HEUN
    };
}

impl Sampler for Dpmpp2mSde {
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
        let mut old_denoised: Option<Tensor> = None;
        let mut h_last: Option<f32> = None;
        let mut h: Option<f32> = None;
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
                if let (Some(old), Some(last)) = (&old_denoised, h_last) {
                    let r = last / step.h;
                    let difference = sub(&denoised, old)?;
                    let (alpha_t, phi) = (step.alpha_t, step.phi());
                    let coefficient = match self.solver {
                        SolverType::Heun => alpha_t * (phi / -step.h_eta + 1.0) * reciprocal(r),
                        SolverType::Midpoint => 0.5 * alpha_t * phi * reciprocal(r),
                    };
                    x = add(&x, &scale(&difference, coefficient)?)?;
                }
                x = step.add_noise(x, noise.as_mut(), self.s_noise)?;
            }
            old_denoised = Some(denoised);
            h_last = h;
        }
        Ok(x)
    }
}
