//! `lms`: linear multistep (Adams–Bashforth in sigma) of up to order 4, its coefficients the
//! integrals of Lagrange basis polynomials over each step.

use candle_core::Tensor;

use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add, scale, to_d};

/// `sample_lms(order=4)`.
#[derive(Clone, Copy, Debug)]
pub struct Lms {
    /// Maximum order (4).
    pub order: usize,
}

impl Lms {
    /// ComfyUI's defaults.
    pub const DEFAULT: Self = Self { order: 4 };
}

impl Default for Lms {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Abscissae of QUADPACK's 21-point Gauss–Kronrod rule (`dqk21`), largest first; the odd
/// entries (1, 3, …) are the 10-point Gauss nodes.
const GK21_NODES: [f64; 10] = [
    0.995_657_163_025_808_1,
    0.973_906_528_517_171_7,
    0.930_157_491_355_708_2,
    0.865_063_366_688_984_5,
    0.780_817_726_586_416_9,
    0.679_409_568_299_024_4,
    0.562_757_134_668_604_7,
    0.433_395_394_129_247_2,
    0.294_392_862_701_460_2,
    0.148_874_338_981_631_2,
];
/// Kronrod weights for [`GK21_NODES`].
const GK21_WEIGHTS: [f64; 10] = [
    0.011_694_638_867_371_874,
    0.032_558_162_307_964_73,
    0.054_755_896_574_351_996,
    0.075_039_674_810_919_95,
    0.093_125_454_583_697_6,
    0.109_387_158_802_297_64,
    0.123_491_976_262_065_85,
    0.134_709_217_311_473_33,
    0.142_775_938_577_060_08,
    0.147_739_104_901_338_5,
];
/// Kronrod weight of the centre node.
const GK21_CENTRE_WEIGHT: f64 = 0.149_445_554_002_916_9;

/// `linear_multistep_coeff(order, t, i, j)`: `∫_{t_i}^{t_{i+1}} ℓ_j(τ) dτ` where `ℓ_j` is the
/// Lagrange basis polynomial through `t_i, t_{i−1}, …`.
///
/// ComfyUI integrates with `scipy.integrate.quad`, which for a polynomial stops after its first
/// 21-point Gauss–Kronrod estimate, and evaluates `ℓ_j` in float32 (the sigmas are a float32
/// numpy array, and NumPy 2 keeps Python-float arithmetic with them in float32). Both are
/// reproduced here, because for uneven steps the coefficients are large and cancel.
fn multistep_coefficient(order: usize, t: &[f32], i: usize, j: usize) -> f64 {
    let basis = |tau: f64| -> f64 {
        let tau = tau as f32;
        let mut product = 1.0f32;
        for k in 0..order {
            if k != j {
                product *= (tau - t[i - k]) / (t[i - j] - t[i - k]);
            }
        }
        f64::from(product)
    };
    let (a, b) = (f64::from(t[i]), f64::from(t[i + 1]));
    let centre = 0.5 * (a + b);
    let half_length = 0.5 * (b - a);
    let mut sum = GK21_CENTRE_WEIGHT * basis(centre);
    // dqk21 adds the Gauss nodes (odd entries) first, then the Kronrod extension nodes.
    for start in [1, 0] {
        for k in (start..10).step_by(2) {
            let offset = half_length * GK21_NODES[k];
            let pair = basis(centre - offset) + basis(centre + offset);
            sum += GK21_WEIGHTS[k] * pair;
        }
    }
    sum * half_length
}

impl Sampler for Lms {
    fn name(&self) -> &'static str {
        "lms"
    }

    fn sample(
        &self,
        ctx: &mut SamplerContext<'_>,
        mut x: Tensor,
        sigmas: &[f32],
    ) -> Result<Tensor> {
        let order = self.order.max(1);
        let total = sigmas.len().saturating_sub(1);
        let mut derivatives: Vec<Tensor> = Vec::new();
        for i in 0..total {
            let (sigma, sigma_next) = (sigmas[i], sigmas[i + 1]);
            let denoised = ctx.model(&x, sigma)?;
            derivatives.push(to_d(&x, sigma, &denoised)?);
            if derivatives.len() > order {
                derivatives.remove(0);
            }
            ctx.report(i, total, sigma, &x, &denoised)?;
            if sigma_next == 0.0 {
                x = denoised;
                continue;
            }
            let current_order = (i + 1).min(order);
            let mut sum: Option<Tensor> = None;
            for (j, d) in derivatives.iter().rev().enumerate().take(current_order) {
                let term = scale(d, multistep_coefficient(current_order, sigmas, i, j) as f32)?;
                sum = Some(match sum {
                    None => term,
                    Some(acc) => add(&acc, &term)?,
                });
            }
            if let Some(sum) = sum {
                x = add(&x, &sum)?;
            }
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_order_coefficient_is_the_step() {
        let t = [10.0f32, 4.0];
        assert!((multistep_coefficient(1, &t, 0, 0) - (-6.0)).abs() < 1e-12);
    }

    #[test]
    fn coefficients_sum_to_the_step() {
        let t = [10.0f32, 6.0, 3.0, 1.5, 0.5];
        let sum: f64 = (0..4).map(|j| multistep_coefficient(4, &t, 3, j)).sum();
        assert!((sum - (0.5 - 1.5)).abs() < 1e-6);
    }
}
