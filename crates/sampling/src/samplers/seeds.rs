//! `seeds_2` and `seeds_3`: SEEDS, stochastic explicit exponential derivative-free solvers
//! (arXiv 2305.14267), data prediction in half-log-SNR, with per-step noise.

use candle_core::Tensor;

use super::common::{half_log_snr, half_log_snr_to_sigma, lerp, offset_first_sigma_for_snr};
use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::noise::NoiseSource;
use crate::tensor_ops::{add, lincomb, scale, sub};

/// `h·φ₁(h) = eʰ − 1`.
fn phi_1(h: f32) -> f32 {
    h.exp_m1()
}

/// `h·φ₂(h) = (eʰ − 1 − h)/h`.
fn phi_2(h: f32) -> f32 {
    (h.exp_m1() - h) / h
}

/// `sample_seeds_2(eta, s_noise, r)`.
#[derive(Clone, Copy, Debug)]
pub struct Seeds2 {
    /// Stochasticity (1.0).
    pub eta: f32,
    /// Noise multiplier (1.0).
    pub s_noise: f32,
    /// Position of the intermediate stage (0.5).
    pub r: f64,
}

impl Seeds2 {
    /// ComfyUI's defaults.
    pub const DEFAULT: Self = Self {
        eta: 1.0,
        s_noise: 1.0,
        r: 0.5,
    };
}

/// `sample_seeds_3(eta, s_noise, r_1, r_2)`.
#[derive(Clone, Copy, Debug)]
pub struct Seeds3 {
    /// Stochasticity (1.0).
    pub eta: f32,
    /// Noise multiplier (1.0).
    pub s_noise: f32,
    /// First intermediate stage (1/3).
    pub r_1: f64,
    /// Second intermediate stage (2/3).
    pub r_2: f64,
}

impl Seeds3 {
    /// ComfyUI's defaults.
    pub const DEFAULT: Self = Self {
        eta: 1.0,
        s_noise: 1.0,
        r_1: 1.0 / 3.0,
        r_2: 2.0 / 3.0,
    };
}

/// `x + noise·σ·s_noise`, torch's operation order.
fn add_noise(x: &Tensor, noise: &Tensor, sigma: f32, s_noise: f32) -> Result<Tensor> {
    add(x, &scale(&scale(noise, sigma)?, s_noise)?)
}

/// `torch.lerp(a, b, w)` on tensors for a Python-float weight.
fn lerp_tensor(a: &Tensor, b: &Tensor, weight: f32) -> Result<Tensor> {
    if weight.abs() < 0.5 {
        add(a, &scale(&sub(b, a)?, weight)?)
    } else {
        sub(b, &scale(&sub(b, a)?, 1.0 - weight)?)
    }
}

/// The per-step quantities both SEEDS variants share between their stages.
struct SeedsStep {
    /// `σ`.
    sigma: f32,
    /// `h = λ' − λ`.
    h: f32,
    /// `h·(η + 1)`.
    h_eta: f32,
    /// `η`.
    eta: f32,
    /// Noise multiplier.
    s_noise: f32,
    /// Whether noise is drawn at all (`η > 0` and `s_noise > 0`).
    inject: bool,
}

impl SeedsStep {
    /// Stage 1 of both variants: the exponential step to `σ_s1` at fraction `r` of the step,
    /// plus its noise, which the next stage continues.
    fn first_stage(
        &self,
        x: &Tensor,
        denoised: &Tensor,
        noise: &mut dyn NoiseSource,
        r: f64,
        (sigma_s_1, alpha_s_1): (f32, f32),
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (r_f32, h, eta) = (r as f32, self.h, self.eta);
        let x_1 = sub(
            &scale(x, sigma_s_1 / self.sigma * (-r_f32 * h * eta).exp())?,
            &scale(denoised, alpha_s_1 * phi_1(-r_f32 * self.h_eta))?,
        )?;
        if !self.inject {
            return Ok((x_1, None));
        }
        let amount = (-((-2.0 * r) as f32 * h * eta).exp_m1()).sqrt();
        let n = scale(&noise.noise(self.sigma, sigma_s_1)?, amount)?;
        Ok((add_noise(&x_1, &n, sigma_s_1, self.s_noise)?, Some(n)))
    }

    /// The noise of the stage from fraction `r_from` (noise `previous`, at `sigma_from`) to
    /// `r_to` (at `sigma_to`): the previous noise decayed plus fresh noise for the remainder.
    fn continued_noise(
        &self,
        noise: &mut dyn NoiseSource,
        previous: &Tensor,
        (r_from, r_to): (f64, f64),
        (sigma_from, sigma_to): (f32, f32),
    ) -> Result<Tensor> {
        let segment = (r_from - r_to) as f32 * self.h * self.eta;
        let carried = scale(previous, segment.exp())?;
        let fresh = scale(
            &noise.noise(sigma_from, sigma_to)?,
            (-(segment * 2.0).exp_m1()).sqrt(),
        )?;
        add(&carried, &fresh)
    }
}

