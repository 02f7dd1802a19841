//! `gradient_estimation`: Euler with a gradient-estimation correction (arXiv o2ND9v0CeK).

use candle_core::Tensor;

use super::{Sampler, SamplerContext};
use crate::error::Result;
use crate::tensor_ops::{add_scaled, scale, sub, to_d};

/// `sample_gradient_estimation(ge_gamma=2, cfg_pp=False)`.
#[derive(Clone, Copy, Debug)]
pub struct GradientEstimation {
    /// Gradient estimation weight γ (2.0).
    pub ge_gamma: f32,
}

impl GradientEstimation {
    /// ComfyUI's defaults.
    pub const DEFAULT: Self = Self { ge_gamma: 2.0 };
}

impl Default for GradientEstimation {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Sampler for GradientEstimation {
    fn name(&self) -> &'static str {
        "gradient_estimation"
    }

    fn sample(
        &self,
        ctx: &mut SamplerContext<'_>,
        mut x: Tensor,
        sigmas: &[f32],
    ) -> Result<Tensor> {
        let total = sigmas.len().saturating_sub(1);
        let mut old_d: Option<Tensor> = None;
        for i in 0..total {
            let (sigma, sigma_next) = (sigmas[i], sigmas[i + 1]);
            let denoised = ctx.model(&x, sigma)?;
            let d = to_d(&x, sigma, &denoised)?;
            ctx.report(i, total, sigma, &x, &denoised)?;
            let dt = sigma_next - sigma;
            if sigma_next == 0.0 {
                x = denoised;
            } else {
                x = add_scaled(&x, &d, dt)?;
                if let Some(old) = &old_d {
                    let d_bar = scale(&sub(&d, old)?, self.ge_gamma - 1.0)?;
                    x = add_scaled(&x, &d_bar, dt)?;
                }
            }
            old_d = Some(d);
        }
        Ok(x)
    }
}
