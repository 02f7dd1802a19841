//! Synthetic transformers: SD3 MMDiT (SAI and diffusers naming) and Flux (BFL and diffusers
//! naming) with real shapes.

use super::Keys;

/// An SD3-family MMDiT to generate.
#[derive(Debug, Clone)]
pub(crate) struct MmditSpec {
    pub(crate) hidden: u64,
    pub(crate) blocks: u64,
    pub(crate) qk_norm: bool,
    /// Blocks whose x_block has a second self-attention (SD3.5 medium: 0..=12).
    pub(crate) attn2_blocks: u64,
}

impl MmditSpec {
    pub(crate) fn sd3_medium() -> Self {
        Self {
            hidden: 1536,
            blocks: 24,
            qk_norm: false,
            attn2_blocks: 0,
        }
    }

    pub(crate) fn sd35_medium() -> Self {
        Self {
            hidden: 1536,
            blocks: 24,
            qk_norm: true,
            attn2_blocks: 13,
        }
    }

    pub(crate) fn sd35_large() -> Self {
        Self {
            hidden: 2432,
            blocks: 38,
            qk_norm: true,
            attn2_blocks: 0,
        }
    }

    fn head(&self) -> u64 {
        64.min(self.hidden)
    }

    /// SAI naming (`joint_blocks.`).
    pub(crate) fn sai(&self) -> Keys {
        let h = self.hidden;
        let mut k = Keys::default();
        k.add("pos_embed", &[1, 192 * 192, h]);
        k.conv("x_embedder.proj", h, 16, 2);
        k.linear("context_embedder", h, 4096);
        k.linear("t_embedder.mlp.0", h, 256);
        k.linear("t_embedder.mlp.2", h, h);
        k.linear("y_embedder.mlp.0", h, 2048);
        k.linear("y_embedder.mlp.2", h, h);
        for i in 0..self.blocks {
            let last = i + 1 == self.blocks;
            let attn2 = i < self.attn2_blocks;
            let b = format!("joint_blocks.{i}");
            k.linear(
                &format!("{b}.context_block.adaLN_modulation.1"),
                if last { 2 * h } else { 6 * h },
                h,
            );
            k.linear(&format!("{b}.context_block.attn.qkv"), 3 * h, h);
            if !last {
                k.linear(&format!("{b}.context_block.attn.proj"), h, h);
                k.linear(&format!("{b}.context_block.mlp.fc1"), 4 * h, h);
                k.linear(&format!("{b}.context_block.mlp.fc2"), h, 4 * h);
            }
            k.linear(
                &format!("{b}.x_block.adaLN_modulation.1"),
                if attn2 { 9 * h } else { 6 * h },
                h,
            );
            k.linear(&format!("{b}.x_block.attn.qkv"), 3 * h, h);
            k.linear(&format!("{b}.x_block.attn.proj"), h, h);
            k.linear(&format!("{b}.x_block.mlp.fc1"), 4 * h, h);
            k.linear(&format!("{b}.x_block.mlp.fc2"), h, 4 * h);
            if attn2 {
                k.linear(&format!("{b}.x_block.attn2.qkv"), 3 * h, h);
                k.linear(&format!("{b}.x_block.attn2.proj"), h, h);
            }
            if self.qk_norm {
                let mut norms = vec!["context_block.attn", "x_block.attn"];
                if attn2 {
                    norms.push("x_block.attn2");
                }
                for n in norms {
                    k.add(format!("{b}.{n}.ln_q.weight"), &[self.head()]);
                    k.add(format!("{b}.{n}.ln_k.weight"), &[self.head()]);
                }
            }
        }
        k.linear("final_layer.adaLN_modulation.1", 2 * h, h);
        k.linear("final_layer.linear", 64, h);
        k
    }

