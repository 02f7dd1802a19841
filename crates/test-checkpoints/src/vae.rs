//! The AutoencoderKL VAE of SD1.x/SD2.x/SDXL (4 latent channels) and SD3/Flux (16 latent
//! channels): configuration presets and every tensor in LDM naming (`encoder.down.0.block.0.…`,
//! the internal naming), with diffusers' `AutoencoderKL` names alongside.
//!
//! Upstream sources mirrored:
//! - structure: `comfy/ldm/modules/diffusionmodules/model.py` (`Encoder`, `Decoder`,
//!   `ResnetBlock`, `AttnBlock`) and `comfy/ldm/models/autoencoder.py` in ComfyUI;
//! - 4-channel config: `ddconfig` in CompVis `v1-inference.yaml` (ch 128, ch_mult [1,2,4,4],
//!   2 res blocks, z 4, `quant_conv`/`post_quant_conv` present);
//! - 16-channel config: <https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/vae/config.json>
//!   and SD3's `vae/config.json` (`use_quant_conv: false`, `use_post_quant_conv: false`; BFL's
//!   `ae.safetensors` has 244 tensors, none of them `quant_conv`);
//! - diffusers names: `comfy/diffusers_convert.py` (`vae_conversion_map`, both the legacy
//!   `query/key/value/proj_attn` and the current `to_q/to_k/to_v/to_out.0` attention names).
//!
//! The tiny preset keeps every block and uses base width 32 (levels 32/64/128/128), the smallest
//! that GroupNorm's 32 groups divide.

use crate::tensor::{Role, TensorDef, TensorSet};
use crate::Size;

/// Latent width of the VAE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaeVariant {
    /// 4 latent channels (SD1.x, SD2.x, SDXL).
    Latent4,
    /// 16 latent channels (SD3, Flux).
    Latent16,
}

/// Which diffusers names the mid-block attention uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DiffusersAttentionNames {
    /// `query`, `key`, `value`, `proj_attn` (files converted before diffusers 0.14).
    Legacy,
    /// `to_q`, `to_k`, `to_v`, `to_out.0`.
    Current,
}

/// AutoencoderKL architecture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaeConfig {
    /// Which latent width.
    pub variant: VaeVariant,
    /// Base width.
    pub ch: usize,
    /// Width multiplier per level.
    pub ch_mult: Vec<usize>,
    /// Res blocks per encoder level (decoder levels have one more).
    pub num_res_blocks: usize,
    /// Latent channels.
    pub z_channels: usize,
    /// Whether `quant_conv` / `post_quant_conv` exist.
    pub use_quant_conv: bool,
}

impl VaeConfig {
    /// The released model's configuration.
    pub fn real(variant: VaeVariant) -> VaeConfig {
        let (z_channels, use_quant_conv) = match variant {
            VaeVariant::Latent4 => (4, true),
            VaeVariant::Latent16 => (16, false),
        };
        VaeConfig {
            variant,
            ch: 128,
            ch_mult: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            z_channels,
            use_quant_conv,
        }
    }

    /// Real structure, base width 32.
    pub fn tiny(variant: VaeVariant) -> VaeConfig {
        VaeConfig {
            ch: 32,
            ..VaeConfig::real(variant)
        }
    }

    /// The preset for `size`.
    pub fn new(variant: VaeVariant, size: Size) -> VaeConfig {
        match size {
            Size::Tiny => VaeConfig::tiny(variant),
            Size::Real => VaeConfig::real(variant),
        }
    }

