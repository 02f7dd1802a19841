//! Turning prompt text into conditioning with a [`Clip`]: per encoder, ComfyUI's tokenizer
//! (weights, `embedding:` names from the `embeddings` folder, 77-token windows) and the
//! family's usage of the encoder (layer, final norm, pooled projection), then the family's way
//! of combining encoders (SDXL: CLIP-L and CLIP-G side by side, pooled from CLIP-G; Flux: T5
//! hidden states, CLIP-L pooled; SD3: CLIP-L | CLIP-G padded to the T5 width, then T5 tokens,
//! pooled CLIP-L | CLIP-G, absent encoders as zeros).

use kiln_detect::{Architecture, ComponentKind};
use std::path::PathBuf;
use std::sync::Arc;

use kiln_models::{
    concat_sdxl_text, t5_tokenizer_search_dirs, Attention, ClipConfig, ClipTextEncoder,
    ClipTokenizer, ClipUsage, EmbeddingFolder, T5Encoder, T5Token, T5Tokenizer, T5TokenizerError,
    TokenChunk, TokenizerConfig, Weights, FLUX_T5_MIN_LENGTH, SD3_T5_MIN_LENGTH, T5_END_TOKEN,
};

use candle_core::{DType, Tensor, D};

use crate::error::NodesError;
use crate::model_cache::ModelKey;
use crate::services::NodeServices;
use crate::types::{Clip, TextEncoderWeights};

/// Released CLIP widths use 64-wide heads; Kiln's tiny test encoders use 16-wide ones.
fn head_count(hidden: usize) -> usize {
    if hidden >= 512 {
        hidden / 64
    } else {
        (hidden / 16).max(1)
    }
}

/// SD3's CLIP-L (`SD3ClipModel.clip_l`): penultimate layer, no final norm, unprojected pooled.
fn sd3_clip_l() -> ClipUsage {
    ClipUsage {
        projected_pooled: false,
        ..ClipUsage::sdxl_clip_l()
    }
}

fn usage(architecture: Architecture, kind: ComponentKind) -> ClipUsage {
    match (architecture, kind) {
        (Architecture::Flux, ComponentKind::ClipL) => ClipUsage::flux_clip_l(),
        (Architecture::Sd3, ComponentKind::ClipL) => sd3_clip_l(),
        (Architecture::Sdxl | Architecture::SdxlRefiner, ComponentKind::ClipL) => {
            ClipUsage::sdxl_clip_l()
        }
        (_, ComponentKind::ClipG) => ClipUsage::sdxl_clip_g(),
        (_, ComponentKind::OpenClipH) => ClipUsage::sd2_clip_h(),
        _ => ClipUsage::sd1_clip_l(),
    }
}

fn tokenizer_config(kind: ComponentKind, width: usize) -> TokenizerConfig {
    let base = match kind {
        ComponentKind::ClipG => TokenizerConfig::clip_g(),
        ComponentKind::OpenClipH => TokenizerConfig::clip_h(),
        _ => TokenizerConfig::clip_l(),
    };
    TokenizerConfig {
        embedding_width: width,
        ..base
    }
}

fn model_error(context: &str) -> impl Fn(kiln_models::ModelError) -> NodesError + '_ {
    move |source| NodesError::Model {
        context: context.to_owned(),
        source: Box::new(source),
    }
}

/// One encoder ready to run.
pub(crate) struct Encoder {
    network: ClipTextEncoder,
    tokenizer: ClipTokenizer,
    /// Its weights, resident only while it encodes.
    weights: Weights,
}

impl Encoder {
    fn new(architecture: Architecture, encoder: &TextEncoderWeights) -> Result<Self, NodesError> {
        let weights = Weights::new(encoder.weights()?);
        let config = ClipConfig::from_weights(&weights, encoder.kind)
            .map_err(model_error("reading the CLIP configuration"))?;
        let heads = head_count(config.hidden_size);
        let width = config.hidden_size;
        let network = ClipTextEncoder::new(
            weights.clone(),
            encoder.kind,
            config.with_heads(heads),
            usage(architecture, encoder.kind),
        )
        .map_err(model_error("building the CLIP text encoder"))?
        .with_attention(Attention::from_plan(&encoder.plan));
        Ok(Encoder {
            network,
            tokenizer: ClipTokenizer::new(tokenizer_config(encoder.kind, width)),
            weights,
        })
    }

