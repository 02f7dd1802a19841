//! T5 v1.1 XXL encoder (the text encoder of SD3 and Flux): configuration presets and its tensors
//! in `transformers` `T5EncoderModel` naming (`encoder.block.N.layer.0.SelfAttention.q.weight`,
//! `shared.weight`), which is also the internal naming.
//!
//! Upstream: <https://huggingface.co/google/t5-v1_1-xxl/blob/main/config.json> (d_model 4096,
//! 64 heads of 64, gated-GELU FFN 10240, 24 layers, 32 relative-position buckets; the relative
//! attention bias lives only in block 0).
//!
//! The tiny preset keeps the vocabulary (32128), all 24 blocks, the gated FFN and the block-0
//! relative bias, with `d_model` 96 (6 heads of 16, FFN 256). 96 rather than 32 because SD3 pads
//! the concatenated CLIP-L + CLIP-G features (32 + 64 wide in the tiny presets) up to the T5
//! width, so a runnable tiny SD3 needs T5 at least that wide. ComfyUI's own T5-XXL test
//! (`wi_1` last dim 4096) cannot hold at tiny size.
//!
//! GGUF encoders (city96's `t5-v1_1-xxl-encoder-gguf`) are converted by llama.cpp, which renames
//! every tensor (`encoder.block.N.layer.0.SelfAttention.q` → `enc.blk.N.attn_q`, `shared` →
//! `token_embd`; gguf-py's `MODEL_TENSOR.ENC_*` names, undone by ComfyUI-GGUF's `T5_SD_MAP`) and
//! records the hyperparameters under `t5encoder.*`.

use candle_core::quantized::gguf_file::Value;

use crate::tensor::{Role, TensorDef, TensorSet};
use crate::Size;

/// llama.cpp's `general.architecture` for an encoder-only T5 (`MODEL_ARCH.T5ENCODER`).
pub(crate) const LLAMA_CPP_ARCHITECTURE: &str = "t5encoder";

/// Per-block tensors: transformers name after `encoder.block.N.` → llama.cpp name after
/// `enc.blk.N.`.
const LLAMA_CPP_BLOCK_NAMES: [(&str, &str); 10] = [
    ("layer.0.SelfAttention.q.weight", "attn_q.weight"),
    ("layer.0.SelfAttention.k.weight", "attn_k.weight"),
    ("layer.0.SelfAttention.v.weight", "attn_v.weight"),
    ("layer.0.SelfAttention.o.weight", "attn_o.weight"),
    (
        "layer.0.SelfAttention.relative_attention_bias.weight",
        "attn_rel_b.weight",
    ),
    ("layer.0.layer_norm.weight", "attn_norm.weight"),
    ("layer.1.DenseReluDense.wi_0.weight", "ffn_gate.weight"),
    ("layer.1.DenseReluDense.wi_1.weight", "ffn_up.weight"),
    ("layer.1.DenseReluDense.wo.weight", "ffn_down.weight"),
    ("layer.1.layer_norm.weight", "ffn_norm.weight"),
];

/// The llama.cpp name of a T5 encoder tensor given in transformers naming.
pub(crate) fn llama_cpp_name(internal: &str) -> Option<String> {
    match internal {
        "shared.weight" => return Some("token_embd.weight".to_string()),
        "encoder.final_layer_norm.weight" => return Some("enc.output_norm.weight".to_string()),
        _ => {}
    }
    let (block, leaf) = internal.strip_prefix("encoder.block.")?.split_once('.')?;
    LLAMA_CPP_BLOCK_NAMES
        .iter()
        .find(|(transformers, _)| *transformers == leaf)
        .map(|(_, llama_cpp)| format!("enc.blk.{block}.{llama_cpp}"))
}

/// `layer_norm_epsilon` of every T5 v1.1 config.
const LAYER_NORM_EPSILON: f32 = 1e-6;
/// `n_positions` of google/t5-v1_1-xxl, llama.cpp's `t5encoder.context_length`.
const CONTEXT_LENGTH: u32 = 512;

/// T5 encoder architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct T5Config {
    /// Model width.
    pub d_model: usize,
    /// Width of one attention head.
    pub d_kv: usize,
    /// Attention heads.
    pub heads: usize,
    /// Gated-GELU inner width.
    pub d_ff: usize,
    /// Encoder blocks.
    pub layers: usize,
    /// Token vocabulary.
    pub vocab: usize,
    /// Relative-position buckets.
    pub relative_attention_num_buckets: usize,
}

impl T5Config {
    /// google/t5-v1_1-xxl.
    pub fn real() -> T5Config {
        T5Config {
            d_model: 4096,
            d_kv: 64,
            heads: 64,
            d_ff: 10240,
            layers: 24,
            vocab: 32128,
            relative_attention_num_buckets: 32,
        }
    }

    /// Real counts and vocabulary, tiny widths.
    pub fn tiny() -> T5Config {
        T5Config {
            d_model: 96,
            d_kv: 16,
            heads: 6,
            d_ff: 256,
            ..T5Config::real()
        }
    }

    /// The preset for `size`.
    pub fn new(size: Size) -> T5Config {
        match size {
            Size::Tiny => T5Config::tiny(),
            Size::Real => T5Config::real(),
        }
    }

