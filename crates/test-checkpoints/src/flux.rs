//! Flux.1 (dev, schnell, fill): configuration presets and every tensor in BFL naming
//! (`double_blocks.0.img_attn.qkv.weight`, the internal naming), plus the diffusers
//! `FluxTransformer2DModel` layout with its split q/k/v built from the same values.
//!
//! Upstream sources mirrored:
//! - structure: `comfy/ldm/flux/model.py` and `comfy/ldm/flux/layers.py` in ComfyUI (BFL's
//!   `flux/model.py`): hidden 3072, 24 heads, MLP ratio 4, 19 double + 38 single blocks,
//!   `qkv_bias`, RMS qk-norm scales per head width, `guidance_in` only in guidance-distilled dev;
//! - real configs: <https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/transformer/config.json>
//!   (in_channels 64, pooled_projection_dim 768, joint_attention_dim 4096) and FLUX.1-Fill-dev
//!   (in_channels 384 = 16 latent + 16 masked-image + 64 mask channels, ×4 for 2×2 patches;
//!   out 64);
//! - diffusers names: `comfy/utils.py::flux_to_diffusers` (including `swap_scale_shift` on
//!   `norm_out.linear`).
//!
//! The tiny preset keeps all 19 + 38 blocks, the patchified in/out widths (64, fill 384) and the
//! guidance switch, with hidden 64 (2 heads of 32, RoPE axes 4/14/14), `vec_in_dim` = tiny CLIP-L
//! width and `context_in_dim` = tiny T5 width.

use crate::clip::{ClipConfig, ClipVariant};
use crate::t5::T5Config;
use crate::tensor::{find, Role, Run, TensorDef, TensorSet, Values};
use crate::Size;

/// Which Flux.1 model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FluxVariant {
    /// FLUX.1-dev (guidance-distilled: has `guidance_in`).
    Dev,
    /// FLUX.1-schnell (timestep-distilled: no `guidance_in`).
    Schnell,
    /// FLUX.1-Fill-dev (inpainting: 384 input features).
    Fill,
}

/// Flux transformer architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FluxConfig {
    /// Which model.
    pub variant: FluxVariant,
    /// `img_in` input features (latent channels × 2 × 2).
    pub in_channels: usize,
    /// `final_layer.linear` output features.
    pub out_channels: usize,
    /// Transformer width.
    pub hidden_size: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// MLP width = `mlp_ratio` × hidden.
    pub mlp_ratio: usize,
    /// Double-stream blocks.
    pub depth: usize,
    /// Single-stream blocks.
    pub depth_single_blocks: usize,
    /// Pooled text (CLIP-L) width.
    pub vec_in_dim: usize,
    /// Per-token text (T5) width.
    pub context_in_dim: usize,
    /// RoPE axes (sum = head width).
    pub axes_dim: Vec<usize>,
    /// Whether `guidance_in` exists.
    pub guidance_embed: bool,
}

impl FluxConfig {
    /// The released model's configuration.
    pub fn real(variant: FluxVariant) -> FluxConfig {
        FluxConfig {
            variant,
            in_channels: if variant == FluxVariant::Fill {
                384
            } else {
                64
            },
            out_channels: 64,
            hidden_size: 3072,
            num_heads: 24,
            mlp_ratio: 4,
            depth: 19,
            depth_single_blocks: 38,
            vec_in_dim: 768,
            context_in_dim: 4096,
            axes_dim: vec![16, 56, 56],
            guidance_embed: variant != FluxVariant::Schnell,
        }
    }

    /// All blocks, tiny width.
    pub fn tiny(variant: FluxVariant) -> FluxConfig {
        FluxConfig {
            hidden_size: 64,
            num_heads: 2,
            vec_in_dim: ClipConfig::tiny(ClipVariant::L).width,
            context_in_dim: T5Config::tiny().d_model,
            axes_dim: vec![4, 14, 14],
            ..FluxConfig::real(variant)
        }
    }

