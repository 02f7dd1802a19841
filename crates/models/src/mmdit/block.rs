//! The MMDiT joint block (ComfyUI `mmdit.py`: `DismantledBlock`, `JointBlock`, `_block_mixing`):
//! context and image halves are modulated separately (adaLN from the timestep + pooled vector),
//! attend jointly over the concatenated tokens, and each half gates the result back in with its
//! own MLP. MMDiT-X image halves add a second, image-only self-attention (`attn2`).

use candle_core::{Tensor, D};

use super::self_attention::{HeadsQkv, SelfAttention};
use crate::attention::Attention;
use crate::error::{ModelError, Result};
use crate::layers::{LayerNorm, Linear};
use crate::weights::Weights;

/// ComfyUI's adaLN layer-norm epsilon.
const NORM_EPS: f64 = 1e-6;

/// `shift + x·(1 + scale)` with `[B, hidden]` modulations broadcast over tokens.
pub(super) fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let scaled = x.broadcast_mul(&(scale.unsqueeze(1)? + 1.0)?)?;
    Ok(scaled.broadcast_add(&shift.unsqueeze(1)?)?)
}

/// `x + gate·y` with a `[B, hidden]` gate.
fn gated_add(x: &Tensor, gate: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok((x + y.broadcast_mul(&gate.unsqueeze(1)?)?)?)
}

/// `adaLN_modulation` = `SiLU → Linear`, split into `count` `[B, hidden]` pieces.
#[derive(Debug, Clone)]
pub(super) struct Modulation {
    linear: Linear,
    count: usize,
}

impl Modulation {
    pub(super) fn new(weights: &Weights, count: usize) -> Result<Self> {
        Ok(Modulation {
            linear: Linear::new(weights.pp("adaLN_modulation.1"))?,
            count,
        })
    }

    pub(super) fn forward(&self, c: &Tensor) -> Result<Vec<Tensor>> {
        let all = self.linear.forward(&c.silu()?)?;
        let width = all.dim(D::Minus1)? / self.count;
        (0..self.count)
            .map(|i| Ok(all.narrow(D::Minus1, i * width, width)?))
            .collect()
    }
}