    /// `(name, shape)` of every tensor.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        crate::tensor::name_shapes(self.tensors())
    }

    /// Number of learned parameters.
    pub fn parameter_count(&self) -> u64 {
        crate::tensor::parameter_count(&self.tensors())
    }

    /// The canonical tensors under llama.cpp's names, in the same order. Every T5 encoder tensor
    /// has a llama.cpp name; one without would be dropped (the unit tests count them).
    pub(crate) fn llama_cpp_tensors(&self) -> Vec<TensorDef> {
        self.tensors()
            .into_iter()
            .filter_map(|def| llama_cpp_name(&def.name).map(|name| def.renamed(name)))
            .collect()
    }

    /// The hyperparameters llama.cpp's `convert_hf_to_gguf.py` (`T5EncoderModel`) records. The
    /// tokenizer (`tokenizer.ggml.*`, the 32128-entry vocabulary) is left out but for its model
    /// name: no loader Kiln mirrors reads it for T5-XXL.
    pub(crate) fn llama_cpp_metadata(&self) -> Vec<(String, Value)> {
        let arch = LLAMA_CPP_ARCHITECTURE;
        let count = |n: usize| Value::U32(u32::try_from(n).unwrap_or(u32::MAX));
        vec![
            (format!("{arch}.context_length"), Value::U32(CONTEXT_LENGTH)),
            (format!("{arch}.embedding_length"), count(self.d_model)),
            (format!("{arch}.feed_forward_length"), count(self.d_ff)),
            (format!("{arch}.block_count"), count(self.layers)),
            (format!("{arch}.attention.head_count"), count(self.heads)),
            (format!("{arch}.attention.key_length"), count(self.d_kv)),
            (format!("{arch}.attention.value_length"), count(self.d_kv)),
            (
                format!("{arch}.attention.layer_norm_epsilon"),
                Value::F32(LAYER_NORM_EPSILON),
            ),
            (
                format!("{arch}.attention.relative_buckets_count"),
                count(self.relative_attention_num_buckets),
            ),
            (
                format!("{arch}.attention.layer_norm_rms_epsilon"),
                Value::F32(LAYER_NORM_EPSILON),
            ),
            (
                "tokenizer.ggml.model".to_string(),
                Value::String("t5".into()),
            ),
        ]
    }

    /// Canonical tensors.
    pub(crate) fn tensors(&self) -> Vec<TensorDef> {
        let inner = self.heads * self.d_kv;
        let mut set = TensorSet::new("t5xxl");
        set.push(
            "shared.weight",
            vec![self.vocab, self.d_model],
            Role::Embedding,
        );
        for block in 0..self.layers {
            let attention = format!("encoder.block.{block}.layer.0.SelfAttention");
            for projection in ["q", "k", "v"] {
                set.linear(
                    &format!("{attention}.{projection}"),
                    inner,
                    self.d_model,
                    false,
                );
            }
            set.linear(&format!("{attention}.o"), self.d_model, inner, false);
            if block == 0 {
                set.push(
                    format!("{attention}.relative_attention_bias.weight"),
                    vec![self.relative_attention_num_buckets, self.heads],
                    Role::Embedding,
                );
            }
            set.norm(
                &format!("encoder.block.{block}.layer.0.layer_norm"),
                self.d_model,
                false,
            );
            let ffn = format!("encoder.block.{block}.layer.1.DenseReluDense");
            set.linear(&format!("{ffn}.wi_0"), self.d_ff, self.d_model, false);
            set.linear(&format!("{ffn}.wi_1"), self.d_ff, self.d_model, false);
            set.linear(&format!("{ffn}.wo"), self.d_model, self.d_ff, false);
            set.norm(
                &format!("encoder.block.{block}.layer.1.layer_norm"),
                self.d_model,
                false,
            );
        }
        set.norm("encoder.final_layer_norm", self.d_model, false);
        set.into_defs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t5_xxl_encoder_parameter_count_matches_published() {
        // T5EncoderModel.from_pretrained("google/t5-v1_1-xxl").num_parameters() = 4,762,310,656.
        assert_eq!(T5Config::real().parameter_count(), 4_762_310_656);
        // 24 blocks × 9 tensors + relative bias + final norm + shared.
        assert_eq!(T5Config::real().tensors().len(), 219);
    }

    #[test]
    fn every_tensor_has_a_distinct_llama_cpp_name() {
        let config = T5Config::tiny();
        let names: Vec<String> = config
            .llama_cpp_tensors()
            .into_iter()
            .map(|def| def.name)
            .collect();
        assert_eq!(names.len(), config.tensors().len());
        let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len());
        assert_eq!(names[0], "token_embd.weight");
        assert!(names.contains(&"enc.blk.0.attn_rel_b.weight".to_string()));
        assert!(names.contains(&"enc.blk.23.ffn_down.weight".to_string()));
        assert_eq!(
            names.last().map(String::as_str),
            Some("enc.output_norm.weight")
        );
        assert_eq!(
            llama_cpp_name("encoder.block.7.layer.1.DenseReluDense.wi_0.weight").as_deref(),
            Some("enc.blk.7.ffn_gate.weight")
        );
        assert_eq!(llama_cpp_name("encoder.block.7.layer.2.x.weight"), None);
    }
}