    /// `(name, shape)` of every tensor in LDM naming.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        crate::tensor::name_shapes(self.tensors())
    }

    /// Number of learned parameters.
    pub fn parameter_count(&self) -> u64 {
        crate::tensor::parameter_count(&self.tensors())
    }

    /// Canonical tensors (LDM naming).
    pub(crate) fn tensors(&self) -> Vec<TensorDef> {
        let mut set = TensorSet::new("vae");
        let mut names = Vec::new();
        self.walk(&mut set, &mut names);
        set.into_defs()
    }

    /// Canonical tensors in diffusers naming; attention 1×1 convs become `[c, c]` Linears.
    pub(crate) fn diffusers_tensors(&self, attention: DiffusersAttentionNames) -> Vec<TensorDef> {
        let mut set = TensorSet::new("vae");
        let mut names = Vec::new();
        self.walk(&mut set, &mut names);
        set.into_defs()
            .into_iter()
            .zip(names)
            .map(|(def, diffusers)| {
                let diffusers = rename_attention(&diffusers, attention);
                if def.role == Role::Conv && diffusers.contains(".attentions.0.") {
                    let shape = def.shape.iter().take(2).copied().collect();
                    TensorDef {
                        role: Role::Linear,
                        ..def.reshaped(diffusers, shape)
                    }
                } else {
                    def.renamed(diffusers)
                }
            })
            .collect()
    }

    fn walk(&self, set: &mut TensorSet, names: &mut Vec<String>) {
        let mut walker = VaeWalker { set, names };
        let levels = self.ch_mult.len();
        walker.conv("encoder.conv_in", "encoder.conv_in", self.ch, 3, 3);
        let mut block_in = self.ch;
        for level in 0..levels {
            let block_out = self.ch * self.ch_mult[level];
            for block in 0..self.num_res_blocks {
                let ldm = format!("encoder.down.{level}.block.{block}");
                let diffusers = format!("encoder.down_blocks.{level}.resnets.{block}");
                walker.resnet(&ldm, &diffusers, block_in, block_out);
                block_in = block_out;
            }
            if level + 1 != levels {
                let ldm = format!("encoder.down.{level}.downsample.conv");
                let diffusers = format!("encoder.down_blocks.{level}.downsamplers.0.conv");
                walker.conv(&ldm, &diffusers, block_in, block_in, 3);
            }
        }
        walker.mid("encoder", block_in);
        walker.norm("encoder.norm_out", "encoder.conv_norm_out", block_in);
        walker.conv(
            "encoder.conv_out",
            "encoder.conv_out",
            2 * self.z_channels,
            block_in,
            3,
        );
        if self.use_quant_conv {
            walker.conv(
                "quant_conv",
                "quant_conv",
                2 * self.z_channels,
                2 * self.z_channels,
                1,
            );
            walker.conv(
                "post_quant_conv",
                "post_quant_conv",
                self.z_channels,
                self.z_channels,
                1,
            );
        }

        let mut block_in = self.ch * self.ch_mult[levels - 1];
        walker.conv(
            "decoder.conv_in",
            "decoder.conv_in",
            block_in,
            self.z_channels,
            3,
        );
        walker.mid("decoder", block_in);
        for level in (0..levels).rev() {
            let block_out = self.ch * self.ch_mult[level];
            let up_index = levels - 1 - level;
            for block in 0..=self.num_res_blocks {
                let ldm = format!("decoder.up.{level}.block.{block}");
                let diffusers = format!("decoder.up_blocks.{up_index}.resnets.{block}");
                walker.resnet(&ldm, &diffusers, block_in, block_out);
                block_in = block_out;
            }
            if level != 0 {
                let ldm = format!("decoder.up.{level}.upsample.conv");
                let diffusers = format!("decoder.up_blocks.{up_index}.upsamplers.0.conv");
                walker.conv(&ldm, &diffusers, block_in, block_in, 3);
            }
        }
        walker.norm("decoder.norm_out", "decoder.conv_norm_out", block_in);
        walker.conv("decoder.conv_out", "decoder.conv_out", 3, block_in, 3);
    }
}

/// Attention sub-layer names use a placeholder that [`rename_attention`] resolves.
const ATTENTION_PLACEHOLDERS: [(&str, &str, &str); 4] = [
    ("@q", "to_q", "query"),
    ("@k", "to_k", "key"),
    ("@v", "to_v", "value"),
    ("@out", "to_out.0", "proj_attn"),
];

fn rename_attention(name: &str, attention: DiffusersAttentionNames) -> String {
    let mut name = name.to_string();
    for (placeholder, current, legacy) in ATTENTION_PLACEHOLDERS {
        let replacement = match attention {
            DiffusersAttentionNames::Current => current,
            DiffusersAttentionNames::Legacy => legacy,
        };
        name = name.replace(placeholder, replacement);
    }
    name
}

