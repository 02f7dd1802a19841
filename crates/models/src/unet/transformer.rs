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
/// The feed-forward's inner width per channel (ComfyUI's `FeedForward(mult=4)`).
const FEED_FORWARD_MULT: usize = 4;

/// The most projected values (`tokens × 8 × channels` over the batch) one feed-forward pass aims
/// to hold on the CPU: 16 MiB of f32. Whole, SD1.5's 64² level (CFG batch 2) projects 84 MB and
/// gates 42 MB more, the largest transient of a step and the top of its peak memory; each
/// token's output depends on its own row only, so the tokens can go through in chunks.
const FEED_FORWARD_CHUNK_ELEMENTS: usize = 1 << 22;

/// Each chunk's rows (tokens over the batch) per channel at least: every chunk widens and packs
/// the layer's weights again (`8 × channels²` values), which costs little only while the rows
/// outnumber the weight's columns by this much. Inner levels, whose weights are large and
/// tokens few, do not chunk (measured: chunking them slowed an SD1.5 step by ~10 %).
const FEED_FORWARD_MIN_ROWS_PER_CHANNEL: usize = 8;

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
        let inner = FEED_FORWARD_MULT * channels;
        expect_shape(weights, "net.0.proj.weight", &[2 * inner, channels])?;
        expect_shape(weights, "net.2.weight", &[channels, inner])?;
        Ok(FeedForward {
            net_0_proj: Linear::new(weights.pp("net.0.proj"))?,
            net_2: Linear::new(weights.pp("net.2"))?,
        })
    }

    /// `x` `[B, T, C]`; on the CPU in chunks of tokens where the projection is large (the same
    /// rows, the same sums per row).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_in_chunks(x, FEED_FORWARD_CHUNK_ELEMENTS)
    }

    /// [`Self::forward`] holding about `chunk_elements` projected values at a time.
    fn forward_in_chunks(&self, x: &Tensor, chunk_elements: usize) -> Result<Tensor> {
        let (batch, tokens, channels) = x.dims3()?;
        let chunk = chunk_tokens(
            [batch, tokens, channels],
            2 * FEED_FORWARD_MULT * channels,
            chunk_elements,
        );
        if !x.device().is_cpu() || chunk >= tokens {
            return self.forward_rows(x);
        }
        let parts = (0..tokens)
            .step_by(chunk)
            .map(|start| {
                let rows = x
                    .narrow(1, start, chunk.min(tokens - start))?
                    .contiguous()?;
                self.forward_rows(&rows)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 1)?)
    }

    fn forward_rows(&self, x: &Tensor) -> Result<Tensor> {
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

/// Tokens per feed-forward chunk (all of them: no chunking) for an input of `[batch, tokens,
/// channels]` projected to `projected_width`: even chunks of about `chunk_elements` projected
/// values, no more of them than [`FEED_FORWARD_MIN_ROWS_PER_CHANNEL`] allows.
fn chunk_tokens(
    [batch, tokens, channels]: [usize; 3],
    projected_width: usize,
    chunk_elements: usize,
) -> usize {
    let projected = batch * tokens * projected_width;
    let most_chunks = batch * tokens / (FEED_FORWARD_MIN_ROWS_PER_CHANNEL * channels).max(1);
    let chunks = projected
        .div_ceil(chunk_elements.max(1))
        .min(most_chunks)
        .max(1);
    tokens.div_ceil(chunks)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use candle_core::{DType, Device};
    use kiln_detect::ComponentKind;
    use kiln_runtime::WeightStore;

    use super::{chunk_tokens, FeedForward};
    use crate::test_support::random;
    use crate::weights::Weights;

    #[test]
    fn feed_forward_in_chunks_is_the_whole_pass() -> crate::error::Result<()> {
        let (batch, tokens, channels) = (2, 203, 8);
        let inner = 4 * channels;
        let device = Device::Cpu;
        let mut tensors = BTreeMap::new();
        tensors.insert(
            "ff.net.0.proj.weight".to_string(),
            random(&[2 * inner, channels], 1),
        );
        tensors.insert("ff.net.0.proj.bias".to_string(), random(&[2 * inner], 2));
        tensors.insert("ff.net.2.weight".to_string(), random(&[channels, inner], 3));
        tensors.insert("ff.net.2.bias".to_string(), random(&[channels], 4));
        let store =
            WeightStore::from_tensors(ComponentKind::DiffusionModel, DType::F32, &device, tensors)?;
        let ff = FeedForward::new(&Weights::new(Arc::new(store)).pp("ff"), channels)?;
        let x = random(&[batch, tokens, channels], 5);
        let whole = ff.forward_rows(&x)?;
        // 406 rows of 8 channels allow at most 6 chunks; a budget of 2 000 projected values
        // asks for 13 (so 6 of 34 tokens, the last 33), 8 000 for 4 (51, the last 50).
        for (budget, chunk) in [(2_000, 34), (8_000, 51), (1 << 22, tokens)] {
            assert_eq!(
                chunk_tokens([batch, tokens, channels], 2 * inner, budget),
                chunk
            );
            let chunked = ff.forward_in_chunks(&x, budget)?;
            assert_eq!(chunked.dims(), whole.dims());
            let difference = (&chunked - &whole)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(difference <= 1e-6, "budget {budget}: {difference}");
        }
        // SD1.5's 64² level (CFG batch 2, 320 channels) goes in 3 chunks, its 32² level whole.
        let budget = super::FEED_FORWARD_CHUNK_ELEMENTS;
        assert_eq!(chunk_tokens([2, 4096, 320], 2560, budget), 1366);
        assert_eq!(chunk_tokens([2, 1024, 640], 5120, budget), 1024);
        Ok(())
    }
}
