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

use crate::tensor::{Role, TensorDef, TensorSet};
use crate::Size;

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
}
