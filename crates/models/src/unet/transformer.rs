//! The UNet's attention blocks (`comfy/ldm/modules/attention.py`): `SpatialTransformer` around a
//! stack of `BasicTransformerBlock`s, each self-attention, cross-attention on the text context and
//! a GEGLU feed-forward, with pre-LayerNorms and residuals.

use candle_core::Tensor;

use super::expect_shape;
use crate::attention::Attention;
use crate::error::Result;
use crate::layers::{Conv2d, GroupNorm, LayerNorm, Linear};
use crate::weights::Weights;

const TRANSFORMER_NORM_GROUPS: usize = 32;
const TRANSFORMER_NORM_EPS: f64 = 1e-6;
const LAYER_NORM_EPS: f64 = 1e-5;

/// `CrossAttention`: bias-free `to_q`/`to_k`/`to_v`, multi-head attention, `to_out.0`.
#[derive(Debug, Clone)]
struct CrossAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out_0: Linear,
    heads: usize,
}

impl CrossAttention {
    fn new(weights: &Weights, channels: usize, context_dim: usize, heads: usize) -> Result<Self> {
        expect_shape(weights, "to_q.weight", &[channels, channels])?;
        expect_shape(weights, "to_k.weight", &[channels, context_dim])?;
        expect_shape(weights, "to_v.weight", &[channels, context_dim])?;
        expect_shape(weights, "to_out.0.weight", &[channels, channels])?;
        Ok(CrossAttention {
            to_q: Linear::new(weights.pp("to_q"))?,
            to_k: Linear::new(weights.pp("to_k"))?,
            to_v: Linear::new(weights.pp("to_v"))?,
            to_out_0: Linear::new(weights.pp("to_out.0"))?,
            heads,
        })
    }

    /// `x` `[B, T, C]` attends to `context` `[B, S, D]` (itself for self-attention).
    fn forward(&self, x: &Tensor, context: &Tensor, attention: &Attention) -> Result<Tensor> {
        let q = self.to_q.forward(x)?;
        let k = self.to_k.forward(context)?;
        let v = self.to_v.forward(context)?;
        let out = attention.forward(&q, &k, &v, self.heads, None)?;
        self.to_out_0.forward(&out)
    }
}

/// `FeedForward` with `glu=True`: GEGLU (`net.0.proj` to twice the 4× inner width, value half
/// times exact GELU of the gate half), then `net.2` back.
#[derive(Debug, Clone)]
struct FeedForward {
    net_0_proj: Linear,
    net_2: Linear,
}

