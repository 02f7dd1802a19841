//! The loop shared by the zju-pi/diff-sampler multistep samplers (`ipndm`, `ipndm_v`, `deis`):
//! one model call per step, the derivative `d = (x − denoised)/σ`, and a buffer of the last
//! `max_order − 1` derivatives that each sampler combines with its own coefficients.

use candle_core::Tensor;

use super::SamplerContext;
use crate::error::Result;
use crate::tensor_ops::to_d;

/// What a multistep rule sees at step `i`.
pub(crate) struct HistoryStep<'a> {
    /// The step index.
    pub(crate) i: usize,
    /// `min(max_order, i + 1)`: how many derivatives (current plus buffered) are available.
    pub(crate) order: usize,
    /// `σᵢ`.
    pub(crate) t_cur: f32,
    /// `σᵢ₊₁`.
    pub(crate) t_next: f32,
    /// The latent at `σᵢ`.
    pub(crate) x_cur: &'a Tensor,
    /// The model's prediction at `σᵢ`.
    pub(crate) denoised: Tensor,
    /// The derivative at `σᵢ`.
    pub(crate) d_cur: &'a Tensor,
    /// Earlier derivatives, oldest first.
    pub(crate) history: &'a [Tensor],
}

/// Keeps the last `max_order − 1` derivatives, oldest first.
fn push_history(buffer: &mut Vec<Tensor>, d: Tensor, max_order: usize) {
    if buffer.len() == max_order.saturating_sub(1) && !buffer.is_empty() {
        buffer.remove(0);
    }
    buffer.push(d);
}

/// Runs the steps over `sigmas`, letting `rule` compute each step's next latent.
pub(crate) fn sample_with_history(
    ctx: &mut SamplerContext<'_>,
    x: Tensor,
    sigmas: &[f32],
    max_order: usize,
    mut rule: impl FnMut(HistoryStep<'_>) -> Result<Tensor>,
) -> Result<Tensor> {
    let total = sigmas.len().saturating_sub(1);
    let mut x_next = x;
    let mut buffer: Vec<Tensor> = Vec::new();
    for i in 0..total {
        let (t_cur, t_next) = (sigmas[i], sigmas[i + 1]);
        let x_cur = x_next;
        let denoised = ctx.model(&x_cur, t_cur)?;
        ctx.report(i, total, t_cur, &x_cur, &denoised)?;
        let d_cur = to_d(&x_cur, t_cur, &denoised)?;
        x_next = rule(HistoryStep {
            i,
            order: max_order.min(i + 1),
            t_cur,
            t_next,
            x_cur: &x_cur,
            denoised,
            d_cur: &d_cur,
            history: &buffer,
        })?;
        push_history(&mut buffer, d_cur, max_order);
    }
    Ok(x_next)
}
