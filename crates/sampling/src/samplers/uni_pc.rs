//! `uni_pc` and `uni_pc_bh2`: UniPC (Zhao et al. 2023), the unified predictor–corrector, in
//! ComfyUI's configuration: data prediction, multistep, order ≤ 3, lower order at the end,
//! variance-preserving time taken directly as sigma (`SigmaConvert`).

use candle_core::Tensor;

use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, div_scalar, scale, sub};

/// Which `B(h)` UniPC uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UniPcVariant {
    /// `B(h) = h` (`uni_pc`).
    Bh1,
    /// `B(h) = eᵸ − 1` (`uni_pc_bh2`).
    Bh2,
}

/// `sample_unipc(variant)`. KSampler drops its penultimate sigma.
#[derive(Clone, Copy, Debug)]
pub struct UniPc {
    /// The `B(h)` variant.
    pub variant: UniPcVariant,
}

impl UniPc {
    /// `uni_pc`.
    pub const BH1: Self = Self {
        variant: UniPcVariant::Bh1,
    };
    /// `uni_pc_bh2`.
    pub const BH2: Self = Self {
        variant: UniPcVariant::Bh2,
    };
}

/// The final timestep ComfyUI substitutes for a trailing 0 (UniPC's log-SNR is infinite at 0).
const FINAL_TIMESTEP: f32 = 0.001;

/// `SigmaConvert`: the VP schedule with `α = 1/√(1 + σ²)`, in float32.
fn log_mean_coefficient(sigma: f32) -> f32 {
    0.5 * (1.0 / (sigma * sigma + 1.0)).ln()
}

fn marginal_alpha(sigma: f32) -> f32 {
    log_mean_coefficient(sigma).exp()
}

fn marginal_std(sigma: f32) -> f32 {
    (1.0 - (2.0 * log_mean_coefficient(sigma)).exp()).sqrt()
}

fn marginal_lambda(sigma: f32) -> f32 {
    let log_mean = log_mean_coefficient(sigma);
    let log_std = 0.5 * (1.0 - (2.0 * log_mean).exp()).ln();
    log_mean - log_std
}

/// Solves the small dense system `a·x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f32>>, mut b: Vec<f32>) -> Vec<f32> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col].clone();
        for row in col + 1..n {
            let factor = a[row][col] / pivot_row[col];
            for (value, &above) in a[row].iter_mut().zip(&pivot_row).skip(col) {
                *value -= factor * above;
            }
            b[row] -= factor * b[col];
        }
    }
    let mut x = vec![0.0f32; n];
    for row in (0..n).rev() {
        let mut sum = b[row];
        for k in row + 1..n {
            sum -= a[row][k] * x[k];
        }
        x[row] = sum / a[row][row];
    }
    x
}

struct UniPcRun<'c, 'a> {
    ctx: &'c mut SamplerContext<'a>,
    variant: UniPcVariant,
}

impl UniPcRun<'_, '_> {
    /// `data_prediction_fn(x, t)` through `predict_eps_sigma`: the model sees
    /// `x·√(σ² + 1)`, its noise estimate is turned back into `x₀` in VP space.
    fn data_prediction(&mut self, x: &Tensor, t: f32) -> Result<Tensor> {
        let input = scale(x, (t * t + 1.0).sqrt())?;
        let denoised = self.ctx.model(&input, t)?;
        let eps = div_scalar(&sub(&input, &denoised)?, t)?;
        div_scalar(&sub(x, &scale(&eps, marginal_std(t))?)?, marginal_alpha(t))
    }

    /// `multistep_uni_pc_bh_update` with `predict_x0 = True` and no given `x_t`.
    fn update(
        &mut self,
        x: &Tensor,
        model_prev: &[Tensor],
        t_prev: &[f32],
        t: f32,
        order: usize,
        use_corrector: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (Some(&t_prev_0), Some(model_prev_0)) = (t_prev.last(), model_prev.last()) else {
            return Ok((x.clone(), None));
        };
        let lambda_prev_0 = marginal_lambda(t_prev_0);
        let lambda_t = marginal_lambda(t);
        let sigma_prev_0 = marginal_std(t_prev_0);
        let sigma_t = marginal_std(t);
        let alpha_t = log_mean_coefficient(t).exp();
        let h = lambda_t - lambda_prev_0;

        let mut rks = Vec::with_capacity(order);
        let mut d1s = Vec::with_capacity(order);
        for i in 1..order {
            let t_prev_i = t_prev[t_prev.len() - 1 - i];
            let model_prev_i = &model_prev[model_prev.len() - 1 - i];
            let rk = (marginal_lambda(t_prev_i) - lambda_prev_0) / h;
            rks.push(rk);
            d1s.push(div_scalar(&sub(model_prev_i, model_prev_0)?, rk)?);
        }
        rks.push(1.0);

        let hh = -h;
        let h_phi_1 = hh.exp_m1();
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let mut factorial = 1u32;
        let b_h = match self.variant {
            UniPcVariant::Bh1 => hh,
            UniPcVariant::Bh2 => hh.exp_m1(),
        };
        let mut r_matrix = Vec::with_capacity(order);
        let mut b = Vec::with_capacity(order);
        for i in 1..=order {
            r_matrix.push(
                rks.iter()
                    .map(|&rk| rk.powi(i as i32 - 1))
                    .collect::<Vec<f32>>(),
            );
            b.push(h_phi_k * factorial as f32 / b_h);
            factorial *= i as u32 + 1;
            h_phi_k = h_phi_k / hh - (1.0 / f64::from(factorial)) as f32;
        }

        let weighted_sum = |weights: &[f32]| -> Result<Option<Tensor>> {
            let mut sum: Option<Tensor> = None;
            for (d, &w) in d1s.iter().zip(weights) {
                let term = scale(d, w)?;
                sum = Some(match sum {
                    None => term,
                    Some(acc) => add(&acc, &term)?,
                });
            }
            Ok(sum)
        };

        let x_t_ = sub(
            &scale(x, sigma_t / sigma_prev_0)?,
            &scale(model_prev_0, alpha_t * h_phi_1)?,
        )?;
        let mut x_t = x_t_.clone();
        if !d1s.is_empty() {
            let rhos_p = if order == 2 {
                vec![0.5]
            } else {
                let sub_matrix = r_matrix[..order - 1]
                    .iter()
                    .map(|row| row[..order - 1].to_vec())
                    .collect();
                solve(sub_matrix, b[..order - 1].to_vec())
            };
            if let Some(prediction) = weighted_sum(&rhos_p)? {
                x_t = sub(&x_t_, &scale(&prediction, alpha_t * b_h)?)?;
            }
        }
        if !use_corrector {
            return Ok((x_t, None));
        }
        let rhos_c = if order == 1 {
            vec![0.5]
        } else {
            solve(r_matrix, b)
        };
        let model_t = self.data_prediction(&x_t, t)?;
        let d1_t = sub(&model_t, model_prev_0)?;
        let last = rhos_c.last().copied().unwrap_or(0.5);
        let correction = match weighted_sum(&rhos_c[..rhos_c.len() - 1])? {
            Some(corr) => add(&corr, &scale(&d1_t, last)?)?,
            None => scale(&d1_t, last)?,
        };
        let x_t = sub(&x_t_, &scale(&correction, alpha_t * b_h)?)?;
        Ok((x_t, Some(model_t)))
    }
}

