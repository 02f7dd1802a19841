//! `ipndm_v`: the variable-step variant of `ipndm`, its coefficients from the actual step sizes.

use candle_core::Tensor;

use super::derivative_history::sample_with_history;
use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, add_scaled, scale};

/// `sample_ipndm_v(max_order=4)`.
#[derive(Clone, Copy, Debug)]
pub struct IpndmV {
    /// Maximum order (4).
    pub max_order: usize,
}

impl IpndmV {
    /// ComfyUI's defaults.
    pub const DEFAULT: Self = Self { max_order: 4 };
}

impl Default for IpndmV {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The multistep coefficients for the current derivative and the buffered ones, newest first.
fn coefficients(order: usize, t: &[f32], i: usize) -> Vec<f32> {
    let h_n = t[i + 1] - t[i];
    let h_n_1 = t[i] - t[i - 1];
    match order {
        2 => vec![(2.0 + h_n / h_n_1) / 2.0, -(h_n / h_n_1) / 2.0],
        3 => {
            let h_n_2 = t[i - 1] - t[i - 2];
            let temp = (1.0
                - h_n / (3.0 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2)))
                / 2.0;
            vec![
                (2.0 + h_n / h_n_1) / 2.0 + temp,
                -(h_n / h_n_1) / 2.0 - (1.0 + h_n_1 / h_n_2) * temp,
                temp * h_n_1 / h_n_2,
            ]
        }
        _ => {
            let h_n_2 = t[i - 1] - t[i - 2];
            let h_n_3 = t[i - 2] - t[i - 3];
            let temp1 = (1.0
                - h_n / (3.0 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2)))
                / 2.0;
            let temp2 = ((1.0 - h_n / (3.0 * (h_n + h_n_1))) / 2.0
                + (1.0 - h_n / (2.0 * (h_n + h_n_1))) * h_n / (6.0 * (h_n + h_n_1 + h_n_2)))
                * (h_n * (h_n + h_n_1) * (h_n + h_n_1 + h_n_2))
                / (h_n_1 * (h_n_1 + h_n_2) * (h_n_1 + h_n_2 + h_n_3));
            let ratio = h_n_1 * (h_n_1 + h_n_2) / (h_n_2 * (h_n_2 + h_n_3));
            vec![
                (2.0 + h_n / h_n_1) / 2.0 + temp1 + temp2,
                -(h_n / h_n_1) / 2.0
                    - (1.0 + h_n_1 / h_n_2) * temp1
                    - (1.0 + h_n_1 / h_n_2 + ratio) * temp2,
                temp1 * h_n_1 / h_n_2 + (h_n_1 / h_n_2 + ratio * (1.0 + h_n_2 / h_n_3)) * temp2,
                -temp2 * ratio * h_n_1 / h_n_2,
            ]
        }
    }
}

impl Sampler for IpndmV {
    fn name(&self) -> &'static str {
        "ipndm_v"
    }

    fn sample(&self, ctx: &mut SamplerContext<'_>, x: Tensor, sigmas: &[f32]) -> Result<Tensor> {
        let max_order = self.max_order.clamp(1, 4);
        sample_with_history(ctx, x, sigmas, max_order, |step| {
            let (x_cur, d_cur, buffer) = (step.x_cur, step.d_cur, step.history);
            if step.t_next == 0.0 {
                Ok(step.denoised)
            } else if step.order == 1 {
                add_scaled(x_cur, d_cur, step.t_next - step.t_cur)
            } else {
                let c = coefficients(step.order, sigmas, step.i);
                let mut mix = scale(d_cur, c[0])?;
                for (k, &ck) in c.iter().enumerate().skip(1) {
                    mix = add(&mix, &scale(&buffer[buffer.len() - k], ck)?)?;
                }
                add_scaled(x_cur, &mix, step.t_next - step.t_cur)
            }
        })
    }
}