struct VaeWalker<'a> {
    set: &'a mut TensorSet,
    names: &'a mut Vec<String>,
}

impl VaeWalker<'_> {
    fn conv(&mut self, ldm: &str, diffusers: &str, out: usize, input: usize, kernel: usize) {
        self.set.conv(ldm, out, input, kernel);
        self.names.push(format!("{diffusers}.weight"));
        self.names.push(format!("{diffusers}.bias"));
    }

    fn norm(&mut self, ldm: &str, diffusers: &str, dim: usize) {
        self.set.norm(ldm, dim, true);
        self.names.push(format!("{diffusers}.weight"));
        self.names.push(format!("{diffusers}.bias"));
    }

    fn resnet(&mut self, ldm: &str, diffusers: &str, input: usize, out: usize) {
        self.norm(
            &format!("{ldm}.norm1"),
            &format!("{diffusers}.norm1"),
            input,
        );
        self.conv(
            &format!("{ldm}.conv1"),
            &format!("{diffusers}.conv1"),
            out,
            input,
            3,
        );
        self.norm(&format!("{ldm}.norm2"), &format!("{diffusers}.norm2"), out);
        self.conv(
            &format!("{ldm}.conv2"),
            &format!("{diffusers}.conv2"),
            out,
            out,
            3,
        );
        if input != out {
            self.conv(
                &format!("{ldm}.nin_shortcut"),
                &format!("{diffusers}.conv_shortcut"),
                out,
                input,
                1,
            );
        }
    }

    fn mid(&mut self, side: &str, channels: usize) {
        self.resnet(
            &format!("{side}.mid.block_1"),
            &format!("{side}.mid_block.resnets.0"),
            channels,
            channels,
        );
        let ldm = format!("{side}.mid.attn_1");
        let diffusers = format!("{side}.mid_block.attentions.0");
        self.norm(
            &format!("{ldm}.norm"),
            &format!("{diffusers}.group_norm"),
            channels,
        );
        for (ldm_name, placeholder) in [("q", "@q"), ("k", "@k"), ("v", "@v"), ("proj_out", "@out")]
        {
            self.conv(
                &format!("{ldm}.{ldm_name}"),
                &format!("{diffusers}.{placeholder}"),
                channels,
                channels,
                1,
            );
        }
        self.resnet(
            &format!("{side}.mid.block_2"),
            &format!("{side}.mid_block.resnets.1"),
            channels,
            channels,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_counts_match_real_files() {
        // SD VAE (first_stage_model.* of v1-5): 248 tensors; BFL ae.safetensors: 244.
        assert_eq!(VaeConfig::real(VaeVariant::Latent4).tensors().len(), 248);
        assert_eq!(VaeConfig::real(VaeVariant::Latent16).tensors().len(), 244);
    }

    #[test]
    fn sd_vae_parameter_count_matches_published() {
        // AutoencoderKL of SD1.5 / sd-vae-ft-mse: 83,653,863 parameters.
        assert_eq!(
            VaeConfig::real(VaeVariant::Latent4).parameter_count(),
            83_653_863
        );
    }

    #[test]
    fn diffusers_attention_is_linear() {
        let defs = VaeConfig::tiny(VaeVariant::Latent16)
            .diffusers_tensors(DiffusersAttentionNames::Current);
        let Some(q) = defs
            .iter()
            .find(|d| d.name == "decoder.mid_block.attentions.0.to_q.weight")
        else {
            panic!("missing to_q")
        };
        assert_eq!(q.shape, vec![128, 128]);
        let legacy =
            VaeConfig::tiny(VaeVariant::Latent4).diffusers_tensors(DiffusersAttentionNames::Legacy);
        assert!(legacy
            .iter()
            .any(|d| d.name == "encoder.mid_block.attentions.0.proj_attn.bias"));
        assert!(legacy
            .iter()
            .any(|d| d.name == "decoder.up_blocks.0.upsamplers.0.conv.weight"));
    }
}
