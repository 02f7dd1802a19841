//! Synthetic text encoders: CLIP in transformers naming, open_clip text towers, T5 encoders.

use kiln_weights::StorageDType;

use super::{tensor_dt, Keys};

/// A CLIP text transformer to generate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClipSpec {
    pub(crate) width: u64,
    pub(crate) layers: u64,
    pub(crate) projection: bool,
}

impl ClipSpec {
    pub(crate) fn l() -> Self {
        Self {
            width: 768,
            layers: 12,
            projection: false,
        }
    }

    pub(crate) fn h() -> Self {
        Self {
            width: 1024,
            layers: 24,
            projection: true,
        }
    }

    pub(crate) fn g() -> Self {
        Self {
            width: 1280,
            layers: 32,
            projection: true,
        }
    }

    /// Transformers naming (`CLIPTextModel`), without `position_ids`.
    pub(crate) fn hf(&self) -> Keys {
        let w = self.width;
        let mut k = Keys::default();
        k.add("text_model.embeddings.token_embedding.weight", &[49408, w]);
        k.add("text_model.embeddings.position_embedding.weight", &[77, w]);
        for i in 0..self.layers {
            let l = format!("text_model.encoder.layers.{i}");
            for p in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                k.linear(&format!("{l}.self_attn.{p}"), w, w);
            }
            k.norm(&format!("{l}.layer_norm1"), w);
            k.norm(&format!("{l}.layer_norm2"), w);
            k.linear(&format!("{l}.mlp.fc1"), 4 * w, w);
            k.linear(&format!("{l}.mlp.fc2"), w, 4 * w);
        }
        k.norm("text_model.final_layer_norm", w);
        if self.projection {
            k.linear_no_bias("text_projection", w, w);
        }
        k
    }

    /// open_clip naming (`transformer.resblocks.`), with `text_projection` stored `[in, out]`.
    pub(crate) fn open_clip(&self) -> Keys {
        let w = self.width;
        let mut k = Keys::default();
        k.add("positional_embedding", &[77, w]);
        k.add("token_embedding.weight", &[49408, w]);
        k.add("text_projection", &[w, w]);
        k.add("logit_scale", &[]);
        k.norm("ln_final", w);
        for i in 0..self.layers {
            let b = format!("transformer.resblocks.{i}");
            k.add(format!("{b}.attn.in_proj_weight"), &[3 * w, w]);
            k.add(format!("{b}.attn.in_proj_bias"), &[3 * w]);
            k.linear(&format!("{b}.attn.out_proj"), w, w);
            k.norm(&format!("{b}.ln_1"), w);
            k.norm(&format!("{b}.ln_2"), w);
            k.linear(&format!("{b}.mlp.c_fc"), 4 * w, w);
            k.linear(&format!("{b}.mlp.c_proj"), w, 4 * w);
        }
        k
    }
}

/// The `position_ids` buffer transformers saves with CLIP, as an i64 tensor.
pub(crate) fn position_ids(prefix: &str) -> kiln_weights::TensorInfo {
    tensor_dt(
        &format!("{prefix}text_model.embeddings.position_ids"),
        &[1, 77],
        StorageDType::I64,
    )
}

/// A T5 v1.1 encoder (gated feed-forward) to generate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct T5Spec {
    pub(crate) d_model: u64,
    pub(crate) d_ff: u64,
    pub(crate) blocks: u64,
    pub(crate) gated: bool,
}

impl T5Spec {
    pub(crate) fn xxl() -> Self {
        Self {
            d_model: 4096,
            d_ff: 10240,
            blocks: 24,
            gated: true,
        }
    }

    pub(crate) fn xl() -> Self {
        Self {
            d_model: 2048,
            d_ff: 5120,
            blocks: 24,
            gated: true,
        }
    }

    /// Transformers naming (`T5EncoderModel`).
    pub(crate) fn hf(&self) -> Keys {
        let d = self.d_model;
        let mut k = Keys::default();
        k.add("shared.weight", &[32128, d]);
        for i in 0..self.blocks {
            let b = format!("encoder.block.{i}.layer");
            for p in ["q", "k", "v", "o"] {
                k.linear_no_bias(&format!("{b}.0.SelfAttention.{p}"), d, d);
            }
            if i == 0 {
                k.add(
                    format!("{b}.0.SelfAttention.relative_attention_bias.weight"),
                    &[32, 64],
                );
            }
            k.add(format!("{b}.0.layer_norm.weight"), &[d]);
            if self.gated {
                k.linear_no_bias(&format!("{b}.1.DenseReluDense.wi_0"), self.d_ff, d);
                k.linear_no_bias(&format!("{b}.1.DenseReluDense.wi_1"), self.d_ff, d);
            } else {
                k.linear_no_bias(&format!("{b}.1.DenseReluDense.wi"), self.d_ff, d);
            }
            k.linear_no_bias(&format!("{b}.1.DenseReluDense.wo"), d, self.d_ff);
            k.add(format!("{b}.1.layer_norm.weight"), &[d]);
        }
        k.add("encoder.final_layer_norm.weight", &[d]);
        k
    }

    /// llama.cpp's GGUF naming (`convert_hf_to_gguf.py`, `T5EncoderModel`), shapes in torch
    /// order as candle reports them.
    pub(crate) fn llama_cpp(&self) -> Keys {
        let d = self.d_model;
        let mut k = Keys::default();
        k.add("token_embd.weight", &[32128, d]);
        for i in 0..self.blocks {
            let b = format!("enc.blk.{i}");
            for p in ["q", "k", "v", "o"] {
                k.linear_no_bias(&format!("{b}.attn_{p}"), d, d);
            }
            if i == 0 {
                k.add(format!("{b}.attn_rel_b.weight"), &[32, 64]);
            }
            k.add(format!("{b}.attn_norm.weight"), &[d]);
            k.linear_no_bias(&format!("{b}.ffn_gate"), self.d_ff, d);
            k.linear_no_bias(&format!("{b}.ffn_up"), self.d_ff, d);
            k.linear_no_bias(&format!("{b}.ffn_down"), d, self.d_ff);
            k.add(format!("{b}.ffn_norm.weight"), &[d]);
        }
        k.add("enc.output_norm.weight", &[d]);
        k
    }
}
