//! Turning prompt text into conditioning with a [`Clip`]: per encoder, ComfyUI's tokenizer
//! (weights, `embedding:` names from the `embeddings` folder, 77-token windows) and the
//! family's usage of the encoder (layer, final norm, pooled projection), then the family's way
//! of combining encoders (SDXL: CLIP-L and CLIP-G side by side, pooled from CLIP-G).

use kiln_detect::{Architecture, ComponentKind};
use kiln_models::{
    concat_sdxl_text, Attention, ClipConfig, ClipTextEncoder, ClipTokenizer, ClipUsage,
    EmbeddingFolder, TokenChunk, TokenizerConfig, Weights,
};

use candle_core::Tensor;

use crate::error::NodesError;
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

fn usage(architecture: Architecture, kind: ComponentKind) -> ClipUsage {
    match (architecture, kind) {
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
}

impl Encoder {
    fn new(architecture: Architecture, encoder: &TextEncoderWeights) -> Result<Self, NodesError> {
        let weights = Weights::new(encoder.weights.clone());
        let config = ClipConfig::from_weights(&weights, encoder.kind)
            .map_err(model_error("reading the CLIP configuration"))?;
        let heads = head_count(config.hidden_size);
        let width = config.hidden_size;
        let network = ClipTextEncoder::new(
            weights,
            encoder.kind,
            config.with_heads(heads),
            usage(architecture, encoder.kind),
        )
        .map_err(model_error("building the CLIP text encoder"))?
        .with_attention(Attention::from_plan(&encoder.plan));
        Ok(Encoder {
            network,
            tokenizer: ClipTokenizer::new(tokenizer_config(encoder.kind, width)),
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
        self.network
            .encode_chunks(chunks, clip_skip)
            .map_err(model_error("encoding the prompt"))
    }

    /// Which encoder this is.
    pub(crate) fn kind(&self) -> ComponentKind {
        self.network.kind()
    }
}

/// The encoders of `clip`, built over their weights.
pub(crate) fn encoders(clip: &Clip) -> Result<Vec<Encoder>, NodesError> {
    clip.encoders
        .iter()
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
    let encoders = encoders(clip)?;
    let windows = encoders
        .iter()
        .map(|encoder| encoder.tokenize(services, text))
        .collect::<Result<Vec<_>, _>>()?;
    encode_windows(clip, &encoders, &windows)
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