    /// The prompt as weighted windows.
    pub(crate) fn tokenize(
        &self,
        services: &NodeServices,
        text: &str,
    ) -> Result<Vec<TokenChunk>, NodesError> {
        let roots = services
            .folders()
            .folder_paths("embeddings")
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        let embeddings = EmbeddingFolder::new(roots);
        let tokenized = self
            .tokenizer
            .tokenize(text, Some(&embeddings))
            .map_err(model_error("tokenizing the prompt"))?;
        for warning in &tokenized.warnings {
            tracing::warn!("{warning}");
        }
        Ok(tokenized.chunks)
    }

    /// Encodes windows: `(cond [1, T, D], pooled [1, P])`.
    pub(crate) fn encode(
        &self,
        chunks: &[TokenChunk],
        clip_skip: Option<i32>,
    ) -> Result<(Tensor, Tensor), NodesError> {
        let _in_use = self.weights.in_use();
        self.network
            .encode_chunks(chunks, clip_skip)
            .map_err(model_error("encoding the prompt"))
    }

    /// Which encoder this is.
    pub(crate) fn kind(&self) -> ComponentKind {
        self.network.kind()
    }
}

/// The CLIP encoders of `clip` (T5-XXL excluded; see [`T5`]), built over their weights.
pub(crate) fn encoders(clip: &Clip) -> Result<Vec<Encoder>, NodesError> {
    clip.encoders
        .iter()
        .filter(|encoder| encoder.kind != ComponentKind::T5xxl)
        .map(|encoder| Encoder::new(clip.architecture, encoder))
        .collect()
}

/// `clip.encode_from_tokens` for the windows of every encoder (in the encoders' order):
/// `(cond, pooled)` as the family combines them.
pub(crate) fn encode_windows(
    clip: &Clip,
    encoders: &[Encoder],
    windows: &[Vec<TokenChunk>],
) -> Result<(Tensor, Tensor), NodesError> {
    let clip_skip = clip
        .stop_at_layer
        .map(|layer| i32::try_from(layer).unwrap_or(-1));
    let mut outputs = Vec::with_capacity(encoders.len());
    for (encoder, chunks) in encoders.iter().zip(windows) {
        outputs.push((encoder.kind(), encoder.encode(chunks, clip_skip)?));
    }
    let find = |kind| outputs.iter().find(|(k, _)| *k == kind).map(|(_, o)| o);
    match (find(ComponentKind::ClipL), find(ComponentKind::ClipG)) {
        (Some((l, _)), Some((g, g_pooled))) if clip.architecture == Architecture::Sdxl => {
            let cond = concat_sdxl_text(l, g).map_err(model_error("joining CLIP-L and CLIP-G"))?;
            Ok((cond, g_pooled.clone()))
        }
        _ => outputs
            .into_iter()
            .next()
            .map(|(_, output)| output)
            .ok_or_else(|| NodesError::input("clip", "the CLIP has no text encoder")),
    }
}

/// `CLIPTextEncode`: every encoder gets the same text.
pub(crate) fn encode_text(
    services: &NodeServices,
    clip: &Clip,
    text: &str,
) -> Result<(Tensor, Tensor), NodesError> {
    match clip.architecture {
        Architecture::Flux => return encode_flux(services, clip, text, text),
        Architecture::Sd3 => {
            let texts = Sd3Texts {
                clip_l: text,
                clip_g: text,
                t5xxl: text,
            };
            return encode_sd3(services, clip, &texts, EmptyPadding::EmptyPrompt);
        }
        _ => {}
    }
    let encoders = encoders(clip)?;
    let windows = encoders
        .iter()
        .map(|encoder| encoder.tokenize(services, text))
        .collect::<Result<Vec<_>, _>>()?;
    encode_windows(clip, &encoders, &windows)
}

