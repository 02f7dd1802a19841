//! CLIP text encoders (OpenAI CLIP-L, OpenCLIP ViT-H, OpenCLIP ViT-bigG): configuration presets
//! and the tensors in Hugging Face `transformers` naming (the internal naming) and in open_clip
//! naming (as SD2.x and SDXL checkpoints store ViT-H and ViT-bigG).
//!
//! Upstream sources mirrored:
//! - CLIP-L: <https://huggingface.co/openai/clip-vit-large-patch14/blob/main/config.json>
//!   (width 768, 12 layers, 12 heads, MLP 3072, quick-GELU);
//! - ViT-H: <https://github.com/mlfoundations/open_clip/blob/main/src/open_clip/model_configs/ViT-H-14.json>
//!   (width 1024, 24 layers, 16 heads);
//! - ViT-bigG: `ViT-bigG-14.json` in the same folder (width 1280, 32 layers, 20 heads);
//! - open_clip ↔ HF names: `comfy/utils.py::transformers_convert` and
//!   `comfy/diffusers_convert.py::convert_text_enc_state_dict_v20` in ComfyUI.
//!
//! Tiny presets keep the real vocabulary (49408), the 77 positions and every layer count, and use
//! widths 32 (L), 48 (H) and 64 (G) with 16-wide heads, so the three stay distinguishable by
//! width as well as by layer count. The token embedding dominates the size (49408 × width).

use crate::tensor::{find, Role, Run, TensorDef, TensorSet, Values};
use crate::Size;

/// Which CLIP text tower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClipVariant {
    /// OpenAI CLIP ViT-L/14 text model.
    L,
    /// OpenCLIP ViT-H/14 text model (SD2.x).
    H,
    /// OpenCLIP ViT-bigG/14 text model (SDXL, SD3).
    G,
}

/// CLIP text-model architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipConfig {
    /// Which tower this is.
    pub variant: ClipVariant,
    /// Hidden width.
    pub width: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP inner width.
    pub intermediate: usize,
    /// Token vocabulary.
    pub vocab: usize,
    /// Positions (context length).
    pub positions: usize,
    /// Output width of `text_projection`.
    pub projection_dim: usize,
}

/// CLIP's BPE vocabulary size.
pub const CLIP_VOCAB: usize = 49408;
/// CLIP's context length.
pub const CLIP_POSITIONS: usize = 77;
/// `logit_scale` of trained CLIP models: ln(100).
const TRAINED_LOGIT_SCALE: f64 = 4.605_170_185_988_091;

impl ClipConfig {
    /// The released model's configuration.
    pub fn real(variant: ClipVariant) -> ClipConfig {
        let (width, layers, heads) = match variant {
            ClipVariant::L => (768, 12, 12),
            ClipVariant::H => (1024, 24, 16),
            ClipVariant::G => (1280, 32, 20),
        };
        ClipConfig {
            variant,
            width,
            layers,
            heads,
            intermediate: 4 * width,
            vocab: CLIP_VOCAB,
            positions: CLIP_POSITIONS,
            projection_dim: width,
        }
    }

    /// Real vocabulary, positions and layer count; tiny width.
    pub fn tiny(variant: ClipVariant) -> ClipConfig {
        let width = match variant {
            ClipVariant::L => 32,
            ClipVariant::H => 48,
            ClipVariant::G => 64,
        };
        ClipConfig {
            width,
            heads: width / 16,
            intermediate: 4 * width,
            projection_dim: width,
            ..ClipConfig::real(variant)
        }
    }

    /// The preset for `size`.
    pub fn new(variant: ClipVariant, size: Size) -> ClipConfig {
        match size {
            Size::Tiny => ClipConfig::tiny(variant),
            Size::Real => ClipConfig::real(variant),
        }
    }