    /// Diffusers naming (`SD3Transformer2DModel`).
    pub(crate) fn diffusers(&self) -> Keys {
        let h = self.hidden;
        let mut k = Keys::default();
        k.add("pos_embed.pos_embed", &[1, 192 * 192, h]);
        k.conv("pos_embed.proj", h, 16, 2);
        k.linear("context_embedder", h, 4096);
        k.linear("time_text_embed.timestep_embedder.linear_1", h, 256);
        k.linear("time_text_embed.timestep_embedder.linear_2", h, h);
        k.linear("time_text_embed.text_embedder.linear_1", h, 2048);
        k.linear("time_text_embed.text_embedder.linear_2", h, h);
        for i in 0..self.blocks {
            let last = i + 1 == self.blocks;
            let attn2 = i < self.attn2_blocks;
            let b = format!("transformer_blocks.{i}");
            k.linear(
                &format!("{b}.norm1.linear"),
                if attn2 { 9 * h } else { 6 * h },
                h,
            );
            k.linear(
                &format!("{b}.norm1_context.linear"),
                if last { 2 * h } else { 6 * h },
                h,
            );
            for p in [
                "to_q",
                "to_k",
                "to_v",
                "add_q_proj",
                "add_k_proj",
                "add_v_proj",
            ] {
                k.linear(&format!("{b}.attn.{p}"), h, h);
            }
            k.linear(&format!("{b}.attn.to_out.0"), h, h);
            if !last {
                k.linear(&format!("{b}.attn.to_add_out"), h, h);
                k.linear(&format!("{b}.ff_context.net.0.proj"), 4 * h, h);
                k.linear(&format!("{b}.ff_context.net.2"), h, 4 * h);
            }
            k.linear(&format!("{b}.ff.net.0.proj"), 4 * h, h);
            k.linear(&format!("{b}.ff.net.2"), h, 4 * h);
            if attn2 {
                for p in ["to_q", "to_k", "to_v", "to_out.0"] {
                    k.linear(&format!("{b}.attn2.{p}"), h, h);
                }
            }
            if self.qk_norm {
                for n in [
                    "attn.norm_q",
                    "attn.norm_k",
                    "attn.norm_added_q",
                    "attn.norm_added_k",
                ] {
                    k.add(format!("{b}.{n}.weight"), &[self.head()]);
                }
                if attn2 {
                    k.add(format!("{b}.attn2.norm_q.weight"), &[self.head()]);
                    k.add(format!("{b}.attn2.norm_k.weight"), &[self.head()]);
                }
            }
        }
        k.linear("norm_out.linear", 2 * h, h);
        k.linear("proj_out", 64, h);
        k
    }
}

/// A Flux transformer to generate.
#[derive(Debug, Clone)]
pub(crate) struct FluxSpec {
    pub(crate) hidden: u64,
    pub(crate) double: u64,
    pub(crate) single: u64,
    pub(crate) guidance: bool,
    pub(crate) in_features: u64,
}

impl FluxSpec {
    pub(crate) fn dev() -> Self {
        Self {
            hidden: 3072,
            double: 19,
            single: 38,
            guidance: true,
            in_features: 64,
        }
    }

    pub(crate) fn schnell() -> Self {
        Self {
            guidance: false,
            ..Self::dev()
        }
    }

    pub(crate) fn fill() -> Self {
        Self {
            in_features: 384,
            ..Self::dev()
        }
    }

    fn head(&self) -> u64 {
        128.min(self.hidden)
    }

