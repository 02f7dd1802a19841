//! The T5 v1.1 encoder (T5-XXL, the text encoder of Flux and SD3/SD3.5) as ComfyUI runs it
//! (`comfy/text_encoders/t5.py`, wrapped by `sd3_clip.T5XXLModel` / `sd1_clip.SDClipModel`), and
//! ComfyUI's prompt-weight application for it (`ClipTokenWeightEncoder.encode_token_weights`).
//!
//! The math: RMS layer norms (no mean, no bias), attention without the `1/√d` score scale (ComfyUI
//! multiplies the keys by `√d_kv` before its scaled kernels, which cancels it; so does this file),
//! one relative-position bias computed by block 0 from 32 bidirectional buckets (max distance 128)
//! and reused by every block, gated-GELU (tanh approximation) feed-forward, residuals around each,
//! a final RMS norm. Flux and SD3 run T5 without an attention mask (`attention_mask=False`): pad
//! tokens are attended to like any other. Activations are f32 as in ComfyUI, whose manual-cast
//! ops run text encoders in float32 whatever the storage (the planner's compute dtype for text
//! encoders), so no fp16 clamping is involved. When the token table is stored in fp8, the
//! looked-up rows have NaN/inf replaced (ComfyUI's `nan_to_num` "fix for fp8 T5").

use candle_core::{DType, Device, Tensor};
use kiln_runtime::HeldTensor;

use crate::attention::{Attention, AttentionKernel};
use crate::error::{ModelError, Result};
use crate::layers::{Embedding, Linear, RmsNorm};
use crate::weights::Weights;

const MODEL: &str = "t5";
/// `T5LayerNorm`'s epsilon.
const LAYER_NORM_EPS: f64 = 1e-6;
/// ComfyUI's (and T5's) relative-attention maximum distance.
const RELATIVE_ATTENTION_MAX_DISTANCE: usize = 128;
/// T5's end-of-sequence token, first token of ComfyUI's empty sequence for token weighting.
pub const T5_END_TOKEN: u32 = 1;
/// T5's pad token.
pub const T5_PAD_TOKEN: u32 = 0;

/// T5 encoder architecture, read from the weights' shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct T5Config {
    /// Model width (`d_model`, 4096 for XXL).
    pub d_model: usize,
    /// Attention heads (64 for XXL).
    pub heads: usize,
    /// Width of one head (`d_kv`, 64 for XXL).
    pub d_kv: usize,
    /// Gated feed-forward inner width (`d_ff`, 10240 for XXL).
    pub d_ff: usize,
    /// Encoder blocks (24 for XXL).
    pub layers: usize,
    /// Rows of the token table (32128).
    pub vocab: usize,
    /// Relative-position buckets (32).
    pub relative_attention_num_buckets: usize,
    /// Relative positions at or beyond this share the last bucket (128).
    pub relative_attention_max_distance: usize,
}

impl T5Config {
    /// google/t5-v1_1-xxl (<https://huggingface.co/google/t5-v1_1-xxl/blob/main/config.json>,
    /// ComfyUI `comfy/text_encoders/t5_config_xxl.json`).
    pub fn xxl() -> Self {
        T5Config {
            d_model: 4096,
            heads: 64,
            d_kv: 64,
            d_ff: 10240,
            layers: 24,
            vocab: 32128,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: RELATIVE_ATTENTION_MAX_DISTANCE,
        }
    }

    /// The configuration the shapes under `weights` (the component root) describe: widths from
    /// `shared` and block 0, heads and buckets from the relative attention bias `[buckets,
    /// heads]`, the block count by probing `encoder.block.N`.
    pub fn from_weights(weights: &Weights) -> Result<Self> {
        let (vocab, d_model) = dims2(weights, "shared.weight")?;
        let block = weights.pp("encoder.block.0");
        let attention = block.pp("layer.0.SelfAttention");
        let (buckets, heads) = dims2(&attention, "relative_attention_bias.weight")?;
        let (inner, q_in) = dims2(&attention, "q.weight")?;
        let (d_ff, ff_in) = dims2(&block, "layer.1.DenseReluDense.wi_0.weight")?;
        let layers = weights.count_children("encoder.block");
        let config_error = |reason: String| ModelError::Config {
            model: MODEL,
            reason,
        };
        if heads == 0 || !inner.is_multiple_of(heads) {
            return Err(config_error(format!(
                "{heads} heads (relative_attention_bias) do not divide the attention width {inner}"
            )));
        }
        if q_in != d_model || ff_in != d_model {
            return Err(config_error(format!(
                "block 0 reads width {q_in} (q) / {ff_in} (wi_0), the token table is {d_model} wide"
            )));
        }
        if buckets < 4 || !buckets.is_multiple_of(2) {
            return Err(config_error(format!(
                "{buckets} relative-position buckets (need an even count of at least 4)"
            )));
        }
        Ok(T5Config {
            d_model,
            heads,
            d_kv: inner / heads,
            d_ff,
            layers,
            vocab,
            relative_attention_num_buckets: buckets,
            relative_attention_max_distance: RELATIVE_ATTENTION_MAX_DISTANCE,
        })
    }