    /// `transformers` activation name for `config.json`.
    pub fn hidden_act(&self) -> &'static str {
        match self.variant {
            ClipVariant::L => "quick_gelu",
            ClipVariant::H | ClipVariant::G => "gelu",
        }
    }

    /// Internal component name (also the canonical value namespace).
    pub(crate) fn component(&self) -> &'static str {
        match self.variant {
            ClipVariant::L => "clip_l",
            ClipVariant::H => "openclip_h",
            ClipVariant::G => "clip_g",
        }
    }

    /// `(name, shape)` of every tensor in HF naming, `text_projection.weight` included.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        crate::tensor::name_shapes(self.tensors())
    }

    /// Learned parameters of the text model, `text_projection` excluded.
    pub fn parameter_count(&self) -> u64 {
        let defs: Vec<TensorDef> = self
            .tensors()
            .into_iter()
            .filter(|def| def.name != "text_projection.weight")
            .collect();
        crate::tensor::parameter_count(&defs)
    }

    /// Canonical tensors (HF naming, with `text_projection.weight`).
    pub(crate) fn tensors(&self) -> Vec<TensorDef> {
        let width = self.width;
        let mut set = TensorSet::new(self.component());
        set.push(
            "text_model.embeddings.token_embedding.weight",
            vec![self.vocab, width],
            Role::Embedding,
        );
        set.push(
            "text_model.embeddings.position_embedding.weight",
            vec![self.positions, width],
            Role::Embedding,
        );
        for layer in 0..self.layers {
            let prefix = format!("text_model.encoder.layers.{layer}");
            for projection in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                set.linear(
                    &format!("{prefix}.self_attn.{projection}"),
                    width,
                    width,
                    true,
                );
            }
            set.norm(&format!("{prefix}.layer_norm1"), width, true);
            set.linear(&format!("{prefix}.mlp.fc1"), self.intermediate, width, true);
            set.linear(&format!("{prefix}.mlp.fc2"), width, self.intermediate, true);
            set.norm(&format!("{prefix}.layer_norm2"), width, true);
        }
        set.norm("text_model.final_layer_norm", width, true);
        set.linear("text_projection", self.projection_dim, width, false);
        set.into_defs()
    }

    /// The `[1, positions]` int64 `position_ids` buffer older `transformers` versions saved.
    pub(crate) fn position_ids(&self) -> TensorDef {
        TensorDef {
            name: "text_model.embeddings.position_ids".into(),
            shape: vec![1, self.positions],
            role: Role::Index,
            values: Values::Arange,
        }
    }

    /// HF layout: `text_model.*`, optionally `text_projection.weight` and `position_ids`.
    pub(crate) fn hf_tensors(&self, projection: bool, position_ids: bool) -> Vec<TensorDef> {
        let mut defs: Vec<TensorDef> = self
            .tensors()
            .into_iter()
            .filter(|def| projection || def.name != "text_projection.weight")
            .collect();
        if position_ids {
            defs.push(self.position_ids());
        }
        defs
    }

    /// open_clip layout (`token_embedding.weight`, `transformer.resblocks.N.attn.in_proj_weight`,
    /// `text_projection` as `[width, projection]`, `logit_scale`), values shared with the HF
    /// layout: `in_proj` is q, k and v end to end, `text_projection` is the transpose.
    pub(crate) fn open_clip_tensors(&self) -> Vec<TensorDef> {
        let canonical = self.tensors();
        let mut out = Vec::new();
        let mut rename = |from: &str, to: String| {
            if let Some(def) = find(&canonical, from) {
                out.push(def.renamed(to));
            }
        };
        rename(
            "text_model.embeddings.token_embedding.weight",
            "token_embedding.weight".into(),
        );
        rename(
            "text_model.embeddings.position_embedding.weight",
            "positional_embedding".into(),
        );
        rename(
            "text_model.final_layer_norm.weight",
            "ln_final.weight".into(),
        );
        rename("text_model.final_layer_norm.bias", "ln_final.bias".into());
        for layer in 0..self.layers {
            let hf = format!("text_model.encoder.layers.{layer}");
            let oc = format!("transformer.resblocks.{layer}");
            for (from, to) in [
                ("layer_norm1", "ln_1"),
                ("layer_norm2", "ln_2"),
                ("mlp.fc1", "mlp.c_fc"),
                ("mlp.fc2", "mlp.c_proj"),
                ("self_attn.out_proj", "attn.out_proj"),
            ] {
                for end in ["weight", "bias"] {
                    rename(&format!("{hf}.{from}.{end}"), format!("{oc}.{to}.{end}"));
                }
            }
        }
        for layer in 0..self.layers {
            let hf = format!("text_model.encoder.layers.{layer}.self_attn");
            for (end, shape) in [
                ("weight", vec![3 * self.width, self.width]),
                ("bias", vec![3 * self.width]),
            ] {
                let runs: Vec<Run> = ["q_proj", "k_proj", "v_proj"]
                    .iter()
                    .filter_map(|p| find(&canonical, &format!("{hf}.{p}.{end}")))
                    .filter_map(|def| def.whole_run().cloned())
                    .collect();
                let role = if end == "weight" {
                    Role::Linear
                } else {
                    Role::Bias
                };
                out.push(TensorDef {
                    name: format!("transformer.resblocks.{layer}.attn.in_proj_{end}"),
                    shape,
                    role,
                    values: Values::Runs(runs),
                });
            }
        }
        if let Some(run) =
            find(&canonical, "text_projection.weight").and_then(|def| def.whole_run().cloned())
        {
            out.push(TensorDef {
                name: "text_projection".into(),
                shape: vec![self.width, self.projection_dim],
                role: Role::Linear,
                values: Values::Transposed {
                    run,
                    rows: self.projection_dim,
                    cols: self.width,
                },
            });
        }
        out.push(logit_scale("logit_scale"));
        out
    }
}