    /// The preset for `size`.
    pub fn new(variant: FluxVariant, size: Size) -> FluxConfig {
        match size {
            Size::Tiny => FluxConfig::tiny(variant),
            Size::Real => FluxConfig::real(variant),
        }
    }

    /// The same widths with `depth` double-stream and `depth_single_blocks` single-stream
    /// blocks: benchmarks run the real widths at a depth a small machine can hold and time.
    pub fn with_blocks(self, depth: usize, depth_single_blocks: usize) -> FluxConfig {
        FluxConfig {
            depth,
            depth_single_blocks,
            ..self
        }
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// MLP inner width.
    pub fn mlp_hidden(&self) -> usize {
        self.hidden_size * self.mlp_ratio
    }

    /// `(name, shape)` of every tensor in BFL naming.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        crate::tensor::name_shapes(self.tensors())
    }

    /// Number of learned parameters.
    pub fn parameter_count(&self) -> u64 {
        crate::tensor::parameter_count(&self.tensors())
    }

    /// Canonical tensors (BFL naming).
    pub(crate) fn tensors(&self) -> Vec<TensorDef> {
        let hidden = self.hidden_size;
        let mlp = self.mlp_hidden();
        let head = self.head_dim();
        let mut set = TensorSet::new("diffusion_model");
        set.linear("img_in", hidden, self.in_channels, true);
        set.linear("time_in.in_layer", hidden, 256, true);
        set.linear("time_in.out_layer", hidden, hidden, true);
        set.linear("vector_in.in_layer", hidden, self.vec_in_dim, true);
        set.linear("vector_in.out_layer", hidden, hidden, true);
        if self.guidance_embed {
            set.linear("guidance_in.in_layer", hidden, 256, true);
            set.linear("guidance_in.out_layer", hidden, hidden, true);
        }
        set.linear("txt_in", hidden, self.context_in_dim, true);
        for block in 0..self.depth {
            for stream in ["img", "txt"] {
                let prefix = format!("double_blocks.{block}.{stream}");
                set.linear(&format!("{prefix}_mod.lin"), 6 * hidden, hidden, true);
                set.linear(&format!("{prefix}_attn.qkv"), 3 * hidden, hidden, true);
                set.push(
                    format!("{prefix}_attn.norm.query_norm.scale"),
                    vec![head],
                    Role::Norm,
                );
                set.push(
                    format!("{prefix}_attn.norm.key_norm.scale"),
                    vec![head],
                    Role::Norm,
                );
                set.linear(&format!("{prefix}_attn.proj"), hidden, hidden, true);
                set.linear(&format!("{prefix}_mlp.0"), mlp, hidden, true);
                set.linear(&format!("{prefix}_mlp.2"), hidden, mlp, true);
            }
        }
        for block in 0..self.depth_single_blocks {
            let prefix = format!("single_blocks.{block}");
            set.linear(&format!("{prefix}.linear1"), 3 * hidden + mlp, hidden, true);
            set.linear(&format!("{prefix}.linear2"), hidden, hidden + mlp, true);
            set.push(
                format!("{prefix}.norm.query_norm.scale"),
                vec![head],
                Role::Norm,
            );
            set.push(
                format!("{prefix}.norm.key_norm.scale"),
                vec![head],
                Role::Norm,
            );
            set.linear(
                &format!("{prefix}.modulation.lin"),
                3 * hidden,
                hidden,
                true,
            );
        }
        set.linear("final_layer.linear", self.out_channels, hidden, true);
        set.linear("final_layer.adaLN_modulation.1", 2 * hidden, hidden, true);
        set.into_defs()
    }

