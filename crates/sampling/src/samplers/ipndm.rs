//! `ipndm`: improved pseudo-numerical (Adams–Bashforth, fixed coefficients) multistep of up
//! to order 4, from zju-pi/diff-sampler.

use candle_core::Tensor;

use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, add_scaled, div_scalar, scale, sub, to_d};

/// `sample_ipndm(max_order=4)`.
#[derive(Clone, Copy, Debug)]
pub struct Ipndm {
    /// Maximum order (4).
    pub max_order: usize,
}

impl Ipndm {
    /// ComfyUI's defaults.
    pub const DEFAULT: Self = Self { max_order: 4 };
}

impl Default for Ipndm {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Keeps the last `max_order − 1` derivatives, oldest first.
pub(crate) fn push_history(buffer: &mut Vec<Tensor>, d: Tensor, max_order: usize) {
    if buffer.len() == max_order.saturating_sub(1) && !buffer.is_empty() {
        buffer.remove(0);
    }
    buffer.push(d);
}

/// `Σ cᵢ·dᵢ` evaluated left to right as torch does (`c₀·d₀ − c₁·d₁ + …`).
fn weighted(terms: &[(f32, &Tensor)]) -> Result<Tensor> {
    let mut iter = terms.iter();
    let Some(&(c, d)) = iter.next() else {
        return Err(crate::SamplingError::InvalidParameter {
            what: "ipndm",
            field: "terms",
            reason: "empty".to_owned(),
        });
    };
    let mut sum = scale(d, c)?;
    for &(c, d) in iter {
        sum = if c < 0.0 {
            sub(&sum, &scale(d, -c)?)?
        } else {
            add(&sum, &scale(d, c)?)?
        };
    }
    Ok(sum)
}

impl Sampler for Ipndm {
    fn name(&self) -> &'static str {
        "ipndm"
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
            let dt = t_next - t_cur;
            let n = buffer.len();
            x_next = if t_next == 0.0 {
                denoised
            } else {
                match order {
                    1 => add_scaled(&x_cur, &d_cur, dt)?,
                    2 => {
                        let mix = weighted(&[(3.0, &d_cur), (-1.0, &buffer[n - 1])])?;
                        add(&x_cur, &div_scalar(&scale(&mix, dt)?, 2.0)?)?
                    }
                    3 => {
                        let mix = weighted(&[
                            (23.0, &d_cur),
                            (-16.0, &buffer[n - 1]),
                            (5.0, &buffer[n - 2]),
                        ])?;
                        add(&x_cur, &div_scalar(&scale(&mix, dt)?, 12.0)?)?
                    }
                    _ => {
                        let mix = weighted(&[
                            (55.0, &d_cur),
                            (-59.0, &buffer[n - 1]),
                            (37.0, &buffer[n - 2]),
                            (-9.0, &buffer[n - 3]),
                        ])?;
                        add(&x_cur, &div_scalar(&scale(&mix, dt)?, 24.0)?)?
                    }
                }
            };
            push_history(&mut buffer, d_cur, max_order);
        }
        Ok(x_next)
    }
}
