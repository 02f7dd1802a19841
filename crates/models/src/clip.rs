//! The CLIP text transformer (OpenAI CLIP-L, OpenCLIP ViT-H and ViT-bigG) in Hugging Face
//! `transformers` naming, and ComfyUI's way of turning weighted token windows into conditioning
//! (`comfy/sd1_clip.py: SDClipModel`, `ClipTokenWeightEncoder.encode_token_weights`,
//! `comfy/sdxl_clip.py`, `comfy/text_encoders/sd2_clip.py`, `comfy/clip_model.py`).
//!
//! Key layout under the component root:
//! `text_model.embeddings.{token_embedding,position_embedding}.weight`,
//! `text_model.encoder.layers.N.{self_attn.{q,k,v,out}_proj, layer_norm1, layer_norm2,
//! mlp.fc1, mlp.fc2}`, `text_model.final_layer_norm`, optional `text_projection.weight`.

use candle_core::{DType, Tensor, D};
use kiln_detect::ComponentKind;

use crate::attention::{Attention, AttentionKernel};
use crate::clip_tokenizer::{ClipToken, TokenChunk, END_TOKEN, START_TOKEN};
use crate::error::{ModelError, Result};
use crate::layers::{Embedding, LayerNorm, Linear};
use crate::weights::Weights;

const MODEL: &str = "clip";

/// The MLP activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipActivation {
    /// `x·σ(1.702x)` (OpenAI CLIP-L).
    QuickGelu,
    /// Exact (erf) GELU (OpenCLIP ViT-H, ViT-bigG).
    Gelu,
}

/// CLIP text-transformer architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    /// Hidden width.
    pub hidden_size: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Positions (context length).
    pub positions: usize,
    /// Vocabulary rows.
    pub vocab_size: usize,
    /// MLP activation.
    pub activation: ClipActivation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
}

impl ClipConfig {
    /// CLIP-L: <https://huggingface.co/openai/clip-vit-large-patch14/blob/main/config.json>
    /// (ComfyUI `comfy/sd1_clip_config.json`).
    pub fn clip_l() -> Self {
        ClipConfig {
            hidden_size: 768,
            layers: 12,
            heads: 12,
            intermediate_size: 3072,
            positions: 77,
            vocab_size: 49408,
            activation: ClipActivation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }

    /// OpenCLIP ViT-H text tower (ComfyUI `comfy/text_encoders/sd2_clip_config.json`).
    pub fn open_clip_h() -> Self {
        ClipConfig {
            hidden_size: 1024,
            layers: 24,
            heads: 16,
            intermediate_size: 4096,
            activation: ClipActivation::Gelu,
            ..ClipConfig::clip_l()
        }
    }

    /// OpenCLIP ViT-bigG text tower (ComfyUI `comfy/clip_config_bigg.json`).
    pub fn clip_g() -> Self {
        ClipConfig {
            hidden_size: 1280,
            layers: 32,
            heads: 20,
            intermediate_size: 5120,
            activation: ClipActivation::Gelu,
            ..ClipConfig::clip_l()
        }
    }

    /// The architecture as the weights show it. The head count is not visible in the weights:
    /// it is `hidden / 64` as in every released CLIP; other widths need
    /// [`with_heads`](Self::with_heads). The activation follows the component kind.
    pub fn from_weights(weights: &Weights, kind: ComponentKind) -> Result<Self> {
        let activation = match kind {
            ComponentKind::ClipL => ClipActivation::QuickGelu,
            ComponentKind::ClipG | ComponentKind::OpenClipH => ClipActivation::Gelu,
            other => {
                return Err(ModelError::Config {
                    model: MODEL,
                    reason: format!("component `{other}` is not a CLIP text encoder"),
                })
            }
        };
        let text = weights.pp("text_model");
        let token = dims2(&text.pp("embeddings.token_embedding"), "weight")?;
        let position = dims2(&text.pp("embeddings.position_embedding"), "weight")?;
        let layers = text.count_children("encoder.layers");
        if layers == 0 {
            return Err(ModelError::Config {
                model: MODEL,
                reason: "no `text_model.encoder.layers.N` weights".to_string(),
            });
        }
        let fc1 = dims2(&text.pp("encoder.layers.0.mlp.fc1"), "weight")?;
        let hidden_size = token.1;
        Ok(ClipConfig {
            hidden_size,
            layers,
            heads: if hidden_size % 64 == 0 {
                hidden_size / 64
            } else {
                0
            },
            intermediate_size: fc1.0,
            positions: position.0,
            vocab_size: token.0,
            activation,
            layer_norm_eps: 1e-5,
        })
    }

    /// The same architecture with `heads` attention heads.
    pub fn with_heads(self, heads: usize) -> Self {
        ClipConfig { heads, ..self }
    }
}

fn dims2(weights: &Weights, leaf: &str) -> Result<(usize, usize)> {
    let shape = weights.shape(leaf)?;
    match *shape.dims() {
        [rows, cols] => Ok((rows, cols)),
        _ => Err(ModelError::WeightShape {
            name: weights.path(leaf),
            actual: shape.dims().to_vec(),
            expected: "a 2-D matrix".to_string(),
        }),
    }
}

/// Which hidden state an encoder returns (ComfyUI `layer` / `layer_idx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipLayer {
    /// The last layer's output after `final_layer_norm` (`layer="last"`).
    Last,
    /// The output of layer `index` (negative counts from the end: -1 last, -2 penultimate),
    /// after `final_layer_norm` when the usage says so.
    Hidden(i32),
}

