//! `dpm_fast`: DPM-Solver-Fast (Lu et al. 2022), fixed steps of order 3/2/1 in log sigma between
//! the schedule's first and last non-zero sigma; the scheduler's intermediate sigmas are unused.

use candle_core::Tensor;

use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, div_scalar, scale, sub};
use crate::torch_math::linspace_f32;

/// `sample_dpm_fast(eta=0)` as ComfyUI's `dpm_fast` wrapper calls it.
#[derive(Clone, Copy, Debug, Default)]
pub struct DpmFast;

fn sigma_of(t: f32) -> f32 {
    (-t).exp()
}

struct Solver<'c, 'a> {
    ctx: &'c mut SamplerContext<'a>,
}

impl Solver<'_, '_> {
    /// `DPMSolver.eps`: the noise prediction `(x − D(x, σ(t))) / σ(t)`.
    fn eps(&mut self, x: &Tensor, t: f32) -> Result<Tensor> {
        let sigma = sigma_of(t);
        let denoised = self.ctx.model(x, sigma)?;
        div_scalar(&sub(x, &denoised)?, sigma)
    }

    fn step_1(&mut self, x: &Tensor, eps: &Tensor, t: f32, t_next: f32) -> Result<Tensor> {
        let h = t_next - t;
        sub(x, &scale(eps, sigma_of(t_next) * h.exp_m1())?)
    }

    fn step_2(&mut self, x: &Tensor, eps: &Tensor, t: f32, t_next: f32) -> Result<Tensor> {
        let r1 = 0.5f32;
        let h = t_next - t;
        let s1 = t + r1 * h;
        let u1 = sub(x, &scale(eps, sigma_of(s1) * (r1 * h).exp_m1())?)?;
        let eps_r1 = self.eps(&u1, s1)?;
        let first = sub(x, &scale(eps, sigma_of(t_next) * h.exp_m1())?)?;
        let correction = scale(
            &sub(&eps_r1, eps)?,
            sigma_of(t_next) / (2.0 * r1) * h.exp_m1(),
        )?;
        sub(&first, &correction)
    }

    fn step_3(&mut self, x: &Tensor, eps: &Tensor, t: f32, t_next: f32) -> Result<Tensor> {
        let (r1, r2) = ((1.0f64 / 3.0) as f32, (2.0f64 / 3.0) as f32);
        let h = t_next - t;
        let s1 = t + r1 * h;
        let s2 = t + r2 * h;
        let u1 = sub(x, &scale(eps, sigma_of(s1) * (r1 * h).exp_m1())?)?;
        let eps_r1 = self.eps(&u1, s1)?;
        let ratio = ((2.0f64 / 3.0) / (1.0f64 / 3.0)) as f32;
        let u2 = sub(
            &sub(x, &scale(eps, sigma_of(s2) * (r2 * h).exp_m1())?)?,
            &scale(
                &sub(&eps_r1, eps)?,
                sigma_of(s2) * ratio * ((r2 * h).exp_m1() / (r2 * h) - 1.0),
            )?,
        )?;
        let eps_r2 = self.eps(&u2, s2)?;
        let first = sub(x, &scale(eps, sigma_of(t_next) * h.exp_m1())?)?;
        let correction = scale(
            &sub(&eps_r2, eps)?,
            sigma_of(t_next) / r2 * (h.exp_m1() / h - 1.0),
        )?;
        sub(&first, &correction)
    }
}

impl Sampler for DpmFast {
    fn name(&self) -> &'static str {
        "dpm_fast"
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
        let mut sigma_min = sigmas[sigmas.len() - 1];
        if sigma_min == 0.0 {
            sigma_min = sigmas[sigmas.len() - 2];
        }
        let nfe = sigmas.len() - 1;
        let (t_start, t_end) = (-sigmas[0].ln(), -sigma_min.ln());
        let m = nfe / 3 + 1;
        let ts = linspace_f32(t_start, t_end, m + 1);
        let orders: Vec<usize> = if nfe.is_multiple_of(3) {
            std::iter::repeat_n(3, m.saturating_sub(2))
                .chain([2, 1])
                .collect()
        } else {
            std::iter::repeat_n(3, m - 1).chain([nfe % 3]).collect()
        };
        // With eta = 0 ComfyUI still draws (and multiplies by 0) one noise tensor per step.
        let mut noise = ctx.step_noise(&x)?;
        let total = orders.len();
        let mut solver = Solver { ctx };
        for (i, &order) in orders.iter().enumerate() {
            let (t, t_next) = (ts[i], ts[i + 1]);
            let eps = solver.eps(&x, t)?;
            let denoised = sub(&x, &scale(&eps, sigma_of(t))?)?;
            solver.ctx.report(i, total, sigma_of(t), &x, &denoised)?;
            x = match order {
                1 => solver.step_1(&x, &eps, t, t_next)?,
                2 => solver.step_2(&x, &eps, t, t_next)?,
                _ => solver.step_3(&x, &eps, t, t_next)?,
            };
            let n = noise.noise(sigma_of(t), sigma_of(t_next))?;
            x = add(&x, &scale(&n, 0.0)?)?;
        }
        Ok(x)
    }
}
