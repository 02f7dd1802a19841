//! `SelfAttention` of an MMDiT block half (ComfyUI `mmdit.py`): the fused `qkv` projection split
//! into per-head q/k/v with optional RMS qk-norm (`ln_q`/`ln_k`, SD3.5), and the output `proj`
//! (absent in the `pre_only` context half of the last block). The attention itself runs joint
//! over context and image tokens in [`super::block`].

use candle_core::Tensor;

use crate::error::Result;
use crate::layers::{Linear, RmsNorm};
use crate::weights::Weights;

/// ComfyUI's qk-norm epsilon.
const QK_NORM_EPS: f64 = 1e-6;

/// Queries, keys and values split into heads: `[B, heads, T, head_dim]` each.
#[derive(Debug, Clone)]
pub(super) struct HeadsQkv {
    pub(super) q: Tensor,
    pub(super) k: Tensor,
    pub(super) v: Tensor,
}

/// One `attn` / `attn2` module.
#[derive(Debug, Clone)]
pub(super) struct SelfAttention {
    qkv: Linear,
    proj: Option<Linear>,
    ln_q: Option<RmsNorm>,
    ln_k: Option<RmsNorm>,
    heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    pub(super) fn new(
        weights: &Weights,
        heads: usize,
        head_dim: usize,
        pre_only: bool,
        qk_norm: bool,
    ) -> Result<Self> {
        let proj = if pre_only {
            None
        } else {
            Some(Linear::new(weights.pp("proj"))?)
        };
        let (ln_q, ln_k) = if qk_norm {
            (
                Some(RmsNorm::new(weights.pp("ln_q"), QK_NORM_EPS)?),
                Some(RmsNorm::new(weights.pp("ln_k"), QK_NORM_EPS)?),
            )
        } else {
            (None, None)
        };
        Ok(SelfAttention {
            qkv: Linear::new(weights.pp("qkv"))?,
            proj,
            ln_q,
            ln_k,
            heads,
            head_dim,
        })
    }

    /// `pre_attention`: `[B, T, hidden]` → per-head q/k/v, q and k normalised per head.
    pub(super) fn pre_attention(&self, x: &Tensor) -> Result<HeadsQkv> {
        let (batch, tokens, _) = x.dims3()?;
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((batch, tokens, 3, self.heads, self.head_dim))?;
        let part = |index: usize, norm: Option<&RmsNorm>| -> Result<Tensor> {
            let t = qkv.narrow(2, index, 1)?.squeeze(2)?;
            let t = match norm {
                Some(norm) => norm.forward(&t)?,
                None => t,
            };
            Ok(t.transpose(1, 2)?.contiguous()?)
        };
        Ok(HeadsQkv {
            q: part(0, self.ln_q.as_ref())?,
            k: part(1, self.ln_k.as_ref())?,
            v: part(2, None)?,
        })
    }

    /// `post_attention`: `[B, heads, T, head_dim]` attention output → `[B, T, hidden]` through
    /// `proj`. Only called on halves that are not `pre_only`.
    pub(super) fn post_attention(&self, attention: &Tensor) -> Result<Tensor> {
        let (batch, heads, tokens, head_dim) = attention.dims4()?;
        let merged = attention
            .transpose(1, 2)?
            .reshape((batch, tokens, heads * head_dim))?;
        match &self.proj {
            Some(proj) => proj.forward(&merged),
            None => Ok(merged),
        }
    }
}
