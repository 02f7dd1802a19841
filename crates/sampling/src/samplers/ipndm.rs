//! `ipndm`: improved pseudo-numerical (Adams–Bashforth, fixed coefficients) multistep of up
//! to order 4, from zju-pi/diff-sampler.

use candle_core::Tensor;

use super::derivative_history::sample_with_history;
use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, add_scaled, div_scalar, scale, sub};

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
        sample_with_history(ctx, x, sigmas, max_order, |step| {
            let (x_cur, d_cur, buffer) = (step.x_cur, step.d_cur, step.history);
            let dt = step.t_next - step.t_cur;
            let n = buffer.len();
            if step.t_next == 0.0 {
                return Ok(step.denoised);
            }
            match step.order {
                1 => add_scaled(x_cur, d_cur, dt),
                2 => {
                    let mix = weighted(&[(3.0, d_cur), (-1.0, &buffer[n - 1])])?;
                    add(x_cur, &div_scalar(&scale(&mix, dt)?, 2.0)?)
                }
                3 => {
                    let mix = weighted(&[
                        (23.0, d_cur),
                        (-16.0, &buffer[n - 1]),
                        (5.0, &buffer[n - 2]),
                    ])?;
                    add(x_cur, &div_scalar(&scale(&mix, dt)?, 12.0)?)
                }
                _ => {
                    let mix = weighted(&[
                        (55.0, d_cur),
                        (-59.0, &buffer[n - 1]),
                        (37.0, &buffer[n - 2]),
                        (-9.0, &buffer[n - 3]),
                    ])?;
                    add(x_cur, &div_scalar(&scale(&mix, dt)?, 24.0)?)
                }
            }
        })
    }
}