/// The T5-XXL encoder of a `CLIP` with its tokenizer (`tokenizer.json`, found in the
/// `text_encoders` folders, next to the weights, in the models folder or the Hugging Face cache;
/// see [`T5Tokenizer::locate`]).
pub(crate) struct T5 {
    network: T5Encoder,
    tokenizer: Arc<T5Tokenizer>,
    /// Its weights, resident only while it encodes.
    weights: Weights,
}

impl T5 {
    /// Where `tokenizer.json` is looked for, in order.
    fn tokenizer_dirs(services: &NodeServices, weights: &TextEncoderWeights) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = services
            .folders()
            .folder_paths("text_encoders")
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        if let Some(parent) = weights.source.parent() {
            if !dirs.iter().any(|d| d == parent) {
                dirs.push(parent.to_path_buf());
            }
        }
        dirs.push(services.folders().models_directory());
        t5_tokenizer_search_dirs(&dirs)
    }

    fn new(services: &NodeServices, weights: &TextEncoderWeights) -> Result<Self, NodesError> {
        let missing = |error: Box<T5TokenizerError>| NodesError::MissingComponent {
            path: weights.source.clone(),
            what: format!("T5-XXL needs its tokenizer: {error}"),
        };
        let dirs = Self::tokenizer_dirs(services, weights);
        let path = T5Tokenizer::locate(&dirs).map_err(|e| missing(Box::new(e)))?;
        let tokenizer = services
            .models()
            .get_or_load(ModelKey::new(&path, "t5 tokenizer"), || {
                T5Tokenizer::from_file(&path).map_err(Box::new)
            })
            .map_err(missing)?;
        let plan = &weights.plan;
        let weights = Weights::new(weights.weights()?);
        let network = T5Encoder::new(weights.clone())
            .map_err(model_error("building the T5 encoder"))?
            .with_attention(Attention::from_plan(plan));
        Ok(T5 {
            network,
            tokenizer,
            weights,
        })
    }

    /// `[1, T, d_model]` hidden states of `text` (ComfyUI's weighted T5 tokenization padded to
    /// `min_length`), or of ComfyUI's empty token list (`</s>` alone) for `None`.
    fn encode(&self, text: Option<&str>, min_length: usize) -> Result<Tensor, NodesError> {
        let _in_use = self.weights.in_use();
        let tokens = match text {
            Some(text) => self
                .tokenizer
                .tokenize(text, min_length)
                .map_err(|error| NodesError::input("t5xxl", error.to_string()))?,
            None => vec![T5Token {
                id: T5_END_TOKEN,
                weight: 1.0,
            }],
        };
        self.network
            .encode_weighted(&tokens)
            .map_err(model_error("encoding the T5 prompt"))
    }
}

/// ComfyUI's widths for encoders an SD3 `CLIP` lacks (`SD3ClipModel.encode_token_weights`):
/// CLIP-L hidden/pooled, CLIP-G pooled, and the T5-XXL width the CLIP features are padded to.
const SD3_CLIP_L_WIDTH: usize = 768;
const SD3_CLIP_G_POOLED_WIDTH: usize = 1280;
const T5XXL_WIDTH: usize = 4096;
/// Tokens of the all-zero conditioning of an SD3 `CLIP` that encoded nothing.
const SD3_EMPTY_TOKENS: usize = 77;

/// `CLIPTextEncodeSD3`'s `empty_padding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EmptyPadding {
    /// `none`: an empty prompt encodes nothing for its encoder.
    None,
    /// `empty_prompt`: an empty prompt is encoded like any other (what `CLIPTextEncode` does).
    EmptyPrompt,
}

/// The prompt of each SD3 encoder.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sd3Texts<'a> {
    /// CLIP-L's prompt.
    pub clip_l: &'a str,
    /// CLIP-G's prompt.
    pub clip_g: &'a str,
    /// T5-XXL's prompt.
    pub t5xxl: &'a str,
}