/// `fc1 → GELU(tanh) → fc2`.
#[derive(Debug, Clone)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn new(weights: &Weights) -> Result<Self> {
        Ok(Mlp {
            fc1: Linear::new(weights.pp("fc1"))?,
            fc2: Linear::new(weights.pp("fc2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(x)?.gelu()?)
    }
}

/// What a full (not `pre_only`) half keeps between its pre- and post-attention steps.
#[derive(Debug)]
struct Residual {
    x: Tensor,
    gate_msa: Tensor,
    shift_mlp: Tensor,
    scale_mlp: Tensor,
    gate_mlp: Tensor,
    /// MMDiT-X: the `attn2` gate.
    gate_msa2: Option<Tensor>,
}

/// One half of a joint block (`DismantledBlock`).
#[derive(Debug, Clone)]
struct DismantledBlock {
    norm1: LayerNorm,
    attn: SelfAttention,
    attn2: Option<SelfAttention>,
    /// `norm2` + `mlp`, absent when `pre_only`.
    mlp: Option<(LayerNorm, Mlp)>,
    modulation: Modulation,
}

/// How a block half is laid out.
#[derive(Debug, Clone, Copy)]
struct HalfLayout {
    heads: usize,
    head_dim: usize,
    pre_only: bool,
    qk_norm: bool,
    self_attn2: bool,
}

impl DismantledBlock {
    fn new(weights: &Weights, layout: HalfLayout) -> Result<Self> {
        let HalfLayout {
            heads,
            head_dim,
            pre_only,
            qk_norm,
            self_attn2,
        } = layout;
        let attn = SelfAttention::new(&weights.pp("attn"), heads, head_dim, pre_only, qk_norm)?;
        let attn2 = if self_attn2 {
            Some(SelfAttention::new(
                &weights.pp("attn2"),
                heads,
                head_dim,
                false,
                qk_norm,
            )?)
        } else {
            None
        };
        let mlp = if pre_only {
            None
        } else {
            Some((
                LayerNorm::new(weights.pp("norm2"), NORM_EPS)?,
                Mlp::new(&weights.pp("mlp"))?,
            ))
        };
        let modulations = match (self_attn2, pre_only) {
            (true, _) => 9,
            (false, false) => 6,
            (false, true) => 2,
        };
        Ok(DismantledBlock {
            norm1: LayerNorm::new(weights.pp("norm1"), NORM_EPS)?,
            attn,
            attn2,
            mlp,
            modulation: Modulation::new(weights, modulations)?,
        })
    }

    /// `pre_attention` / `pre_attention_x`: the joint q/k/v, the `attn2` q/k/v where present, and
    /// what the post-attention step needs (`None` when `pre_only`).
    fn pre_attention(
        &self,
        x: &Tensor,
        c: &Tensor,
    ) -> Result<(HeadsQkv, Option<HeadsQkv>, Option<Residual>)> {
        let mods = self.modulation.forward(c)?;
        let normed = self.norm1.forward(x)?;
        let qkv = self
            .attn
            .pre_attention(&modulate(&normed, &mods[0], &mods[1])?)?;
        if self.mlp.is_none() {
            return Ok((qkv, None, None));
        }
        let (qkv2, gate_msa2) = match &self.attn2 {
            Some(attn2) => (
                Some(attn2.pre_attention(&modulate(&normed, &mods[6], &mods[7])?)?),
                Some(mods[8].clone()),
            ),
            None => (None, None),
        };
        let residual = Residual {
            x: x.clone(),
            gate_msa: mods[2].clone(),
            shift_mlp: mods[3].clone(),
            scale_mlp: mods[4].clone(),
            gate_mlp: mods[5].clone(),
            gate_msa2,
        };
        Ok((qkv, qkv2, Some(residual)))
    }

    /// `post_attention` / `post_attention_x`.
    fn post_attention(
        &self,
        attention: &Tensor,
        attention2: Option<&Tensor>,
        residual: Residual,
    ) -> Result<Tensor> {
        let attn_out = self.attn.post_attention(attention)?;
        let mut x = gated_add(&residual.x, &residual.gate_msa, &attn_out)?;
        if let (Some(attn2), Some(attention2), Some(gate2)) =
            (&self.attn2, attention2, &residual.gate_msa2)
        {
            x = gated_add(&x, gate2, &attn2.post_attention(attention2)?)?;
        }
        match &self.mlp {
            Some((norm2, mlp)) => {
                let h = modulate(
                    &norm2.forward(&x)?,
                    &residual.shift_mlp,
                    &residual.scale_mlp,
                )?;
                gated_add(&x, &residual.gate_mlp, &mlp.forward(&h)?)
            }
            None => Ok(x),
        }
    }
}

/// `JointBlock`: a context half and an image half.
#[derive(Debug, Clone)]
pub(super) struct JointBlock {
    context_block: DismantledBlock,
    x_block: DismantledBlock,
}

/// The per-block layout a [`JointBlock`] is built with.
#[derive(Debug, Clone, Copy)]
pub(super) struct JointLayout {
    pub(super) heads: usize,
    pub(super) head_dim: usize,
    pub(super) qk_norm: bool,
    pub(super) context_pre_only: bool,
    pub(super) x_self_attn2: bool,
}

impl JointBlock {
    pub(super) fn new(weights: &Weights, layout: JointLayout) -> Result<Self> {
        let half = |pre_only: bool, self_attn2: bool| HalfLayout {
            heads: layout.heads,
            head_dim: layout.head_dim,
            pre_only,
            qk_norm: layout.qk_norm,
            self_attn2,
        };
        Ok(JointBlock {
            context_block: DismantledBlock::new(
                &weights.pp("context_block"),
                half(layout.context_pre_only, false),
            )?,
            x_block: DismantledBlock::new(
                &weights.pp("x_block"),
                half(false, layout.x_self_attn2),
            )?,
        })
    }

    /// `_block_mixing`: `(context, x)` → `(context', x')`; `context'` is `None` after a
    /// `pre_only` context half.
    pub(super) fn forward(
        &self,
        context: &Tensor,
        x: &Tensor,
        c: &Tensor,
        attention: &Attention,
    ) -> Result<(Option<Tensor>, Tensor)> {
        let (context_qkv, _, context_residual) = self.context_block.pre_attention(context, c)?;
        let (x_qkv, x_qkv2, x_residual) = self.x_block.pre_attention(x, c)?;
        let context_tokens = context_qkv.q.dim(2)?;
        let joint = |a: &Tensor, b: &Tensor| Tensor::cat(&[a, b], 2);
        let out = attention.forward_heads(
            &joint(&context_qkv.q, &x_qkv.q)?,
            &joint(&context_qkv.k, &x_qkv.k)?,
            &joint(&context_qkv.v, &x_qkv.v)?,
            None,
        )?;
        let total = out.dim(2)?;
        let context_attn = out.narrow(2, 0, context_tokens)?;
        let x_attn = out.narrow(2, context_tokens, total - context_tokens)?;

        let context = match context_residual {
            Some(residual) => Some(self.context_block.post_attention(
                &context_attn,
                None,
                residual,
            )?),
            None => None,
        };
        let x_attn2 = match &x_qkv2 {
            Some(qkv2) => Some(attention.forward_heads(&qkv2.q, &qkv2.k, &qkv2.v, None)?),
            None => None,
        };
        let x_residual = x_residual.ok_or_else(|| ModelError::Config {
            model: "mmdit",
            reason: "an image block half is pre_only".to_string(),
        })?;
        let x = self
            .x_block
            .post_attention(&x_attn, x_attn2.as_ref(), x_residual)?;
        Ok((context, x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn modulate_shifts_after_scaling() {
        let x = Tensor::new(&[[[2f32, 4.0]]], &Device::Cpu).unwrap();
        let shift = Tensor::new(&[[1f32, -1.0]], &Device::Cpu).unwrap();
        let scale = Tensor::new(&[[0.5f32, -0.5]], &Device::Cpu).unwrap();
        let out: Vec<f32> = modulate(&x, &shift, &scale)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(out, vec![4.0, 1.0]);
    }
}
