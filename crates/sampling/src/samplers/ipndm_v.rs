//! `ipndm_v`: the variable-step variant of `ipndm`, its coefficients from the actual step sizes.

use candle_core::Tensor;

use super::ipndm::push_history;
use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, add_scaled, scale, to_d};

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
        let total = sigmas.len().saturating_sub(1);
        let mut x_next = x;
        let mut buffer: Vec<Tensor> = Vec::new();
        for i in 0..total {
            let (t_cur, t_next) = (sigmas[i], sigmas[i + 1]);
            let x_cur = x_next;
            let denoised = ctx.model(&x_cur, t_cur)?;
            ctx.report(i, total, t_cur, &x_cur, &denoised)?;
            let d_cur = to_d(&x_cur, t_cur, &denoised)?;
            let order = max_order.min(i + 1);
            x_next = if t_next == 0.0 {
                denoised
            } else if order == 1 {
                add_scaled(&x_cur, &d_cur, t_next - t_cur)?
            } else {
                let c = coefficients(order, sigmas, i);
                let mut mix = scale(&d_cur, c[0])?;
                for (k, &ck) in c.iter().enumerate().skip(1) {
                    mix = add(&mix, &scale(&buffer[buffer.len() - k], ck)?)?;
                }
                add_scaled(&x_cur, &mix, t_next - t_cur)?
            };
            push_history(&mut buffer, d_cur, max_order);
        }
        Ok(x_next)
    }
}