fn tensor_error(context: &'static str) -> impl Fn(candle_core::Error) -> NodesError {
    move |source| NodesError::Tensor { context, source }
}

fn clip_skip(clip: &Clip) -> Option<i32> {
    clip.stop_at_layer
        .map(|layer| i32::try_from(layer).unwrap_or(-1))
}

/// The T5-XXL hidden states `[1, T, width]` of `text` padded to `min_length` tokens, or `None`
/// when the `CLIP` has no T5. `text: None` encodes ComfyUI's empty token list (just `</s>`).
fn t5_hidden(
    services: &NodeServices,
    clip: &Clip,
    text: Option<&str>,
    min_length: usize,
) -> Result<Option<Tensor>, NodesError> {
    let Some(weights) = clip.encoder(ComponentKind::T5xxl) else {
        return Ok(None);
    };
    let t5 = T5::new(services, weights)?;
    t5.encode(text, min_length).map(Some)
}

/// `FluxClipModel.encode_token_weights`: T5-XXL hidden states as the conditioning, CLIP-L's
/// unprojected pooled output as `pooled_output`.
pub(crate) fn encode_flux(
    services: &NodeServices,
    clip: &Clip,
    clip_l_text: &str,
    t5_text: &str,
) -> Result<(Tensor, Tensor), NodesError> {
    let clip_l = encoders(clip)?
        .into_iter()
        .find(|e| e.kind() == ComponentKind::ClipL)
        .ok_or_else(|| NodesError::input("clip", "a Flux CLIP needs a CLIP-L text encoder"))?;
    let chunks = clip_l.tokenize(services, clip_l_text)?;
    let (_, pooled) = clip_l.encode(&chunks, clip_skip(clip))?;
    let cond = t5_hidden(services, clip, Some(t5_text), FLUX_T5_MIN_LENGTH)?
        .ok_or_else(|| NodesError::input("clip", "a Flux CLIP needs a T5-XXL text encoder"))?;
    Ok((cond, pooled))
}