/// A trained CLIP `logit_scale` scalar under `name`.
pub(crate) fn logit_scale(name: &str) -> TensorDef {
    TensorDef {
        name: name.into(),
        shape: vec![],
        role: Role::Parameter,
        values: Values::Constant(TRAINED_LOGIT_SCALE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_l_parameter_count_matches_published() {
        // CLIPTextModel (openai/clip-vit-large-patch14): 123,060,480; with the 768×768
        // text_projection (CLIPTextModelWithProjection): 123,650,304.
        let config = ClipConfig::real(ClipVariant::L);
        assert_eq!(config.parameter_count(), 123_060_480);
        assert_eq!(
            crate::tensor::parameter_count(&config.tensors()),
            123_650_304
        );
    }

    #[test]
    fn key_counts_match_real_files() {
        // SD1 cond_stage_model: 196 + position_ids; SD2 open_clip H: 294; SDXL open_clip G: 390.
        assert_eq!(
            ClipConfig::real(ClipVariant::L)
                .hf_tensors(false, true)
                .len(),
            197
        );
        assert_eq!(
            ClipConfig::real(ClipVariant::H).open_clip_tensors().len(),
            294
        );
        assert_eq!(
            ClipConfig::real(ClipVariant::G).open_clip_tensors().len(),
            390
        );
    }

    #[test]
    fn open_clip_in_proj_is_q_k_v_end_to_end() {
        let config = ClipConfig::tiny(ClipVariant::H);
        let hf = config.tensors();
        let oc = config.open_clip_tensors();
        let Some(fused) = find(&oc, "transformer.resblocks.3.attn.in_proj_weight") else {
            panic!("missing")
        };
        let fused = fused.float_values(5);
        let width = config.width;
        for (index, name) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
            let Some(part) = find(
                &hf,
                &format!("text_model.encoder.layers.3.self_attn.{name}.weight"),
            ) else {
                panic!("missing")
            };
            assert_eq!(
                &fused[index * width * width..(index + 1) * width * width],
                &part.float_values(5)[..]
            );
        }
    }
}