    fn inner(&self) -> usize {
        self.heads * self.d_kv
    }
}

/// `[rows, cols]` of a 2-D weight.
fn dims2(weights: &Weights, leaf: &str) -> Result<(usize, usize)> {
    let shape = weights.shape(leaf)?;
    match shape.dims() {
        &[rows, cols] => Ok((rows, cols)),
        other => Err(ModelError::WeightShape {
            name: weights.path(leaf),
            actual: other.to_vec(),
            expected: "a 2-D matrix".to_string(),
        }),
    }
}

/// The bucket of `memory − query` (Mesh TensorFlow's `_relative_position_bucket`, bidirectional):
/// half the buckets per direction, exact below a quarter of the buckets, logarithmic up to
/// `max_distance`. The logarithm is taken in f32 and truncated as PyTorch does.
pub fn relative_position_bucket(relative: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = num_buckets / 2;
    let direction = if relative > 0 { half } else { 0 };
    let distance = relative.unsigned_abs() as usize;
    let max_exact = half / 2;
    if distance < max_exact {
        return direction + distance;
    }
    let log_ratio = (distance as f32 / max_exact as f32).ln()
        / ((max_distance as f64 / max_exact as f64).ln() as f32)
        * (half - max_exact) as f32;
    let large = max_exact + log_ratio as usize;
    direction + large.min(half - 1)
}

/// `[1, heads, T, T]` position bias of block 0's table, in `dtype`.
fn position_bias(
    table: &Embedding,
    config: &T5Config,
    tokens: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let mut buckets = Vec::with_capacity(tokens * tokens);
    for query in 0..tokens {
        for memory in 0..tokens {
            let relative = memory as i64 - query as i64;
            let bucket = relative_position_bucket(
                relative,
                config.relative_attention_num_buckets,
                config.relative_attention_max_distance,
            );
            buckets.push(bucket as u32);
        }
    }
    let buckets = Tensor::from_vec(buckets, tokens * tokens, device)?;
    let values = table.rows(&buckets)?.to_dtype(dtype)?;
    Ok(values
        .reshape((tokens, tokens, config.heads))?
        .permute((2, 0, 1))?
        .unsqueeze(0)?
        .contiguous()?)
}

/// `T5LayerSelfAttention`: pre-norm self-attention with the shared position bias.
#[derive(Debug, Clone)]
struct T5SelfAttention {
    layer_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
}