impl Sampler for UniPc {
    fn name(&self) -> &'static str {
        match self.variant {
            UniPcVariant::Bh1 => "uni_pc",
            UniPcVariant::Bh2 => "uni_pc_bh2",
        }
    }

    fn discards_penultimate_sigma(&self) -> bool {
        true
    }

    fn final_sigma(&self, sigmas: &[f32]) -> f32 {
        // ComfyUI writes 0.001 into the caller's sigma tensor in place, so the inverse noise
        // scaling after sampling sees it too.
        match sigmas.last() {
            Some(0.0) => FINAL_TIMESTEP,
            Some(&last) => last,
            None => 0.0,
        }
    }

    fn sample(
        &self,
        ctx: &mut SamplerContext<'_>,
        noise: Tensor,
        sigmas: &[f32],
    ) -> Result<Tensor> {
        let Some(&first) = sigmas.first() else {
            return Ok(noise);
        };
        let mut timesteps = sigmas.to_vec();
        if let Some(last) = timesteps.last_mut() {
            if *last == 0.0 {
                *last = FINAL_TIMESTEP;
            }
        }
        let steps = timesteps.len() - 1;
        let order = 3.min(timesteps.len().saturating_sub(2));
        let mut x = div_scalar(&noise, (1.0 + first * first).sqrt())?;
        let mut run = UniPcRun {
            ctx,
            variant: self.variant,
        };
        let mut model_prev: Vec<Tensor> = Vec::new();
        let mut t_prev: Vec<f32> = Vec::new();
        for step_index in 0..steps {
            if step_index == 0 {
                model_prev.push(run.data_prediction(&x, timesteps[0])?);
                t_prev.push(timesteps[0]);
            } else if step_index < order {
                let t = timesteps[step_index];
                let (next, model_x) = run.update(&x, &model_prev, &t_prev, t, step_index, true)?;
                x = next;
                let model_x = match model_x {
                    Some(m) => m,
                    None => run.data_prediction(&x, t)?,
                };
                model_prev.push(model_x);
                t_prev.push(t);
            } else {
                let extra_final_step = usize::from(step_index == steps - 1);
                for (step, &t) in timesteps
                    .iter()
                    .enumerate()
                    .skip(step_index)
                    .take(1 + extra_final_step)
                {
                    let step_order = order.min(steps + 1 - step);
                    let use_corrector = step != steps;
                    let (next, model_x) =
                        run.update(&x, &model_prev, &t_prev, t, step_order, use_corrector)?;
                    x = next;
                    for i in 0..order.saturating_sub(1) {
                        t_prev[i] = t_prev[i + 1];
                        model_prev[i] = model_prev[i + 1].clone();
                    }
                    if let Some(last) = t_prev.last_mut() {
                        *last = t;
                    }
                    if step < steps {
                        let model_x = match model_x {
                            Some(m) => m,
                            None => run.data_prediction(&x, t)?,
                        };
                        if let Some(last) = model_prev.last_mut() {
                            *last = model_x;
                        }
                    }
                }
            }
            if let Some(denoised) = model_prev.last() {
                let denoised = denoised.clone();
                run.ctx
                    .report(step_index, steps, timesteps[step_index], &x, &denoised)?;
            }
        }
        div_scalar(&x, marginal_alpha(timesteps[steps]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_small_system() {
        let x = solve(vec![vec![2.0, 1.0], vec![1.0, 3.0]], vec![3.0, 5.0]);
        assert!((x[0] - 0.8).abs() < 1e-6 && (x[1] - 1.4).abs() < 1e-6);
    }

    #[test]
    fn vp_conversions_are_consistent() {
        let sigma = 2.0f32;
        let alpha = marginal_alpha(sigma);
        let std = marginal_std(sigma);
        assert!((alpha * alpha + std * std - 1.0).abs() < 1e-6);
        assert!((marginal_lambda(sigma) - (alpha / std).ln()).abs() < 1e-5);
    }
}
