//! SD3 / SD3.5 MMDiT: configuration presets and every tensor in SAI naming
//! (`joint_blocks.0.x_block.attn.qkv.weight`, the internal naming), plus diffusers'
//! `SD3Transformer2DModel` layout with split q/k/v built from the same values.
//!
//! Upstream sources mirrored:
//! - structure: `comfy/ldm/modules/diffusionmodules/mmdit.py` in ComfyUI: hidden = 64 · depth,
//!   heads = depth, the last context block is `pre_only` (qkv + 2-way modulation only), RMS qk-norm
//!   (`ln_q`/`ln_k`) in SD3.5, MMDiT-X `x_block.attn2` (9-way modulation) in SD3.5 medium's first
//!   13 blocks;
//! - real configs: `transformer/config.json` of stabilityai/stable-diffusion-3-medium-diffusers
//!   (24 layers, pos_embed_max_size 192), stable-diffusion-3.5-large (38 layers, qk_norm
//!   rms_norm) and stable-diffusion-3.5-medium (24 layers, dual_attention_layers 0..=12,
//!   pos_embed_max_size 384); `adm_in_channels` 2048 = pooled CLIP-L 768 + CLIP-G 1280,
//!   context 4096 = T5-XXL width;
//! - diffusers names: `comfy/utils.py::mmdit_to_diffusers`.
//!
//! Tiny presets: depth 2 (hidden 128, 2 heads of 64) for SD3 medium and SD3.5 medium (whose block
//! 0 keeps `attn2`), depth 3 (hidden 192) for SD3.5 large; `pos_embed` 32² (64² for 3.5 medium,
//! which doubles it as the real one does); `adm_in_channels` = tiny CLIP-L + CLIP-G projection
//! widths, context = tiny T5 width.

use crate::clip::{ClipConfig, ClipVariant};
use crate::flux::Mapper;
use crate::t5::T5Config;
use crate::tensor::{Role, TensorDef, TensorSet};
use crate::Size;

/// Width of one MMDiT head (fixed: hidden = 64 · depth).
pub const MMDIT_HEAD_DIM: usize = 64;

/// Which SD3-family model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmditVariant {
    /// SD3 medium (2B).
    Sd3Medium,
    /// SD3.5 medium (2.5B, MMDiT-X).
    Sd35Medium,
    /// SD3.5 large (8B).
    Sd35Large,
}

/// MMDiT architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MmditConfig {
    /// Which model.
    pub variant: MmditVariant,
    /// Joint blocks; also the head count.
    pub depth: usize,
    /// Latent channels in.
    pub in_channels: usize,
    /// Latent channels out.
    pub out_channels: usize,
    /// Patch size.
    pub patch_size: usize,
    /// Pooled text width (`y_embedder`).
    pub adm_in_channels: usize,
    /// Per-token text width (`context_embedder` input).
    pub context_in_dim: usize,
    /// Side of the learned position grid (`pos_embed` holds its square).
    pub pos_embed_max_size: usize,
    /// RMS qk-norm (`ln_q`, `ln_k`).
    pub qk_norm: bool,
    /// Blocks whose `x_block` has a second self-attention (`attn2`).
    pub x_block_self_attn_layers: Vec<usize>,
}

impl MmditConfig {
    /// The released model's configuration.
    pub fn real(variant: MmditVariant) -> MmditConfig {
        let (depth, pos_embed_max_size, qk_norm, x_block_self_attn_layers) = match variant {
            MmditVariant::Sd3Medium => (24, 192, false, vec![]),
            MmditVariant::Sd35Large => (38, 192, true, vec![]),
            MmditVariant::Sd35Medium => (24, 384, true, (0..=12).collect()),
        };
        MmditConfig {
            variant,
            depth,
            in_channels: 16,
            out_channels: 16,
            patch_size: 2,
            adm_in_channels: 2048,
            context_in_dim: 4096,
            pos_embed_max_size,
            qk_norm,
            x_block_self_attn_layers,
        }
    }

    /// Tiny depth and width (see module docs).
    pub fn tiny(variant: MmditVariant) -> MmditConfig {
        let (depth, pos_embed_max_size, x_block_self_attn_layers) = match variant {
            MmditVariant::Sd3Medium => (2, 32, vec![]),
            MmditVariant::Sd35Large => (3, 32, vec![]),
            MmditVariant::Sd35Medium => (2, 64, vec![0]),
        };
        let clip_l = ClipConfig::tiny(ClipVariant::L);
        let clip_g = ClipConfig::tiny(ClipVariant::G);
        MmditConfig {
            depth,
            pos_embed_max_size,
            x_block_self_attn_layers,
            adm_in_channels: clip_l.projection_dim + clip_g.projection_dim,
            context_in_dim: T5Config::tiny().d_model,
            ..MmditConfig::real(variant)
        }
    }