    /// diffusers `FluxTransformer2DModel` layout, values taken from the BFL tensors.
    pub(crate) fn diffusers_tensors(&self) -> Vec<TensorDef> {
        let canonical = self.tensors();
        let hidden = self.hidden_size;
        let mut out = Vec::new();
        let mut map = Mapper {
            canonical: &canonical,
            out: &mut out,
        };
        map.both("img_in", "x_embedder");
        map.both(
            "time_in.in_layer",
            "time_text_embed.timestep_embedder.linear_1",
        );
        map.both(
            "time_in.out_layer",
            "time_text_embed.timestep_embedder.linear_2",
        );
        if self.guidance_embed {
            map.both(
                "guidance_in.in_layer",
                "time_text_embed.guidance_embedder.linear_1",
            );
            map.both(
                "guidance_in.out_layer",
                "time_text_embed.guidance_embedder.linear_2",
            );
        }
        map.both(
            "vector_in.in_layer",
            "time_text_embed.text_embedder.linear_1",
        );
        map.both(
            "vector_in.out_layer",
            "time_text_embed.text_embedder.linear_2",
        );
        map.both("txt_in", "context_embedder");
        for block in 0..self.depth {
            let from = format!("double_blocks.{block}");
            let to = format!("transformer_blocks.{block}");
            map.split(
                &format!("{from}.img_attn.qkv"),
                &format!("{to}.attn"),
                &["to_q", "to_k", "to_v"],
                hidden,
            );
            map.split(
                &format!("{from}.txt_attn.qkv"),
                &format!("{to}.attn"),
                &["add_q_proj", "add_k_proj", "add_v_proj"],
                hidden,
            );
            for (bfl, diffusers) in [
                ("img_attn.proj", "attn.to_out.0"),
                ("img_mod.lin", "norm1.linear"),
                ("txt_mod.lin", "norm1_context.linear"),
                ("txt_attn.proj", "attn.to_add_out"),
                ("img_mlp.0", "ff.net.0.proj"),
                ("img_mlp.2", "ff.net.2"),
                ("txt_mlp.0", "ff_context.net.0.proj"),
                ("txt_mlp.2", "ff_context.net.2"),
            ] {
                map.both(&format!("{from}.{bfl}"), &format!("{to}.{diffusers}"));
            }
            for (bfl, diffusers) in [
                ("img_attn.norm.query_norm.scale", "attn.norm_q.weight"),
                ("img_attn.norm.key_norm.scale", "attn.norm_k.weight"),
                ("txt_attn.norm.query_norm.scale", "attn.norm_added_q.weight"),
                ("txt_attn.norm.key_norm.scale", "attn.norm_added_k.weight"),
            ] {
                map.rename(&format!("{from}.{bfl}"), &format!("{to}.{diffusers}"));
            }
        }
        for block in 0..self.depth_single_blocks {
            let from = format!("single_blocks.{block}");
            let to = format!("single_transformer_blocks.{block}");
            let parts = [
                ("attn.to_q", 0, hidden),
                ("attn.to_k", hidden, hidden),
                ("attn.to_v", 2 * hidden, hidden),
                ("proj_mlp", 3 * hidden, self.mlp_hidden()),
            ];
            for (name, start, rows) in parts {
                map.rows(
                    &format!("{from}.linear1"),
                    &format!("{to}.{name}"),
                    start,
                    rows,
                );
            }
            map.both(
                &format!("{from}.modulation.lin"),
                &format!("{to}.norm.linear"),
            );
            map.both(&format!("{from}.linear2"), &format!("{to}.proj_out"));
            map.rename(
                &format!("{from}.norm.query_norm.scale"),
                &format!("{to}.attn.norm_q.weight"),
            );
            map.rename(
                &format!("{from}.norm.key_norm.scale"),
                &format!("{to}.attn.norm_k.weight"),
            );
        }
        map.both("final_layer.linear", "proj_out");
        map.swapped_halves("final_layer.adaLN_modulation.1", "norm_out.linear");
        out
    }
}

/// Builds a renamed/sliced layout from canonical tensors (shared by Flux and MMDiT).
pub(crate) struct Mapper<'a> {
    pub(crate) canonical: &'a [TensorDef],
    pub(crate) out: &'a mut Vec<TensorDef>,
}