/// How a model family uses one text encoder (ComfyUI's `SDClipModel` arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipUsage {
    /// The layer returned without `CLIPSetLastLayer`.
    pub default_layer: ClipLayer,
    /// Whether an intermediate hidden state passes through `final_layer_norm`.
    pub layer_norm_hidden_state: bool,
    /// Whether the pooled output goes through `text_projection` (when the weights have it).
    pub projected_pooled: bool,
    /// Start, end and pad tokens of the empty prompt that weights are measured against.
    pub start_token: u32,
    /// End token; the pooled output is taken at its first position.
    pub end_token: u32,
    /// Pad token of the empty prompt.
    pub pad_token: u32,
}

impl ClipUsage {
    /// SD1.x CLIP-L (`SD1CheckpointClipModel`): last layer, unprojected pooled.
    pub fn sd1_clip_l() -> Self {
        ClipUsage {
            default_layer: ClipLayer::Last,
            layer_norm_hidden_state: true,
            projected_pooled: false,
            start_token: START_TOKEN,
            end_token: END_TOKEN,
            pad_token: END_TOKEN,
        }
    }

    /// SD2.x OpenCLIP-H (`SD2ClipHModel`): penultimate layer through the final norm, pad 0.
    pub fn sd2_clip_h() -> Self {
        ClipUsage {
            default_layer: ClipLayer::Hidden(-2),
            layer_norm_hidden_state: true,
            projected_pooled: true,
            pad_token: 0,
            ..ClipUsage::sd1_clip_l()
        }
    }

    /// SDXL's CLIP-L (`SDXLClipModel.clip_l`): penultimate layer, no final norm.
    pub fn sdxl_clip_l() -> Self {
        ClipUsage {
            default_layer: ClipLayer::Hidden(-2),
            layer_norm_hidden_state: false,
            projected_pooled: true,
            ..ClipUsage::sd1_clip_l()
        }
    }

    /// SDXL's (and the refiner's) OpenCLIP-bigG (`SDXLClipG`): penultimate layer, no final
    /// norm, projected pooled, pad 0.
    pub fn sdxl_clip_g() -> Self {
        ClipUsage {
            pad_token: 0,
            ..ClipUsage::sdxl_clip_l()
        }
    }

    /// Flux's CLIP-L (`FluxClipModel.clip_l`): last layer, unprojected pooled.
    pub fn flux_clip_l() -> Self {
        ClipUsage::sd1_clip_l()
    }

    /// The layer to return for a `CLIPSetLastLayer` value (`None`: the default), following
    /// `SDClipModel.set_clip_options`: beyond the layer count means the last layer.
    pub fn layer_for(&self, clip_skip: Option<i32>, layers: usize) -> ClipLayer {
        match clip_skip {
            None => self.default_layer,
            Some(index) if index.unsigned_abs() as usize > layers => ClipLayer::Last,
            Some(index) => ClipLayer::Hidden(index),
        }
    }
}

/// Self-attention of one layer.
#[derive(Debug, Clone)]
struct ClipAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
}