    /// The preset for `size`.
    pub fn new(variant: MmditVariant, size: Size) -> MmditConfig {
        match size {
            Size::Tiny => MmditConfig::tiny(variant),
            Size::Real => MmditConfig::real(variant),
        }
    }

    /// Transformer width.
    pub fn hidden_size(&self) -> usize {
        MMDIT_HEAD_DIM * self.depth
    }

    /// `(name, shape)` of every tensor in SAI naming.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        crate::tensor::name_shapes(self.tensors())
    }

    /// Number of learned parameters.
    pub fn parameter_count(&self) -> u64 {
        crate::tensor::parameter_count(&self.tensors())
    }

    fn attention(&self, set: &mut TensorSet, prefix: &str, pre_only: bool) {
        let hidden = self.hidden_size();
        set.linear(&format!("{prefix}.qkv"), 3 * hidden, hidden, true);
        if !pre_only {
            set.linear(&format!("{prefix}.proj"), hidden, hidden, true);
        }
        if self.qk_norm {
            set.push(
                format!("{prefix}.ln_q.weight"),
                vec![MMDIT_HEAD_DIM],
                Role::Norm,
            );
            set.push(
                format!("{prefix}.ln_k.weight"),
                vec![MMDIT_HEAD_DIM],
                Role::Norm,
            );
        }
    }

    /// Canonical tensors (SAI naming).
    pub(crate) fn tensors(&self) -> Vec<TensorDef> {
        let hidden = self.hidden_size();
        let patch = self.patch_size;
        let mut set = TensorSet::new("diffusion_model");
        set.conv("x_embedder.proj", hidden, self.in_channels, patch);
        let positions = self.pos_embed_max_size * self.pos_embed_max_size;
        // A buffer (fixed sin-cos table), not a parameter: published parameter counts exclude it.
        set.push("pos_embed", vec![1, positions, hidden], Role::Buffer);
        set.linear("t_embedder.mlp.0", hidden, 256, true);
        set.linear("t_embedder.mlp.2", hidden, hidden, true);
        set.linear("y_embedder.mlp.0", hidden, self.adm_in_channels, true);
        set.linear("y_embedder.mlp.2", hidden, hidden, true);
        set.linear("context_embedder", hidden, self.context_in_dim, true);
        for block in 0..self.depth {
            let pre_only = block + 1 == self.depth;
            let context = format!("joint_blocks.{block}.context_block");
            let modulations = if pre_only { 2 } else { 6 };
            set.linear(
                &format!("{context}.adaLN_modulation.1"),
                modulations * hidden,
                hidden,
                true,
            );
            self.attention(&mut set, &format!("{context}.attn"), pre_only);
            if !pre_only {
                set.linear(&format!("{context}.mlp.fc1"), 4 * hidden, hidden, true);
                set.linear(&format!("{context}.mlp.fc2"), hidden, 4 * hidden, true);
            }
            let x = format!("joint_blocks.{block}.x_block");
            let dual = self.x_block_self_attn_layers.contains(&block);
            let modulations = if dual { 9 } else { 6 };
            set.linear(
                &format!("{x}.adaLN_modulation.1"),
                modulations * hidden,
                hidden,
                true,
            );
            self.attention(&mut set, &format!("{x}.attn"), false);
            if dual {
                self.attention(&mut set, &format!("{x}.attn2"), false);
            }
            set.linear(&format!("{x}.mlp.fc1"), 4 * hidden, hidden, true);
            set.linear(&format!("{x}.mlp.fc2"), hidden, 4 * hidden, true);
        }
        set.linear(
            "final_layer.linear",
            patch * patch * self.out_channels,
            hidden,
            true,
        );
        set.linear("final_layer.adaLN_modulation.1", 2 * hidden, hidden, true);
        set.into_defs()
    }

    /// diffusers `SD3Transformer2DModel` layout, values taken from the SAI tensors.
    pub(crate) fn diffusers_tensors(&self) -> Vec<TensorDef> {
        let canonical = self.tensors();
        let hidden = self.hidden_size();
        let mut out = Vec::new();
        let mut map = Mapper {
            canonical: &canonical,
            out: &mut out,
        };
        map.both("x_embedder.proj", "pos_embed.proj");
        map.rename("pos_embed", "pos_embed.pos_embed");
        map.both(
            "t_embedder.mlp.0",
            "time_text_embed.timestep_embedder.linear_1",
        );
        map.both(
            "t_embedder.mlp.2",
            "time_text_embed.timestep_embedder.linear_2",
        );
        map.both("y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1");
        map.both("y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2");
        map.both("context_embedder", "context_embedder");
        for block in 0..self.depth {
            let from = format!("joint_blocks.{block}");
            let to = format!("transformer_blocks.{block}");
            map.split(
                &format!("{from}.x_block.attn.qkv"),
                &format!("{to}.attn"),
                &["to_q", "to_k", "to_v"],
                hidden,
            );
            map.split(
                &format!("{from}.context_block.attn.qkv"),
                &format!("{to}.attn"),
                &["add_q_proj", "add_k_proj", "add_v_proj"],
                hidden,
            );
            map.split(
                &format!("{from}.x_block.attn2.qkv"),
                &format!("{to}.attn2"),
                &["to_q", "to_k", "to_v"],
                hidden,
            );
            let context_modulation = format!("{from}.context_block.adaLN_modulation.1");
            if block + 1 == self.depth {
                map.swapped_halves(&context_modulation, &format!("{to}.norm1_context.linear"));
            } else {
                map.both(&context_modulation, &format!("{to}.norm1_context.linear"));
            }
            for (sai, diffusers) in [
                ("context_block.attn.proj", "attn.to_add_out"),
                ("context_block.mlp.fc1", "ff_context.net.0.proj"),
                ("context_block.mlp.fc2", "ff_context.net.2"),
                ("x_block.adaLN_modulation.1", "norm1.linear"),
                ("x_block.attn.proj", "attn.to_out.0"),
                ("x_block.attn2.proj", "attn2.to_out.0"),
                ("x_block.mlp.fc1", "ff.net.0.proj"),
                ("x_block.mlp.fc2", "ff.net.2"),
            ] {
                map.both(&format!("{from}.{sai}"), &format!("{to}.{diffusers}"));
            }
            for (sai, diffusers) in [
                ("context_block.attn.ln_q.weight", "attn.norm_added_q.weight"),
                ("context_block.attn.ln_k.weight", "attn.norm_added_k.weight"),
                ("x_block.attn.ln_q.weight", "attn.norm_q.weight"),
                ("x_block.attn.ln_k.weight", "attn.norm_k.weight"),
                ("x_block.attn2.ln_q.weight", "attn2.norm_q.weight"),
                ("x_block.attn2.ln_k.weight", "attn2.norm_k.weight"),
            ] {
                map.rename(&format!("{from}.{sai}"), &format!("{to}.{diffusers}"));
            }
        }
        map.swapped_halves("final_layer.adaLN_modulation.1", "norm_out.linear");
        map.both("final_layer.linear", "proj_out");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd3_medium_parameter_count_matches_published() {
        // SD3Transformer2DModel (stable-diffusion-3-medium-diffusers): 2,028,328,000 parameters
        // (the 192² × 1536 `pos_embed` buffer not included).
        assert_eq!(
            MmditConfig::real(MmditVariant::Sd3Medium).parameter_count(),
            2_028_328_000
        );
    }

    #[test]
    fn diffusers_layout_keeps_every_value() {
        for variant in [
            MmditVariant::Sd3Medium,
            MmditVariant::Sd35Medium,
            MmditVariant::Sd35Large,
        ] {
            let config = MmditConfig::tiny(variant);
            let total = |defs: &[TensorDef]| defs.iter().map(TensorDef::numel).sum::<usize>();
            assert_eq!(
                total(&config.tensors()),
                total(&config.diffusers_tensors()),
                "{variant:?}"
            );
        }
    }

    #[test]
    fn medium_35_has_attn2_only_in_listed_blocks() {
        let names: Vec<String> = MmditConfig::real(MmditVariant::Sd35Medium)
            .tensor_shapes()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(names
            .iter()
            .any(|n| n == "joint_blocks.12.x_block.attn2.qkv.weight"));
        assert!(!names
            .iter()
            .any(|n| n == "joint_blocks.13.x_block.attn2.qkv.weight"));
        assert!(names
            .iter()
            .any(|n| n == "joint_blocks.23.context_block.attn.ln_q.weight"));
        assert!(!names
            .iter()
            .any(|n| n == "joint_blocks.23.context_block.attn.proj.weight"));
    }
}
