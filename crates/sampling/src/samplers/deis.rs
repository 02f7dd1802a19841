//! `deis`: Diffusion Exponential Integrator Sampler ("tab" mode, order ≤ 3), its coefficients
//! numerically integrated in the VP time variable as zju-pi/diff-sampler (and ComfyUI) do.

use candle_core::Tensor;

use super::derivative_history::sample_with_history;
use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, add_scaled, scale};

/// `sample_deis(max_order=3, deis_mode='tab')`.
#[derive(Clone, Copy, Debug)]
pub struct Deis {
    /// Maximum order (3).
    pub max_order: usize,
}

impl Deis {
    /// ComfyUI's defaults.
    pub const DEFAULT: Self = Self { max_order: 3 };
}

impl Default for Deis {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Points of the rectangle rule ComfyUI uses for each coefficient integral.
const INTEGRATION_POINTS: usize = 10_000;

/// `edm2t`: sigmas → VP time `t`, plus `beta_0` and `beta_1` of the VP schedule fitted to
/// `sigma_min = 0.002`, `sigma_max = 80`, `epsilon_s = 1e-3` (float32, as torch computes it).
fn edm_to_vp_time(sigmas: &[f32]) -> (Vec<f64>, f64, f64) {
    let epsilon_s = 1e-3f32;
    let (sigma_min, sigma_max) = (0.002f32, 80.0f32);
    let log_min = (sigma_min * sigma_min + 1.0).ln();
    let log_max = (sigma_max * sigma_max + 1.0).ln();
    let beta_d = 2.0 * (log_min / epsilon_s - log_max) / (epsilon_s - 1.0);
    let beta_min = log_max - 0.5 * beta_d;
    let times = sigmas
        .iter()
        .map(|&sigma| {
            let inner = beta_min * beta_min + 2.0 * beta_d * (sigma * sigma + 1.0).ln();
            f64::from((inner.sqrt() - beta_min) / beta_d)
        })
        .collect();
    (times, f64::from(beta_min), f64::from(beta_d + beta_min))
}

/// `get_deis_coeff_list(t_steps, max_order, N=10000, deis_mode='tab')`.
fn deis_coefficients(sigmas: &[f32], max_order: usize) -> Vec<Vec<f64>> {
    let (t, beta_0, beta_1) = edm_to_vp_time(sigmas);
    let integrand = |tau: f64| {
        let log_alpha = -0.5 * tau * tau * (beta_1 - beta_0) - tau * beta_0;
        let alpha = log_alpha.exp();
        let d_log_alpha = -tau * (beta_1 - beta_0) - beta_0;
        -0.5 * d_log_alpha / (alpha * (1.0 - alpha)).sqrt()
    };
    (0..t.len().saturating_sub(1))
        .map(|i| {
            let order = (i + 1).min(max_order);
            if order == 1 {
                return Vec::new();
            }
            let (t_cur, t_next) = (t[i], t[i + 1]);
            let previous: Vec<f64> = (0..order).map(|k| t[i - k]).collect();
            let step = (t_next - t_cur) / (INTEGRATION_POINTS - 1) as f64;
            let d_tau = (t_next - t_cur) / INTEGRATION_POINTS as f64;
            (0..order)
                .map(|j| {
                    let mut sum = 0.0;
                    for n in 0..INTEGRATION_POINTS {
                        let tau = t_cur + step * n as f64;
                        let mut poly = 1.0;
                        for (k, &tk) in previous.iter().enumerate() {
                            if k != j {
                                poly *= (tau - tk) / (previous[j] - tk);
                            }
                        }
                        sum += integrand(tau) * poly;
                    }
                    sum * d_tau
                })
                .collect()
        })
        .collect()
}

impl Sampler for Deis {
    fn name(&self) -> &'static str {
        "deis"
    }

    fn sample(&self, ctx: &mut SamplerContext<'_>, x: Tensor, sigmas: &[f32]) -> Result<Tensor> {
        let max_order = self.max_order.clamp(1, 4);
        let coefficients = deis_coefficients(sigmas, max_order);
        sample_with_history(ctx, x, sigmas, max_order, |step| {
            let (x_cur, d_cur, buffer) = (step.x_cur, step.d_cur, step.history);
            let order = if step.t_next <= 0.0 { 1 } else { step.order };
            if order == 1 {
                add_scaled(x_cur, d_cur, step.t_next - step.t_cur)
            } else {
                let c = &coefficients[step.i];
                let mut next = add(x_cur, &scale(d_cur, c[0] as f32)?)?;
                for (k, &ck) in c.iter().enumerate().skip(1).take(order - 1) {
                    next = add(&next, &scale(&buffer[buffer.len() - k], ck as f32)?)?;
                }
                Ok(next)
            }
        })
    }
}