    /// BFL naming.
    pub(crate) fn bfl(&self) -> Keys {
        let h = self.hidden;
        let mut k = Keys::default();
        k.linear("img_in", h, self.in_features);
        k.linear("txt_in", h, 4096);
        k.linear("time_in.in_layer", h, 256);
        k.linear("time_in.out_layer", h, h);
        k.linear("vector_in.in_layer", h, 768);
        k.linear("vector_in.out_layer", h, h);
        if self.guidance {
            k.linear("guidance_in.in_layer", h, 256);
            k.linear("guidance_in.out_layer", h, h);
        }
        for i in 0..self.double {
            for s in ["img", "txt"] {
                let b = format!("double_blocks.{i}.{s}");
                k.linear(&format!("{b}_mod.lin"), 6 * h, h);
                k.linear(&format!("{b}_attn.qkv"), 3 * h, h);
                k.add(format!("{b}_attn.norm.query_norm.scale"), &[self.head()]);
                k.add(format!("{b}_attn.norm.key_norm.scale"), &[self.head()]);
                k.linear(&format!("{b}_attn.proj"), h, h);
                k.linear(&format!("{b}_mlp.0"), 4 * h, h);
                k.linear(&format!("{b}_mlp.2"), h, 4 * h);
            }
        }
        for i in 0..self.single {
            let b = format!("single_blocks.{i}");
            k.linear(&format!("{b}.linear1"), 7 * h, h);
            k.linear(&format!("{b}.linear2"), h, 5 * h);
            k.add(format!("{b}.norm.query_norm.scale"), &[self.head()]);
            k.add(format!("{b}.norm.key_norm.scale"), &[self.head()]);
            k.linear(&format!("{b}.modulation.lin"), 3 * h, h);
        }
        k.linear("final_layer.linear", 64, h);
        k.linear("final_layer.adaLN_modulation.1", 2 * h, h);
        k
    }

    /// Diffusers naming (`FluxTransformer2DModel`).
    pub(crate) fn diffusers(&self) -> Keys {
        let h = self.hidden;
        let mut k = Keys::default();
        k.linear("x_embedder", h, self.in_features);
        k.linear("context_embedder", h, 4096);
        k.linear("time_text_embed.timestep_embedder.linear_1", h, 256);
        k.linear("time_text_embed.timestep_embedder.linear_2", h, h);
        k.linear("time_text_embed.text_embedder.linear_1", h, 768);
        k.linear("time_text_embed.text_embedder.linear_2", h, h);
        if self.guidance {
            k.linear("time_text_embed.guidance_embedder.linear_1", h, 256);
            k.linear("time_text_embed.guidance_embedder.linear_2", h, h);
        }
        for i in 0..self.double {
            let b = format!("transformer_blocks.{i}");
            k.linear(&format!("{b}.norm1.linear"), 6 * h, h);
            k.linear(&format!("{b}.norm1_context.linear"), 6 * h, h);
            for p in [
                "to_q",
                "to_k",
                "to_v",
                "add_q_proj",
                "add_k_proj",
                "add_v_proj",
                "to_out.0",
                "to_add_out",
            ] {
                k.linear(&format!("{b}.attn.{p}"), h, h);
            }
            for n in ["norm_q", "norm_k", "norm_added_q", "norm_added_k"] {
                k.add(format!("{b}.attn.{n}.weight"), &[self.head()]);
            }
            k.linear(&format!("{b}.ff.net.0.proj"), 4 * h, h);
            k.linear(&format!("{b}.ff.net.2"), h, 4 * h);
            k.linear(&format!("{b}.ff_context.net.0.proj"), 4 * h, h);
            k.linear(&format!("{b}.ff_context.net.2"), h, 4 * h);
        }
        for i in 0..self.single {
            let b = format!("single_transformer_blocks.{i}");
            k.linear(&format!("{b}.norm.linear"), 3 * h, h);
            for p in ["to_q", "to_k", "to_v"] {
                k.linear(&format!("{b}.attn.{p}"), h, h);
            }
            k.add(format!("{b}.attn.norm_q.weight"), &[self.head()]);
            k.add(format!("{b}.attn.norm_k.weight"), &[self.head()]);
            k.linear(&format!("{b}.proj_mlp"), 4 * h, h);
            k.linear(&format!("{b}.proj_out"), h, 5 * h);
        }
        k.linear("norm_out.linear", 2 * h, h);
        k.linear("proj_out", 64, h);
        k
    }
}