impl FeedForward {
    fn new(weights: &Weights, channels: usize) -> Result<Self> {
        let inner = 4 * channels;
        expect_shape(weights, "net.0.proj.weight", &[2 * inner, channels])?;
        expect_shape(weights, "net.2.weight", &[channels, inner])?;
        Ok(FeedForward {
            net_0_proj: Linear::new(weights.pp("net.0.proj"))?,
            net_2: Linear::new(weights.pp("net.2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let projected = self.net_0_proj.forward(x)?;
        if projected.dtype() == candle_core::DType::F32 && crate::layers::use_cpu_kernel(&projected)
        {
            let gated = kiln_kernels::geglu(&projected).map_err(crate::layers::from_kernel)?;
            drop(projected);
            return self.net_2.forward(&gated);
        }
        let halves = projected.chunk(2, candle_core::D::Minus1)?;
        let (value, gate) = (&halves[0], &halves[1]);
        self.net_2.forward(&(value * gate.gelu_erf()?)?)
    }
}

/// `BasicTransformerBlock`: `x += attn1(norm1(x))`, `x += attn2(norm2(x), context)`,
/// `x += ff(norm3(x))`.
#[derive(Debug, Clone)]
struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: CrossAttention,
    norm2: LayerNorm,
    attn2: CrossAttention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl BasicTransformerBlock {
    fn new(weights: &Weights, channels: usize, context_dim: usize, heads: usize) -> Result<Self> {
        for norm in ["norm1", "norm2", "norm3"] {
            expect_shape(weights, &format!("{norm}.weight"), &[channels])?;
        }
        Ok(BasicTransformerBlock {
            norm1: LayerNorm::new(weights.pp("norm1"), LAYER_NORM_EPS)?,
            attn1: CrossAttention::new(&weights.pp("attn1"), channels, channels, heads)?,
            norm2: LayerNorm::new(weights.pp("norm2"), LAYER_NORM_EPS)?,
            attn2: CrossAttention::new(&weights.pp("attn2"), channels, context_dim, heads)?,
            norm3: LayerNorm::new(weights.pp("norm3"), LAYER_NORM_EPS)?,
            ff: FeedForward::new(&weights.pp("ff"), channels)?,
        })
    }

    fn forward(&self, x: &Tensor, context: &Tensor, attention: &Attention) -> Result<Tensor> {
        let normed = self.norm1.forward(x)?;
        let x = (self.attn1.forward(&normed, &normed, attention)? + x)?;
        let normed = self.norm2.forward(&x)?;
        let x = (self.attn2.forward(&normed, context, attention)? + x)?;
        let normed = self.norm3.forward(&x)?;
        Ok((self.ff.forward(&normed)? + x)?)
    }
}

/// `proj_in`/`proj_out`: a 1×1 convolution on `[B, C, H, W]` (SD1) or a linear layer on
/// `[B, HW, C]` (SD2, SDXL), told apart by the weight's rank.
#[derive(Debug, Clone)]
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

impl Projection {
    fn new(weights: &Weights, leaf: &str, channels: usize) -> Result<Self> {
        let path = format!("{leaf}.weight");
        if weights.shape(&path)?.rank() == 2 {
            expect_shape(weights, &path, &[channels, channels])?;
            Ok(Projection::Linear(Linear::new(weights.pp(leaf))?))
        } else {
            expect_shape(weights, &path, &[channels, channels, 1, 1])?;
            Ok(Projection::Conv(Conv2d::new(weights.pp(leaf), 0, 1)?))
        }
    }
}

/// `SpatialTransformer`: GroupNorm (ε 1e-6), `proj_in`, the blocks over the `H·W` tokens,
/// `proj_out`, plus the input.
#[derive(Debug, Clone)]
pub(super) struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Projection,
    transformer_blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

impl SpatialTransformer {
    /// The transformer under `weights` (`input_blocks.N.1`, …): `depth` blocks, `channels` wide,
    /// in `heads` heads, attending to a `context_dim`-wide context.
    pub(super) fn new(
        weights: &Weights,
        channels: usize,
        depth: usize,
        context_dim: usize,
        heads: usize,
    ) -> Result<Self> {
        expect_shape(weights, "norm.weight", &[channels])?;
        let transformer_blocks = (0..depth)
            .map(|index| {
                BasicTransformerBlock::new(
                    &weights.pp("transformer_blocks").pp(index),
                    channels,
                    context_dim,
                    heads,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SpatialTransformer {
            norm: GroupNorm::new(
                weights.pp("norm"),
                TRANSFORMER_NORM_GROUPS,
                TRANSFORMER_NORM_EPS,
            )?,
            proj_in: Projection::new(weights, "proj_in", channels)?,
            transformer_blocks,
            proj_out: Projection::new(weights, "proj_out", channels)?,
        })
    }

    /// `x` `[B, C, H, W]` with `context` `[B, S, D]` → `[B, C, H, W]`.
    pub(super) fn forward(
        &self,
        x: &Tensor,
        context: &Tensor,
        attention: &Attention,
    ) -> Result<Tensor> {
        let (batch, channels, height, width) = x.dims4()?;
        // `force_contiguous`, not `contiguous`: with one token, candle 0.11 takes the transposed
        // view for contiguous (strides [C, 1, 1]) and its CPU matmul then multiplies it wrongly.
        let to_tokens = |t: &Tensor| -> Result<Tensor> {
            Ok(t.flatten_from(2)?.transpose(1, 2)?.force_contiguous()?)
        };
        let normed = self.norm.forward(x)?;
        let mut h = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(&conv.forward(&normed)?)?,
            Projection::Linear(linear) => linear.forward(&to_tokens(&normed)?)?,
        };
        for block in &self.transformer_blocks {
            h = block.forward(&h, context, attention)?;
        }
        let to_image = |t: &Tensor| -> Result<Tensor> {
            Ok(t.transpose(1, 2)?
                .force_contiguous()?
                .reshape((batch, channels, height, width))?)
        };
        let h = match &self.proj_out {
            Projection::Conv(conv) => conv.forward(&to_image(&h)?)?,
            Projection::Linear(linear) => to_image(&linear.forward(&h)?)?,
        };
        Ok((h + x)?)
    }
}