impl Mapper<'_> {
    /// One tensor under a new name.
    pub(crate) fn rename(&mut self, from: &str, to: &str) {
        if let Some(def) = find(self.canonical, from) {
            self.out.push(def.renamed(to));
        }
    }

    /// `.weight` and `.bias` (when present) under a new prefix.
    pub(crate) fn both(&mut self, from: &str, to: &str) {
        for end in ["weight", "bias"] {
            self.rename(&format!("{from}.{end}"), &format!("{to}.{end}"));
        }
    }

    /// Rows `start .. start + rows` of a Linear (weight and bias) as a new Linear.
    pub(crate) fn rows(&mut self, from: &str, to: &str, start: usize, rows: usize) {
        for end in ["weight", "bias"] {
            let Some(def) = find(self.canonical, &format!("{from}.{end}")) else {
                continue;
            };
            let Some(run) = def.whole_run() else { continue };
            let row_len: usize = def.shape.iter().skip(1).product();
            let mut shape = def.shape.clone();
            shape[0] = rows;
            let run = Run {
                offset: run.offset + start * row_len,
                len: rows * row_len,
                ..run.clone()
            };
            self.out.push(TensorDef {
                name: format!("{to}.{end}"),
                shape,
                role: def.role,
                values: Values::Runs(vec![run]),
            });
        }
    }

    /// A fused `[3·width, …]` projection split into three named Linears.
    pub(crate) fn split(&mut self, from: &str, to_prefix: &str, names: &[&str; 3], width: usize) {
        for (index, name) in names.iter().enumerate() {
            self.rows(from, &format!("{to_prefix}.{name}"), index * width, width);
        }
    }

    /// A modulation Linear with its two output halves swapped (BFL/SAI `shift, scale` versus
    /// diffusers `scale, shift`).
    pub(crate) fn swapped_halves(&mut self, from: &str, to: &str) {
        for end in ["weight", "bias"] {
            let Some(def) = find(self.canonical, &format!("{from}.{end}")) else {
                continue;
            };
            let Some(run) = def.whole_run() else { continue };
            let half = run.len / 2;
            let second = Run {
                offset: run.offset + half,
                len: half,
                ..run.clone()
            };
            let first = Run {
                len: half,
                ..run.clone()
            };
            self.out.push(TensorDef {
                name: format!("{to}.{end}"),
                shape: def.shape.clone(),
                role: def.role,
                values: Values::Runs(vec![second, first]),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_counts_match_real_files() {
        // flux1-dev: 780 tensors under model.diffusion_model. (ComfyUI's fp8 checkpoint dtype log).
        assert_eq!(FluxConfig::real(FluxVariant::Dev).tensors().len(), 780);
        assert_eq!(FluxConfig::real(FluxVariant::Schnell).tensors().len(), 776);
        assert_eq!(FluxConfig::tiny(FluxVariant::Dev).tensors().len(), 780);
    }

    #[test]
    fn flux_dev_parameter_count_matches_published() {
        // FluxTransformer2DModel (FLUX.1-dev): 11,901,408,320 parameters.
        assert_eq!(
            FluxConfig::real(FluxVariant::Dev).parameter_count(),
            11_901_408_320
        );
    }

    #[test]
    fn diffusers_layout_has_every_value_once() {
        let config = FluxConfig::tiny(FluxVariant::Dev);
        let canonical = config.tensors();
        let diffusers = config.diffusers_tensors();
        let total = |defs: &[TensorDef]| defs.iter().map(TensorDef::numel).sum::<usize>();
        assert_eq!(total(&canonical), total(&diffusers));
        let Some(q) = diffusers
            .iter()
            .find(|d| d.name == "single_transformer_blocks.3.attn.to_k.weight")
        else {
            panic!("missing")
        };
        let Some(linear1) = canonical
            .iter()
            .find(|d| d.name == "single_blocks.3.linear1.weight")
        else {
            panic!("missing")
        };
        let h = config.hidden_size;
        assert_eq!(
            &q.float_values(1)[..],
            &linear1.float_values(1)[h * h..2 * h * h]
        );
    }
}