impl ClipAttention {
    fn new(w: &Weights) -> Result<Self> {
        Ok(ClipAttention {
            q_proj: Linear::new(w.pp("q_proj"))?,
            k_proj: Linear::new(w.pp("k_proj"))?,
            v_proj: Linear::new(w.pp("v_proj"))?,
            out_proj: Linear::new(w.pp("out_proj"))?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        heads: usize,
        mask: &Tensor,
        attention: &Attention,
    ) -> Result<Tensor> {
        let q = self.q_proj.forward(x)?;
        let k = self.k_proj.forward(x)?;
        let v = self.v_proj.forward(x)?;
        let out = attention.forward(&q, &k, &v, heads, Some(mask))?;
        self.out_proj.forward(&out)
    }
}

/// The feed-forward block.
#[derive(Debug, Clone)]
struct ClipMlp {
    fc1: Linear,
    fc2: Linear,
    activation: ClipActivation,
}

impl ClipMlp {
    fn new(w: &Weights, activation: ClipActivation) -> Result<Self> {
        Ok(ClipMlp {
            fc1: Linear::new(w.pp("fc1"))?,
            fc2: Linear::new(w.pp("fc2"))?,
            activation,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward(x)?;
        let h = match self.activation {
            ClipActivation::QuickGelu => (&h * candle_nn::ops::sigmoid(&(&h * 1.702)?)?)?,
            ClipActivation::Gelu => h.gelu_erf()?,
        };
        self.fc2.forward(&h)
    }
}

/// One pre-norm transformer layer.
#[derive(Debug, Clone)]
struct ClipEncoderLayer {
    self_attn: ClipAttention,
    layer_norm1: LayerNorm,
    mlp: ClipMlp,
    layer_norm2: LayerNorm,
}

impl ClipEncoderLayer {
    fn new(w: &Weights, config: &ClipConfig) -> Result<Self> {
        Ok(ClipEncoderLayer {
            self_attn: ClipAttention::new(&w.pp("self_attn"))?,
            layer_norm1: LayerNorm::new(w.pp("layer_norm1"), config.layer_norm_eps)?,
            mlp: ClipMlp::new(&w.pp("mlp"), config.activation)?,
            layer_norm2: LayerNorm::new(w.pp("layer_norm2"), config.layer_norm_eps)?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        heads: usize,
        mask: &Tensor,
        attention: &Attention,
    ) -> Result<Tensor> {
        let h = self
            .self_attn
            .forward(&self.layer_norm1.forward(x)?, heads, mask, attention)?;
        let x = (x + h)?;
        let h = self.mlp.forward(&self.layer_norm2.forward(&x)?)?;
        Ok((x + h)?)
    }
}

/// What one forward pass returns.
#[derive(Debug, Clone)]
pub struct ClipHidden {
    /// The selected hidden state `[B, T, hidden]`, f32.
    pub hidden: Tensor,
    /// The pooled output `[B, hidden or projection]`, f32.
    pub pooled: Tensor,
}

/// A CLIP text encoder over loaded weights.
#[derive(Debug, Clone)]
pub struct ClipTextEncoder {
    config: ClipConfig,
    usage: ClipUsage,
    kind: ComponentKind,
    token_embedding: Embedding,
    position_embedding: Weights,
    layers: Vec<ClipEncoderLayer>,
    final_layer_norm: LayerNorm,
    text_projection: Option<Linear>,
    attention: Attention,
}

impl ClipTextEncoder {
    /// The encoder `kind` whose weights are under `weights` (the component root), with the
    /// architecture `config` and the family's `usage`. Attention is plain until
    /// [`with_attention`](Self::with_attention) sets the plan's kernel.
    pub fn new(
        weights: Weights,
        kind: ComponentKind,
        config: ClipConfig,
        usage: ClipUsage,
    ) -> Result<Self> {
        if config.heads == 0 || !config.hidden_size.is_multiple_of(config.heads) {
            return Err(ModelError::Config {
                model: MODEL,
                reason: format!(
                    "{} heads do not divide width {} (give the head count with `with_heads`)",
                    config.heads, config.hidden_size
                ),
            });
        }
        let text = weights.pp("text_model");
        let embeddings = text.pp("embeddings");
        let token_embedding = Embedding::new(embeddings.pp("token_embedding"))?;
        let position_embedding = embeddings.pp("position_embedding");
        let expected = [
            (token_embedding.len()?, config.vocab_size, "vocab_size"),
            (token_embedding.dim()?, config.hidden_size, "hidden_size"),
            (
                dims2(&position_embedding, "weight")?.0,
                config.positions,
                "positions",
            ),
        ];
        for (found, configured, field) in expected {
            if found != configured {
                return Err(ModelError::Config {
                    model: MODEL,
                    reason: format!("weights have {field} {found}, the config says {configured}"),
                });
            }
        }
        let layers = (0..config.layers)
            .map(|i| ClipEncoderLayer::new(&text.pp("encoder.layers").pp(i), &config))
            .collect::<Result<Vec<_>>>()?;
        let final_layer_norm = LayerNorm::new(text.pp("final_layer_norm"), config.layer_norm_eps)?;
        let text_projection = if weights.contains("text_projection.weight") {
            Some(Linear::new(weights.pp("text_projection"))?)
        } else {
            None
        };
        Ok(ClipTextEncoder {
            config,
            usage,
            kind,
            token_embedding,
            position_embedding,
            layers,
            final_layer_norm,
            text_projection,
            attention: Attention::new(AttentionKernel::Plain),
        })
    }

    /// The same encoder with the plan's attention kernel and upcast choice.
    pub fn with_attention(self, attention: Attention) -> Self {
        ClipTextEncoder { attention, ..self }
    }

    /// The architecture.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The family usage.
    pub fn usage(&self) -> &ClipUsage {
        &self.usage
    }

    /// Which component this is.
    pub fn kind(&self) -> ComponentKind {
        self.kind
    }

    /// Token embeddings of the windows with textual-inversion vectors spliced in, `[N, T,
    /// hidden]`, and per window the position of its pooled token (ComfyUI
    /// `SDClipModel.process_tokens`). An embedding of the wrong width is dropped and the window
    /// padded at the end, as ComfyUI does.
    fn embed(&self, windows: &[Vec<ClipToken>]) -> Result<(Tensor, Vec<usize>)> {
        let device = self.position_embedding.device().clone();
        let dtype = self.position_embedding.dtype();
        let hidden = self.config.hidden_size;
        let length = windows.first().map_or(0, Vec::len);
        if length == 0 || length > self.config.positions {
            return Err(ModelError::Input {
                model: MODEL,
                input: "tokens",
                problem: format!(
                    "windows must have 1 to {} tokens, got {length}",
                    self.config.positions
                ),
            });
        }
        let mut rows = Vec::with_capacity(windows.len());
        let mut pooled_at = Vec::with_capacity(windows.len());
        for window in windows {
            if window.len() != length {
                return Err(ModelError::Input {
                    model: MODEL,
                    input: "tokens",
                    problem: format!("windows differ in length ({} and {length})", window.len()),
                });
            }
            let mut ids: Vec<u32> = Vec::with_capacity(length);
            let mut sources: Vec<Source> = Vec::new();
            let mut dropped = 0;
            let mut eos_seen = false;
            let mut attended = 0;
            for token in window {
                match token {
                    ClipToken::Id(id) => {
                        if *id as usize >= self.config.vocab_size {
                            return Err(ModelError::Input {
                                model: MODEL,
                                input: "tokens",
                                problem: format!(
                                    "token id {id} is outside the vocabulary of {}",
                                    self.config.vocab_size
                                ),
                            });
                        }
                        // ComfyUI pools at the last attended position: everything up to and
                        // including the first end token, plus every spliced embedding.
                        if !eos_seen {
                            attended += 1;
                        }
                        eos_seen |= *id == self.usage.end_token;
                        push_id(&mut sources, ids.len());
                        ids.push(*id);
                    }
                    ClipToken::Embedding(vector) if vector.len() == hidden => {
                        let row =
                            Tensor::from_slice(vector, (1, hidden), &device)?.to_dtype(dtype)?;
                        sources.push(Source::Row(row));
                        attended += 1;
                    }
                    ClipToken::Embedding(_) => dropped += 1,
                }
            }
            for _ in 0..dropped {
                push_id(&mut sources, ids.len());
                ids.push(self.usage.pad_token);
            }
            let id_count = ids.len();
            let looked_up = self
                .token_embedding
                .rows(&Tensor::from_vec(ids, id_count, &device)?)?;
            let window_rows = if sources.iter().all(|s| matches!(s, Source::Ids { .. })) {
                looked_up
            } else {
                let pieces = sources
                    .into_iter()
                    .map(|source| match source {
                        Source::Ids { start, len } => Ok(looked_up.narrow(0, start, len)?),
                        Source::Row(row) => Ok(row),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&pieces, 0)?
            };
            pooled_at.push(attended.max(1) - 1);
            rows.push(window_rows);
        }
        Ok((Tensor::stack(&rows, 0)?, pooled_at))
    }

    /// The transformer over token embeddings `[N, T, hidden]`: `layer`'s hidden state and the
    /// pooled output taken from the final-norm output at `pooled_at[n]` for each row
    /// (ComfyUI `CLIPTextModel_.forward` with its causal mask).
    pub fn forward_embeds(
        &self,
        embeds: &Tensor,
        layer: ClipLayer,
        pooled_at: &[usize],
    ) -> Result<ClipHidden> {
        let (rows, tokens, hidden) = embeds.dims3().map_err(|_| ModelError::Input {
            model: MODEL,
            input: "embeds",
            problem: format!("must be [N, T, hidden], got {:?}", embeds.dims()),
        })?;
        if hidden != self.config.hidden_size
            || tokens == 0
            || tokens > self.config.positions
            || pooled_at.len() != rows
            || pooled_at.iter().any(|&p| p >= tokens)
        {
            return Err(ModelError::Input {
                model: MODEL,
                input: "embeds",
                problem: format!(
                    "shape {:?} with pooled positions {pooled_at:?} does not fit width {} and \
                     {} positions",
                    embeds.dims(),
                    self.config.hidden_size,
                    self.config.positions
                ),
            });
        }
        let layer_count = self.layers.len() as i64;
        let target = match layer {
            ClipLayer::Last => None,
            ClipLayer::Hidden(index) => {
                let resolved = if index < 0 {
                    layer_count + i64::from(index)
                } else {
                    i64::from(index)
                };
                if !(0..layer_count).contains(&resolved) {
                    return Err(ModelError::Input {
                        model: MODEL,
                        input: "layer",
                        problem: format!("layer {index} of {layer_count}"),
                    });
                }
                Some(resolved as usize)
            }
        };
        let dtype = self.position_embedding.dtype();
        let device = self.position_embedding.device().clone();
        let positions = self
            .position_embedding
            .get("weight")?
            .narrow(0, 0, tokens)?;
        let mut x = embeds.to_dtype(dtype)?.broadcast_add(&positions)?;
        let mask = causal_mask(tokens, dtype, &device)?;
        let mut intermediate = None;
        for (i, encoder_layer) in self.layers.iter().enumerate() {
            x = encoder_layer.forward(&x, self.config.heads, &mask, &self.attention)?;
            if target == Some(i) {
                intermediate = Some(x.clone());
            }
        }
        let last = self.final_layer_norm.forward(&x)?;
        let selected = match intermediate {
            None => last.clone(),
            Some(h) if self.usage.layer_norm_hidden_state => self.final_layer_norm.forward(&h)?,
            Some(h) => h,
        };
        let flat_index: Vec<u32> = pooled_at
            .iter()
            .enumerate()
            .map(|(row, &at)| (row * tokens + at) as u32)
            .collect();
        let pooled = last
            .reshape((rows * tokens, hidden))?
            .index_select(&Tensor::from_vec(flat_index, rows, &device)?, 0)?;
        let pooled = match (&self.text_projection, self.usage.projected_pooled) {
            (Some(projection), true) => projection.forward(&pooled)?,
            _ => pooled,
        };
        Ok(ClipHidden {
            hidden: selected.to_dtype(DType::F32)?,
            pooled: pooled.to_dtype(DType::F32)?,
        })
    }

    /// Token windows through the transformer as one batch (ComfyUI `SDClipModel.forward`).
    pub fn encode_tokens(
        &self,
        windows: &[Vec<ClipToken>],
        layer: ClipLayer,
    ) -> Result<ClipHidden> {
        let (embeds, pooled_at) = self.embed(windows)?;
        self.forward_embeds(&embeds, layer, &pooled_at)
    }

    /// Weighted windows to conditioning `[1, windows·T, hidden]` and the first window's pooled
    /// output `[1, width]` (ComfyUI `encode_token_weights`): when any weight differs from 1,
    /// the empty prompt `start, end, pad…` is encoded alongside and each weighted token becomes
    /// `(z − z_empty)·w + z_empty`. `clip_skip` is `CLIPSetLastLayer`'s value (`None`: the
    /// family default).
    pub fn encode_chunks(
        &self,
        chunks: &[TokenChunk],
        clip_skip: Option<i32>,
    ) -> Result<(Tensor, Tensor)> {
        let layer = self.usage.layer_for(clip_skip, self.layers.len());
        let has_weights = chunks.iter().flatten().any(|t| t.weight != 1.0);
        let mut windows: Vec<Vec<ClipToken>> = chunks
            .iter()
            .map(|chunk| chunk.iter().map(|t| t.token.clone()).collect())
            .collect();
        if has_weights || chunks.is_empty() {
            let length = chunks.iter().map(Vec::len).max().unwrap_or(0);
            windows.push(self.empty_tokens(length));
        }
        let encoded = self.encode_tokens(&windows, layer)?;
        let first_pooled = encoded.pooled.narrow(0, 0, 1)?;
        let rows = windows.len();
        if chunks.is_empty() {
            return Ok((encoded.hidden.narrow(0, rows - 1, 1)?, first_pooled));
        }
        let device = encoded.hidden.device().clone();
        let empty = encoded.hidden.narrow(0, rows - 1, 1)?;
        let mut outputs = Vec::with_capacity(chunks.len());
        for (k, chunk) in chunks.iter().enumerate() {
            let z = encoded.hidden.narrow(0, k, 1)?;
            if !has_weights || chunk.iter().all(|t| t.weight == 1.0) {
                outputs.push(z);
                continue;
            }
            let tokens = chunk.len();
            let weights: Vec<f32> = chunk.iter().map(|t| t.weight as f32).collect();
            let changed: Vec<u8> = chunk.iter().map(|t| u8::from(t.weight != 1.0)).collect();
            let weights = Tensor::from_vec(weights, (1, tokens, 1), &device)?;
            let changed =
                Tensor::from_vec(changed, (1, tokens, 1), &device)?.broadcast_as(z.shape())?;
            let weighted = z
                .broadcast_sub(&empty)?
                .broadcast_mul(&weights)?
                .broadcast_add(&empty)?;
            outputs.push(changed.where_cond(&weighted, &z)?);
        }
        Ok((Tensor::cat(&outputs, 1)?, first_pooled))
    }

    /// ComfyUI `gen_empty_tokens`: start, end, then pad to `length`.
    fn empty_tokens(&self, length: usize) -> Vec<ClipToken> {
        let mut tokens = vec![
            ClipToken::Id(self.usage.start_token),
            ClipToken::Id(self.usage.end_token),
        ];
        while tokens.len() < length {
            tokens.push(ClipToken::Id(self.usage.pad_token));
        }
        tokens
    }
}

/// SDXL conditioning: CLIP-L and CLIP-bigG hidden states side by side on the feature axis, cut
/// to the shorter token count (ComfyUI `SDXLClipModel.encode_token_weights`; the pooled output
/// is bigG's).
pub fn concat_sdxl_text(clip_l: &Tensor, clip_g: &Tensor) -> Result<Tensor> {
    let (l_rows, l_tokens, _) = clip_l.dims3()?;
    let (g_rows, g_tokens, _) = clip_g.dims3()?;
    if l_rows != g_rows {
        return Err(ModelError::Input {
            model: MODEL,
            input: "clip_g",
            problem: format!("batch {g_rows} differs from CLIP-L's {l_rows}"),
        });
    }
    let cut = l_tokens.min(g_tokens);
    Ok(Tensor::cat(
        &[&clip_l.narrow(1, 0, cut)?, &clip_g.narrow(1, 0, cut)?],
        D::Minus1,
    )?)
}

/// The additive causal mask `[T, T]`: 0 on and below the diagonal, the dtype's most negative
/// finite value above it (ComfyUI `-torch.finfo(dtype).max`).
fn causal_mask(tokens: usize, dtype: DType, device: &candle_core::Device) -> Result<Tensor> {
    let blocked = match dtype {
        DType::F16 => -65504.0,
        DType::BF16 => f32::from(half::bf16::MIN),
        _ => f32::MIN,
    };
    let values: Vec<f32> = (0..tokens * tokens)
        .map(|i| {
            if i % tokens > i / tokens {
                blocked
            } else {
                0.0
            }
        })
        .collect();
    Ok(Tensor::from_vec(values, (tokens, tokens), device)?.to_dtype(dtype)?)
}

/// Where the rows of a window come from: a run of looked-up ids, or a spliced vector.
enum Source {
    Ids { start: usize, len: usize },
    Row(Tensor),
}

/// Appends looked-up row `index`, extending the current run when it continues it.
fn push_id(sources: &mut Vec<Source>, index: usize) {
    if let Some(Source::Ids { start, len }) = sources.last_mut() {
        if *start + *len == index {
            *len += 1;
            return;
        }
    }
    sources.push(Source::Ids {
        start: index,
        len: 1,
    });
}
