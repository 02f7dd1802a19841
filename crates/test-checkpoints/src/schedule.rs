//! The noise-schedule buffers that CompVis `LatentDiffusion` registers and therefore every SD1.x /
//! SD2.x LDM checkpoint carries (`alphas_cumprod`, `betas`, ...), computed from the real
//! "scaled linear" schedule (β from 0.00085 to 0.012 over 1000 steps).
//!
//! Upstream: <https://github.com/Stability-AI/stablediffusion/blob/main/ldm/models/diffusion/ddpm.py>
//! (`register_schedule`).

/// Number of diffusion timesteps of the SD1/SD2 schedule.
pub(crate) const TIMESTEPS: usize = 1000;
const LINEAR_START: f64 = 0.000_85;
const LINEAR_END: f64 = 0.012;

/// One of the schedule buffers, named as in the checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScheduleBuffer {
    Betas,
    AlphasCumprod,
    AlphasCumprodPrev,
    SqrtAlphasCumprod,
    SqrtOneMinusAlphasCumprod,
    LogOneMinusAlphasCumprod,
    SqrtRecipAlphasCumprod,
    SqrtRecipm1AlphasCumprod,
    PosteriorVariance,
    PosteriorLogVarianceClipped,
    PosteriorMeanCoef1,
    PosteriorMeanCoef2,
}

impl ScheduleBuffer {
    /// Every buffer, in checkpoint-name order.
    pub(crate) const ALL: [ScheduleBuffer; 12] = [
        ScheduleBuffer::AlphasCumprod,
        ScheduleBuffer::AlphasCumprodPrev,
        ScheduleBuffer::Betas,
        ScheduleBuffer::LogOneMinusAlphasCumprod,
        ScheduleBuffer::PosteriorLogVarianceClipped,
        ScheduleBuffer::PosteriorMeanCoef1,
        ScheduleBuffer::PosteriorMeanCoef2,
        ScheduleBuffer::PosteriorVariance,
        ScheduleBuffer::SqrtAlphasCumprod,
        ScheduleBuffer::SqrtOneMinusAlphasCumprod,
        ScheduleBuffer::SqrtRecipAlphasCumprod,
        ScheduleBuffer::SqrtRecipm1AlphasCumprod,
    ];

    /// The key in the checkpoint.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ScheduleBuffer::Betas => "betas",
            ScheduleBuffer::AlphasCumprod => "alphas_cumprod",
            ScheduleBuffer::AlphasCumprodPrev => "alphas_cumprod_prev",
            ScheduleBuffer::SqrtAlphasCumprod => "sqrt_alphas_cumprod",
            ScheduleBuffer::SqrtOneMinusAlphasCumprod => "sqrt_one_minus_alphas_cumprod",
            ScheduleBuffer::LogOneMinusAlphasCumprod => "log_one_minus_alphas_cumprod",
            ScheduleBuffer::SqrtRecipAlphasCumprod => "sqrt_recip_alphas_cumprod",
            ScheduleBuffer::SqrtRecipm1AlphasCumprod => "sqrt_recipm1_alphas_cumprod",
            ScheduleBuffer::PosteriorVariance => "posterior_variance",
            ScheduleBuffer::PosteriorLogVarianceClipped => "posterior_log_variance_clipped",
            ScheduleBuffer::PosteriorMeanCoef1 => "posterior_mean_coef1",
            ScheduleBuffer::PosteriorMeanCoef2 => "posterior_mean_coef2",
        }
    }

    /// The 1000 values of this buffer.
    pub(crate) fn values(self) -> Vec<f64> {
        let betas: Vec<f64> = (0..TIMESTEPS)
            .map(|step| {
                let fraction = step as f64 / (TIMESTEPS - 1) as f64;
                let root =
                    LINEAR_START.sqrt() + fraction * (LINEAR_END.sqrt() - LINEAR_START.sqrt());
                root * root
            })
            .collect();
        let mut cumprod = Vec::with_capacity(TIMESTEPS);
        let mut product = 1.0;
        for beta in &betas {
            product *= 1.0 - beta;
            cumprod.push(product);
        }
        let previous: Vec<f64> = std::iter::once(1.0)
            .chain(cumprod.iter().copied().take(TIMESTEPS - 1))
            .collect();
        let posterior_variance: Vec<f64> = (0..TIMESTEPS)
            .map(|t| betas[t] * (1.0 - previous[t]) / (1.0 - cumprod[t]))
            .collect();
        (0..TIMESTEPS)
            .map(|t| match self {
                ScheduleBuffer::Betas => betas[t],
                ScheduleBuffer::AlphasCumprod => cumprod[t],
                ScheduleBuffer::AlphasCumprodPrev => previous[t],
                ScheduleBuffer::SqrtAlphasCumprod => cumprod[t].sqrt(),
                ScheduleBuffer::SqrtOneMinusAlphasCumprod => (1.0 - cumprod[t]).sqrt(),
                ScheduleBuffer::LogOneMinusAlphasCumprod => (1.0 - cumprod[t]).ln(),
                ScheduleBuffer::SqrtRecipAlphasCumprod => (1.0 / cumprod[t]).sqrt(),
                ScheduleBuffer::SqrtRecipm1AlphasCumprod => (1.0 / cumprod[t] - 1.0).sqrt(),
                ScheduleBuffer::PosteriorVariance => posterior_variance[t],
                ScheduleBuffer::PosteriorLogVarianceClipped => {
                    posterior_variance[t].max(1e-20).ln()
                }
                ScheduleBuffer::PosteriorMeanCoef1 => {
                    betas[t] * previous[t].sqrt() / (1.0 - cumprod[t])
                }
                ScheduleBuffer::PosteriorMeanCoef2 => {
                    (1.0 - previous[t]) * (1.0 - betas[t]).sqrt() / (1.0 - cumprod[t])
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphas_cumprod_matches_sd_schedule_endpoints() {
        let values = ScheduleBuffer::AlphasCumprod.values();
        // Published SD1.5 values: alphas_cumprod[0] = 0.99915, [999] ≈ 0.0047.
        assert!((values[0] - 0.99915).abs() < 1e-6);
        assert!((values[999] - 0.004_66).abs() < 1e-4, "{}", values[999]);
    }
}