/// `SD3ClipModel.encode_token_weights` on the prompts `CLIPTextEncodeSD3` builds: CLIP-L and
/// CLIP-G hidden states side by side, padded to the T5 width, followed by the T5 tokens;
/// pooled `CLIP-L | CLIP-G`. Encoders the `CLIP` lacks contribute zeros of ComfyUI's widths.
pub(crate) fn encode_sd3(
    services: &NodeServices,
    clip: &Clip,
    texts: &Sd3Texts<'_>,
    padding: EmptyPadding,
) -> Result<(Tensor, Tensor), NodesError> {
    let skip_empty = |text: &str| padding == EmptyPadding::None && text.is_empty();
    let clip_encoders = encoders(clip)?;
    let find = |kind| clip_encoders.iter().find(|e| e.kind() == kind);
    let (l, g) = (find(ComponentKind::ClipL), find(ComponentKind::ClipG));
    // ComfyUI's token lists: empty when skipped, and the shorter of l/g padded with empty
    // prompts to the other's window count (only counts matter for an absent encoder).
    let window_count = |encoder: Option<&Encoder>, text: &str| -> Result<usize, NodesError> {
        if skip_empty(text) {
            return Ok(0);
        }
        match encoder.or(l).or(g) {
            Some(encoder) => Ok(encoder.tokenize(services, text)?.len()),
            None => Ok(1),
        }
    };
    let l_count = window_count(l, texts.clip_l)?;
    let g_count = window_count(g, texts.clip_g)?;
    let windows = l_count.max(g_count);
    let mut lg_out: Option<Tensor> = None;
    let mut pooled = None;
    let device = match clip.encoders.first() {
        Some(encoder) => encoder.weights()?.device().clone(),
        None => candle_core::Device::Cpu,
    };
    let t5_width = match clip.encoder(ComponentKind::T5xxl) {
        Some(t5) => Weights::new(t5.weights()?)
            .shape("shared.weight")
            .ok()
            .and_then(|shape| shape.dims().get(1).copied())
            .unwrap_or(T5XXL_WIDTH),
        None => T5XXL_WIDTH,
    };
    if windows > 0 {
        let encode = |encoder: &Encoder, text: &str| -> Result<(Tensor, Tensor), NodesError> {
            let mut chunks = if skip_empty(text) {
                Vec::new()
            } else {
                encoder.tokenize(services, text)?
            };
            while chunks.len() < windows {
                chunks.extend(encoder.tokenize(services, "")?);
            }
            encoder.encode(&chunks, clip_skip(clip))
        };
        let l_pooled = match l {
            Some(encoder) => {
                let (out, pooled) = encode(encoder, texts.clip_l)?;
                lg_out = Some(out);
                pooled
            }
            None => Tensor::zeros((1, SD3_CLIP_L_WIDTH), DType::F32, &device)
                .map_err(tensor_error("building CLIP-L's zero pooled output"))?,
        };
        let g_pooled = match g {
            Some(encoder) => {
                let (g_out, pooled) = encode(encoder, texts.clip_g)?;
                lg_out = Some(match lg_out.take() {
                    Some(l_out) => concat_sdxl_text(&l_out, &g_out)
                        .map_err(model_error("joining CLIP-L and CLIP-G"))?,
                    None => g_out
                        .pad_with_zeros(D::Minus1, SD3_CLIP_L_WIDTH, 0)
                        .map_err(tensor_error("padding CLIP-G for the absent CLIP-L"))?,
                });
                pooled
            }
            None => Tensor::zeros((1, SD3_CLIP_G_POOLED_WIDTH), DType::F32, &device)
                .map_err(tensor_error("building CLIP-G's zero pooled output"))?,
        };
        if let Some(out) = lg_out.take() {
            let width = out
                .dim(D::Minus1)
                .map_err(tensor_error("reading the CLIP width"))?;
            lg_out = Some(
                out.pad_with_zeros(D::Minus1, 0, t5_width.saturating_sub(width))
                    .map_err(tensor_error("padding CLIP features to the T5 width"))?,
            );
        }
        pooled = Some(
            Tensor::cat(
                &[
                    &l_pooled
                        .to_device(&device)
                        .map_err(tensor_error("moving CLIP-L's pooled output"))?,
                    &g_pooled
                        .to_device(&device)
                        .map_err(tensor_error("moving CLIP-G's pooled output"))?,
                ],
                D::Minus1,
            )
            .map_err(tensor_error("joining the pooled outputs"))?,
        );
    }
    let t5_text = (!skip_empty(texts.t5xxl)).then_some(texts.t5xxl);
    let t5_out = t5_hidden(services, clip, t5_text, SD3_T5_MIN_LENGTH)?;
    let cond = match (lg_out, t5_out) {
        (Some(lg), Some(t5)) => {
            let t5 = t5
                .to_device(lg.device())
                .map_err(tensor_error("moving T5 states"))?;
            Tensor::cat(&[&lg, &t5], 1).map_err(tensor_error("joining CLIP and T5 tokens"))?
        }
        (Some(lg), None) => lg,
        (None, Some(t5)) => t5,
        (None, None) => Tensor::zeros((1, SD3_EMPTY_TOKENS, t5_width), DType::F32, &device)
            .map_err(tensor_error("building the empty SD3 conditioning"))?,
    };
    let pooled = match pooled {
        Some(pooled) => pooled,
        None => Tensor::zeros(
            (1, SD3_CLIP_L_WIDTH + SD3_CLIP_G_POOLED_WIDTH),
            DType::F32,
            &device,
        )
        .map_err(tensor_error("building the empty SD3 pooled output"))?,
    };
    Ok((cond, pooled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_counts_follow_released_and_tiny_widths() {
        assert_eq!(head_count(768), 12);
        assert_eq!(head_count(1280), 20);
        assert_eq!(head_count(1024), 16);
        assert_eq!(head_count(32), 2);
        assert_eq!(head_count(64), 4);
    }
}
