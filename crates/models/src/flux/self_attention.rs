//! Flux's attention pieces (`SelfAttention`, `QKNorm` in ComfyUI's `comfy/ldm/flux/layers.py`
//! and `attention` in `math.py`): fused q/k/v split into heads, RMS qk-norm, RoPE in f32, then
//! the planner's attention kernel over `[B, heads, L, head]`.

use candle_core::Tensor;

use super::expect_shape;
use super::rope::Rope;
use crate::attention::Attention;
use crate::error::Result;
use crate::layers::{Linear, RmsNorm};
use crate::weights::Weights;

/// Epsilon of Flux's qk RMS norms.
const QK_NORM_EPS: f64 = 1e-6;

/// `QKNorm`: separate RMS norms (scale leaf `scale`) for queries and keys.
#[derive(Debug, Clone)]
pub(crate) struct QkNorm {
    query_norm: RmsNorm,
    key_norm: RmsNorm,
}

impl QkNorm {
    /// The norms under `weights` (`query_norm.scale`, `key_norm.scale`, each `[head]`).
    pub(crate) fn new(weights: &Weights, head_dim: usize) -> Result<Self> {
        for part in ["query_norm", "key_norm"] {
            expect_shape(&weights.pp(part), "scale", &[head_dim])?;
        }
        Ok(QkNorm {
            query_norm: RmsNorm::with_leaf(weights.pp("query_norm"), "scale", QK_NORM_EPS)?,
            key_norm: RmsNorm::with_leaf(weights.pp("key_norm"), "scale", QK_NORM_EPS)?,
        })
    }

    /// Normalised `(q, k)`, in `q`'s dtype.
    pub(crate) fn forward(&self, q: &Tensor, k: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.query_norm.forward(q)?, self.key_norm.forward(k)?))
    }
}

/// `SelfAttention` of one double-block stream: `qkv`, `norm`, `proj`.
#[derive(Debug, Clone)]
pub(crate) struct SelfAttention {
    qkv: Linear,
    norm: QkNorm,
    proj: Linear,
    heads: usize,
}

impl SelfAttention {
    /// The attention under `weights` for `hidden` channels in `heads` heads.
    pub(crate) fn new(weights: &Weights, hidden: usize, heads: usize) -> Result<Self> {
        expect_shape(&weights.pp("qkv"), "weight", &[3 * hidden, hidden])?;
        expect_shape(&weights.pp("proj"), "weight", &[hidden, hidden])?;
        Ok(SelfAttention {
            qkv: Linear::new(weights.pp("qkv"))?,
            norm: QkNorm::new(&weights.pp("norm"), hidden / heads)?,
            proj: Linear::new(weights.pp("proj"))?,
            heads,
        })
    }

    /// Normalised `(q, k, v)` heads `[B, H, L, head]` of `x` `[B, L, hidden]`.
    pub(crate) fn qkv(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (q, k, v) = split_heads(&self.qkv.forward(x)?, self.heads)?;
        let (q, k) = self.norm.forward(&q, &k)?;
        Ok((q, k, v))
    }

    /// The output projection.
    pub(crate) fn proj(&self, x: &Tensor) -> Result<Tensor> {
        self.proj.forward(x)
    }
}

/// `[B, L, 3·hidden]` fused projections as `(q, k, v)` `[B, H, L, hidden/H]` (ComfyUI's
/// `view(B, L, 3, H, -1).permute(2, 0, 3, 1, 4)`).
pub(crate) fn split_heads(qkv: &Tensor, heads: usize) -> Result<(Tensor, Tensor, Tensor)> {
    let (batch, tokens, width) = qkv.dims3()?;
    let head_dim = width / (3 * heads);
    let split = qkv.reshape((batch, tokens, 3, heads, head_dim))?;
    let part = |index: usize| -> Result<Tensor> {
        Ok(split
            .narrow(2, index, 1)?
            .squeeze(2)?
            .transpose(1, 2)?
            .contiguous()?)
    };
    Ok((part(0)?, part(1)?, part(2)?))
}

/// `math.attention`: RoPE on `q` and `k` (in f32, back to `v`'s dtype), then `attention` over
/// `[B, H, L, D]`, returned as `[B, L, H·D]`.
pub(crate) fn rope_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    rope: &Rope,
    attention: &Attention,
) -> Result<Tensor> {
    let dtype = v.dtype();
    let q = rope.apply(q, dtype)?;
    let k = rope.apply(k, dtype)?;
    let (batch, heads, tokens, head_dim) = v.dims4()?;
    let out = attention.forward_heads(&q, &k, v, None)?;
    Ok(out
        .transpose(1, 2)?
        .reshape((batch, tokens, heads * head_dim))?)
}