impl T5SelfAttention {
    fn new(layer: &Weights) -> Result<Self> {
        let attention = layer.pp("SelfAttention");
        Ok(T5SelfAttention {
            layer_norm: RmsNorm::new(layer.pp("layer_norm"), LAYER_NORM_EPS)?,
            q: Linear::new(attention.pp("q"))?,
            k: Linear::new(attention.pp("k"))?,
            v: Linear::new(attention.pp("v"))?,
            o: Linear::new(attention.pp("o"))?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        bias: &Tensor,
        config: &T5Config,
        attention: &Attention,
    ) -> Result<Tensor> {
        let normed = self.layer_norm.forward(x)?;
        let q = self.q.forward(&normed)?;
        // T5 has no 1/√d scale; the kernels apply one, so the keys carry its inverse.
        let k = (self.k.forward(&normed)? * (config.d_kv as f64).sqrt())?;
        let v = self.v.forward(&normed)?;
        let out = attention.forward(&q, &k, &v, config.heads, Some(bias))?;
        Ok((x + self.o.forward(&out)?)?)
    }
}

/// `T5LayerFF` with `T5DenseGatedActDense`: `x + wo(gelu_tanh(wi_0(n)) · wi_1(n))`.
#[derive(Debug, Clone)]
struct T5FeedForward {
    layer_norm: RmsNorm,
    wi_0: Linear,
    wi_1: Linear,
    wo: Linear,
}

impl T5FeedForward {
    fn new(layer: &Weights) -> Result<Self> {
        let dense = layer.pp("DenseReluDense");
        Ok(T5FeedForward {
            layer_norm: RmsNorm::new(layer.pp("layer_norm"), LAYER_NORM_EPS)?,
            wi_0: Linear::new(dense.pp("wi_0"))?,
            wi_1: Linear::new(dense.pp("wi_1"))?,
            wo: Linear::new(dense.pp("wo"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let normed = self.layer_norm.forward(x)?;
        let gate = self.wi_0.forward(&normed)?.gelu()?;
        let hidden = (gate * self.wi_1.forward(&normed)?)?;
        Ok((x + self.wo.forward(&hidden)?)?)
    }
}

/// `T5Block`: self-attention then feed-forward.
#[derive(Debug, Clone)]
struct T5Block {
    attention: T5SelfAttention,
    feed_forward: T5FeedForward,
}

impl T5Block {
    fn new(block: &Weights) -> Result<Self> {
        Ok(T5Block {
            attention: T5SelfAttention::new(&block.pp("layer.0"))?,
            feed_forward: T5FeedForward::new(&block.pp("layer.1"))?,
        })
    }
}

/// The T5 encoder stack over the `t5xxl` component (transformers `T5EncoderModel` naming).
#[derive(Debug, Clone)]
pub struct T5Encoder {
    config: T5Config,
    shared: Embedding,
    shared_is_fp8: bool,
    relative_attention_bias: Embedding,
    blocks: Vec<T5Block>,
    final_layer_norm: RmsNorm,
    attention: Attention,
    device: Device,
}

impl T5Encoder {
    /// The encoder whose weights are under `weights` (the component root: `shared.weight`,
    /// `encoder.block.N.layer.{0,1}…`, `encoder.final_layer_norm.weight`), its configuration read
    /// from the shapes. Attention is plain until [`with_attention`](Self::with_attention) sets
    /// the plan's kernel.
    pub fn new(weights: Weights) -> Result<Self> {
        let config = T5Config::from_weights(&weights)?;
        let encoder = weights.pp("encoder");
        let blocks = (0..config.layers)
            .map(|i| T5Block::new(&encoder.pp("block").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        for (i, block) in blocks.iter().enumerate() {
            let width = block.attention.q.out_features()?;
            if width != config.inner() {
                return Err(ModelError::WeightShape {
                    name: encoder
                        .pp("block")
                        .pp(i)
                        .path("layer.0.SelfAttention.q.weight"),
                    actual: vec![width, config.d_model],
                    expected: format!("[{}, {}] as in block 0", config.inner(), config.d_model),
                });
            }
        }
        let shared = Embedding::new(weights.pp("shared"))?;
        let shared_is_fp8 = match weights.held("shared.weight")? {
            HeldTensor::Fp8Bytes { .. } | HeldTensor::Fp8Native { .. } => true,
            HeldTensor::Native(t) => matches!(t.dtype(), DType::F8E4M3),
            _ => false,
        };
        Ok(T5Encoder {
            relative_attention_bias: Embedding::new(
                encoder.pp("block.0.layer.0.SelfAttention.relative_attention_bias"),
            )?,
            final_layer_norm: RmsNorm::new(encoder.pp("final_layer_norm"), LAYER_NORM_EPS)?,
            config,
            shared,
            shared_is_fp8,
            blocks,
            attention: Attention::new(AttentionKernel::Plain),
            device: weights.device().clone(),
        })
    }

    /// The same encoder with the plan's attention kernel and upcast choice.
    pub fn with_attention(self, attention: Attention) -> Self {
        T5Encoder { attention, ..self }
    }

    /// The architecture.
    pub fn config(&self) -> &T5Config {
        &self.config
    }

    /// Last hidden states (after the final norm) of token ids `[B, T]` (u32), `[B, T, d_model]`
    /// in the compute dtype. No attention mask, as Flux and SD3 run T5.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (_, tokens) = ids.dims2().map_err(|_| ModelError::Input {
            model: MODEL,
            input: "ids",
            problem: format!("must be [batch, tokens], got {:?}", ids.dims()),
        })?;
        if tokens == 0 {
            return Err(ModelError::Input {
                model: MODEL,
                input: "ids",
                problem: "has no tokens".to_string(),
            });
        }
        let ids = ids.to_dtype(DType::U32)?;
        let largest = ids.flatten_all()?.max(0)?.to_scalar::<u32>()?;
        if largest as usize >= self.config.vocab {
            return Err(ModelError::Input {
                model: MODEL,
                input: "ids",
                problem: format!(
                    "holds token {largest}, beyond the {}-row token table",
                    self.config.vocab
                ),
            });
        }
        let mut x = self.shared.forward(&ids)?;
        if self.shared_is_fp8 {
            x = nan_to_num(&x)?;
        }
        let bias = position_bias(
            &self.relative_attention_bias,
            &self.config,
            tokens,
            x.dtype(),
            x.device(),
        )?;
        for block in &self.blocks {
            x = block
                .attention
                .forward(&x, &bias, &self.config, &self.attention)?;
            x = block.feed_forward.forward(&x)?;
        }
        self.final_layer_norm.forward(&x)
    }

    /// ComfyUI's `encode_token_weights` for T5: `[1, T, d_model]` f32 conditioning of one
    /// tokenized prompt. When any weight differs from 1, an empty sequence (`</s>` then pads, as
    /// long as the prompt) is encoded beside it and each weighted position becomes
    /// `empty + (z − empty) · weight`; positions of weight 1 keep `z` exactly.
    pub fn encode_weighted(&self, tokens: &[T5Token]) -> Result<Tensor> {
        if tokens.is_empty() {
            return Err(ModelError::Input {
                model: MODEL,
                input: "tokens",
                problem: "is empty (a tokenized prompt holds at least the end token)".to_string(),
            });
        }
        let device = &self.device;
        let count = tokens.len();
        let has_weights = tokens.iter().any(|t| t.weight != 1.0);
        let mut ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
        if has_weights {
            ids.push(T5_END_TOKEN);
            ids.extend(std::iter::repeat_n(T5_PAD_TOKEN, count - 1));
        }
        let rows = if has_weights { 2 } else { 1 };
        let ids = Tensor::from_vec(ids, (rows, count), device)?;
        let out = self.forward(&ids)?.to_dtype(DType::F32)?;
        let z = out.narrow(0, 0, 1)?;
        if !has_weights {
            return Ok(z);
        }
        let empty = out.narrow(0, 1, 1)?;
        let weights: Vec<f32> = tokens.iter().map(|t| t.weight as f32).collect();
        let changed: Vec<u8> = tokens.iter().map(|t| u8::from(t.weight != 1.0)).collect();
        let weights = Tensor::from_vec(weights, (1, count, 1), z.device())?;
        let changed = Tensor::from_vec(changed, (1, count, 1), z.device())?
            .broadcast_as(z.shape())?
            .contiguous()?;
        let weighted = (z.broadcast_sub(&empty)?.broadcast_mul(&weights)? + &empty)?;
        Ok(changed.where_cond(&weighted, &z)?)
    }
}

/// One position of a tokenized T5 prompt: a vocabulary id and its prompt weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct T5Token {
    /// The vocabulary id.
    pub id: u32,
    /// Its weight (1.0 unless the prompt said otherwise).
    pub weight: f64,
}

/// PyTorch `nan_to_num`: NaN → 0, ±inf → the dtype's largest finite value of that sign.
fn nan_to_num(x: &Tensor) -> Result<Tensor> {
    let (low, high) = match x.dtype() {
        DType::F16 => (-65504.0, 65504.0),
        DType::BF16 => (
            f64::from(f32::from(half::bf16::MIN)),
            f64::from(f32::from(half::bf16::MAX)),
        ),
        DType::F64 => (f64::MIN, f64::MAX),
        _ => (f64::from(f32::MIN), f64::from(f32::MAX)),
    };
    let is_nan = x.ne(x)?;
    let cleaned = is_nan.where_cond(&x.zeros_like()?, x)?;
    Ok(cleaned.clamp(low, high)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_mesh_tensorflow() {
        // Values of ComfyUI's T5Attention._relative_position_bucket (bidirectional, 32 buckets,
        // max distance 128).
        let cases = [
            (0, 0),
            (1, 17),
            (-1, 1),
            (7, 23),
            (-7, 7),
            (8, 24),
            (-8, 8),
            (12, 25),
            (-20, 10),
            (64, 30),
            (127, 31),
            (-128, 15),
            (1000, 31),
            (-1000, 15),
            (11, 24),
            (15, 25),
            (16, 26),
            (23, 27),
            (31, 27),
            (32, 28),
            (45, 28),
            (63, 29),
            (90, 30),
            (100, 31),
            (126, 31),
        ];
        for (relative, bucket) in cases {
            assert_eq!(
                relative_position_bucket(relative, 32, 128),
                bucket,
                "relative position {relative}"
            );
        }
    }

    #[test]
    fn nan_to_num_replaces_non_finite() {
        let x = Tensor::new(
            &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.5],
            &Device::Cpu,
        )
        .unwrap();
        let got = nan_to_num(&x).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, [0.0, f32::MAX, f32::MIN, 1.5]);
    }
}