impl Sampler for Seeds2 {
    fn name(&self) -> &'static str {
        "seeds_2"
    }

    fn sample(
        &self,
        ctx: &mut SamplerContext<'_>,
        mut x: Tensor,
        sigmas: &[f32],
    ) -> Result<Tensor> {
        let mut noise = ctx.step_noise(&x)?;
        let model = ctx.model_sampling;
        let sigmas = offset_first_sigma_for_snr(sigmas, model);
        let inject = self.eta > 0.0 && self.s_noise > 0.0;
        let (r, eta) = (self.r as f32, self.eta);
        let fac = (1.0 / (2.0 * self.r)) as f32;
        let total = sigmas.len().saturating_sub(1);
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
            let h_eta = h * (eta + 1.0);
            let lambda_s_1 = lerp(lambda_s, lambda_t, r);
            let sigma_s_1 = half_log_snr_to_sigma(lambda_s_1, model);
            let alpha_s_1 = sigma_s_1 * lambda_s_1.exp();
            let alpha_t = sigma_next * lambda_t.exp();

            let shape = SeedsStep {
                sigma,
                h,
                h_eta,
                eta,
                s_noise: self.s_noise,
                inject,
            };
            let (x_2, sde_noise) = shape.first_stage(
                &x,
                &denoised,
                noise.as_mut(),
                self.r,
                (sigma_s_1, alpha_s_1),
            )?;
            let denoised_2 = ctx.model(&x_2, sigma_s_1)?;

            let denoised_d = lerp_tensor(&denoised, &denoised_2, fac)?;
            x = sub(
                &scale(&x, sigma_next / sigma * (-h * eta).exp())?,
                &scale(&denoised_d, alpha_t * phi_1(-h_eta))?,
            )?;
            if let Some(n) = sde_noise {
                let n = shape.continued_noise(
                    noise.as_mut(),
                    &n,
                    (self.r, 1.0),
                    (sigma_s_1, sigma_next),
                )?;
                x = add_noise(&x, &n, sigma_next, self.s_noise)?;
            }
        }
        Ok(x)
    }
}

impl Sampler for Seeds3 {
    fn name(&self) -> &'static str {
        "seeds_3"
    }

    fn sample(
        &self,
        ctx: &mut SamplerContext<'_>,
        mut x: Tensor,
        sigmas: &[f32],
    ) -> Result<Tensor> {
        let mut noise = ctx.step_noise(&x)?;
        let model = ctx.model_sampling;
        let sigmas = offset_first_sigma_for_snr(sigmas, model);
        let inject = self.eta > 0.0 && self.s_noise > 0.0;
        let (r_1, r_2, eta) = (self.r_1 as f32, self.r_2 as f32, self.eta);
        let total = sigmas.len().saturating_sub(1);
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
            let h_eta = h * (eta + 1.0);
            let lambda_s_1 = lerp(lambda_s, lambda_t, r_1);
            let lambda_s_2 = lerp(lambda_s, lambda_t, r_2);
            let sigma_s_1 = half_log_snr_to_sigma(lambda_s_1, model);
            let sigma_s_2 = half_log_snr_to_sigma(lambda_s_2, model);
            let alpha_s_1 = sigma_s_1 * lambda_s_1.exp();
            let alpha_s_2 = sigma_s_2 * lambda_s_2.exp();
            let alpha_t = sigma_next * lambda_t.exp();

            // Step 1
            let shape = SeedsStep {
                sigma,
                h,
                h_eta,
                eta,
                s_noise: self.s_noise,
                inject,
            };
            let (x_2, mut sde_noise) = shape.first_stage(
                &x,
                &denoised,
                noise.as_mut(),
                self.r_1,
                (sigma_s_1, alpha_s_1),
            )?;
            let denoised_2 = ctx.model(&x_2, sigma_s_1)?;

            // Step 2
            let a3_2 = (self.r_2 / self.r_1) as f32 * phi_2(-r_2 * h_eta);
            let a3_1 = phi_1(-r_2 * h_eta) - a3_2;
            let mut x_3 = sub(
                &scale(&x, sigma_s_2 / sigma * (-r_2 * h * eta).exp())?,
                &scale(&lincomb(a3_1, &denoised, a3_2, &denoised_2)?, alpha_s_2)?,
            )?;
            if let Some(n) = sde_noise.take() {
                let n = shape.continued_noise(
                    noise.as_mut(),
                    &n,
                    (self.r_1, self.r_2),
                    (sigma_s_1, sigma_s_2),
                )?;
                x_3 = add_noise(&x_3, &n, sigma_s_2, self.s_noise)?;
                sde_noise = Some(n);
            }
            let denoised_3 = ctx.model(&x_3, sigma_s_2)?;

            // Step 3
            let b3 = phi_2(-h_eta) / r_2;
            let b1 = phi_1(-h_eta) - b3;
            x = sub(
                &scale(&x, sigma_next / sigma * (-h * eta).exp())?,
                &scale(&lincomb(b1, &denoised, b3, &denoised_3)?, alpha_t)?,
            )?;
            if let Some(n) = sde_noise {
                let n = shape.continued_noise(
                    noise.as_mut(),
                    &n,
                    (self.r_2, 1.0),
                    (sigma_s_2, sigma_next),
                )?;
                x = add_noise(&x, &n, sigma_next, self.s_noise)?;
            }
        }
        Ok(x)
    }
}
