//! The LDM/SGM UNet of SD1.x, SD2.x, SDXL base and SDXL refiner: configuration presets and the
//! enumeration of every tensor in LDM naming (`input_blocks.N.M.…`), with the diffusers name of
//! each (`down_blocks.X.resnets.Y.…`) alongside.
//!
//! Upstream sources mirrored:
//! - structure: `comfy/ldm/modules/diffusionmodules/openaimodel.py` (`UNetModel`, `ResBlock`,
//!   `SpatialTransformer` in `comfy/ldm/modules/attention.py`) in
//!   <https://github.com/comfyanonymous/ComfyUI>;
//! - real configs: `comfy/supported_models.py` (`SD15`, `SD20`, `SDXL`, `SDXLRefiner`) and the
//!   CompVis/SGM yaml files (`v1-inference.yaml`, `v2-inference-v.yaml`, `sd_xl_base.yaml`,
//!   `sd_xl_refiner.yaml`);
//! - diffusers names: `comfy/utils.py::unet_to_diffusers` (and diffusers'
//!   `UNet2DConditionModel`).
//!
//! Tiny presets keep every count (levels, res blocks, transformer depths, attention levels) and
//! every structural switch (conv vs linear `proj_in`, `label_emb`), and scale widths down:
//! `model_channels` 32 (the smallest width GroupNorm's 32 groups divide), context and ADM widths
//! derived from the tiny text encoders so that the relationships detection relies on hold:
//! SD1 context = CLIP-L width, SD2 context = OpenCLIP-H width, SDXL context = CLIP-L + CLIP-G
//! widths with `adm = pooled CLIP-G width + 6·256`, refiner context = CLIP-G width with
//! `adm = pooled CLIP-G width + 5·256` (so `adm − 5·256 == context` holds for refiners only).
//! Heads are not stored in the weights; the tiny presets use head widths of 16.

use crate::clip::ClipConfig;
use crate::tensor::{Role, TensorDef, TensorSet};
use crate::Size;

/// How attention heads are specified (not visible in the weights, needed to run the model).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionHeads {
    /// A fixed number of heads at every level (SD1: 8).
    Count(usize),
    /// A fixed head width; the head count follows the channels (SD2/SDXL: 64).
    Channels(usize),
}

/// What the UNet predicts. SD2's 768-v models predict v; ComfyUI guesses it from the spread of
/// `output_blocks.11.1.transformer_blocks.0.norm1.bias`, so the generator shapes that tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    /// ε-prediction: that bias is written with std 0.02.
    Epsilon,
    /// v-prediction: that bias is written with std 0.2 (ComfyUI's threshold is 0.09).
    V,
}

/// The UNet families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnetVariant {
    /// SD 1.x.
    Sd1,
    /// SD 2.x (512 ε or 768 v).
    Sd2,
    /// SDXL base.
    Sdxl,
    /// SDXL refiner.
    SdxlRefiner,
}

/// Architecture of one UNet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnetConfig {
    /// Latent channels in.
    pub in_channels: usize,
    /// Latent channels out.
    pub out_channels: usize,
    /// Width of level 0.
    pub model_channels: usize,
    /// Width multiplier per level.
    pub channel_mult: Vec<usize>,
    /// Res blocks per level on the way down (one more on the way up).
    pub num_res_blocks: usize,
    /// Transformer blocks per attention layer, per level (0 = no attention at that level).
    pub transformer_depth: Vec<usize>,
    /// Transformer blocks in the middle block.
    pub transformer_depth_middle: usize,
    /// Width of the cross-attention context.
    pub context_dim: usize,
    /// `proj_in`/`proj_out` are Linear (SD2, SDXL) rather than 1×1 convs (SD1).
    pub use_linear_in_transformer: bool,
    /// Width of the `label_emb` input (SDXL's pooled text + size/crop embeddings).
    pub adm_in_channels: Option<usize>,
    /// Attention head layout.
    pub attention_heads: AttentionHeads,
    /// What the model predicts (shapes one bias's spread, see [`Prediction`]).
    pub prediction: Prediction,
}

/// Width of each Fourier size/crop embedding that SDXL concatenates into `adm_in_channels`.
pub const SDXL_SIZE_EMBEDDING_WIDTH: usize = 256;

impl UnetConfig {
    /// The released model's configuration.
    pub fn real(variant: UnetVariant) -> UnetConfig {
        match variant {
            // v1-inference.yaml
            UnetVariant::Sd1 => UnetConfig {
                in_channels: 4,
                out_channels: 4,
                model_channels: 320,
                channel_mult: vec![1, 2, 4, 4],
                num_res_blocks: 2,
                transformer_depth: vec![1, 1, 1, 0],
                transformer_depth_middle: 1,
                context_dim: 768,
                use_linear_in_transformer: false,
                adm_in_channels: None,
                attention_heads: AttentionHeads::Count(8),
                prediction: Prediction::Epsilon,
            },
            // v2-inference(-v).yaml
            UnetVariant::Sd2 => UnetConfig {
                context_dim: 1024,
                use_linear_in_transformer: true,
                attention_heads: AttentionHeads::Channels(64),
                ..UnetConfig::real(UnetVariant::Sd1)
            },
            // sd_xl_base.yaml
            UnetVariant::Sdxl => UnetConfig {
                in_channels: 4,
                out_channels: 4,
                model_channels: 320,
                channel_mult: vec![1, 2, 4],
                num_res_blocks: 2,
                transformer_depth: vec![0, 2, 10],
                transformer_depth_middle: 10,
                context_dim: 2048,
                use_linear_in_transformer: true,
                adm_in_channels: Some(2816),
                attention_heads: AttentionHeads::Channels(64),
                prediction: Prediction::Epsilon,
            },
            // sd_xl_refiner.yaml
            UnetVariant::SdxlRefiner => UnetConfig {
                in_channels: 4,
                out_channels: 4,
                model_channels: 384,
                channel_mult: vec![1, 2, 4, 4],
                num_res_blocks: 2,
                transformer_depth: vec![0, 4, 4, 0],
                transformer_depth_middle: 4,
                context_dim: 1280,
                use_linear_in_transformer: true,
                adm_in_channels: Some(2560),
                attention_heads: AttentionHeads::Channels(64),
                prediction: Prediction::Epsilon,
            },
        }
    }

    /// Same structure, tiny widths (see the module docs for the rules kept).
    pub fn tiny(variant: UnetVariant) -> UnetConfig {
        let clip_l = ClipConfig::tiny(crate::clip::ClipVariant::L);
        let clip_g = ClipConfig::tiny(crate::clip::ClipVariant::G);
        let open_clip_h = ClipConfig::tiny(crate::clip::ClipVariant::H);
        let real = UnetConfig::real(variant);
        let (context_dim, adm_in_channels) = match variant {
            UnetVariant::Sd1 => (clip_l.width, None),
            UnetVariant::Sd2 => (open_clip_h.width, None),
            UnetVariant::Sdxl => (
                clip_l.width + clip_g.width,
                Some(clip_g.projection_dim + 6 * SDXL_SIZE_EMBEDDING_WIDTH),
            ),
            UnetVariant::SdxlRefiner => (
                clip_g.width,
                Some(clip_g.projection_dim + 5 * SDXL_SIZE_EMBEDDING_WIDTH),
            ),
        };
        let attention_heads = match real.attention_heads {
            AttentionHeads::Count(_) => AttentionHeads::Count(2),
            AttentionHeads::Channels(_) => AttentionHeads::Channels(16),
        };
        UnetConfig {
            model_channels: 32,
            context_dim,
            adm_in_channels,
            attention_heads,
            ..real
        }
    }

    /// The preset for `size`.
    pub fn new(variant: UnetVariant, size: Size) -> UnetConfig {
        match size {
            Size::Tiny => UnetConfig::tiny(variant),
            Size::Real => UnetConfig::real(variant),
        }
    }

    /// Width of the timestep (and label) embedding: 4 × `model_channels`.
    pub fn time_embed_dim(&self) -> usize {
        4 * self.model_channels
    }

    /// `(name, shape)` of every tensor in LDM naming, without prefix.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        crate::tensor::name_shapes(self.tensors())
    }

    /// Number of learned parameters.
    pub fn parameter_count(&self) -> u64 {
        crate::tensor::parameter_count(&self.tensors())
    }

    /// Canonical tensors (LDM naming).
    pub(crate) fn tensors(&self) -> Vec<TensorDef> {
        let mut set = TensorSet::new("diffusion_model");
        for entry in self.walk() {
            set.push_distributed(entry.ldm, entry.shape, entry.role, entry.mean, entry.std);
        }
        set.into_defs()
    }

    /// Canonical tensors renamed to diffusers' `UNet2DConditionModel` naming.
    pub(crate) fn diffusers_tensors(&self) -> Vec<TensorDef> {
        let canonical = self.tensors();
        self.walk()
            .into_iter()
            .zip(canonical)
            .map(|(entry, def)| def.renamed(entry.diffusers))
            .collect()
    }

    fn walk(&self) -> Vec<WalkEntry> {
        let mut walker = Walker {
            config: self,
            entries: Vec::new(),
        };
        walker.run();
        walker.entries
    }
}

/// One tensor with both of its names.
struct WalkEntry {
    ldm: String,
    diffusers: String,
    shape: Vec<usize>,
    role: Role,
    mean: f32,
    std: f32,
}

/// `(LDM suffix, diffusers suffix)` of each res-block sub-layer.
const RESNET_NAMES: [(&str, &str); 6] = [
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("emb_layers.1", "time_emb_proj"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("skip_connection", "conv_shortcut"),
];

struct Walker<'a> {
    config: &'a UnetConfig,
    entries: Vec<WalkEntry>,
}

impl Walker<'_> {
    fn push(&mut self, ldm: String, diffusers: String, shape: Vec<usize>, role: Role) {
        let (mean, std) = if role == Role::Norm {
            (1.0, 0.02)
        } else {
            (0.0, 0.02)
        };
        self.entries.push(WalkEntry {
            ldm,
            diffusers,
            shape,
            role,
            mean,
            std,
        });
    }

    fn linear(&mut self, ldm: &str, diffusers: &str, out: usize, input: usize, bias: bool) {
        self.push(
            format!("{ldm}.weight"),
            format!("{diffusers}.weight"),
            vec![out, input],
            Role::Linear,
        );
        if bias {
            self.push(
                format!("{ldm}.bias"),
                format!("{diffusers}.bias"),
                vec![out],
                Role::Bias,
            );
        }
    }

    fn conv(&mut self, ldm: &str, diffusers: &str, out: usize, input: usize, kernel: usize) {
        let shape = vec![out, input, kernel, kernel];
        self.push(
            format!("{ldm}.weight"),
            format!("{diffusers}.weight"),
            shape,
            Role::Conv,
        );
        self.push(
            format!("{ldm}.bias"),
            format!("{diffusers}.bias"),
            vec![out],
            Role::Bias,
        );
    }

    fn norm(&mut self, ldm: &str, diffusers: &str, dim: usize) {
        self.push(
            format!("{ldm}.weight"),
            format!("{diffusers}.weight"),
            vec![dim],
            Role::Norm,
        );
        self.push(
            format!("{ldm}.bias"),
            format!("{diffusers}.bias"),
            vec![dim],
            Role::Bias,
        );
    }

    fn run(&mut self) {
        let config = self.config;
        let model_channels = config.model_channels;
        let time_dim = config.time_embed_dim();
        self.linear(
            "time_embed.0",
            "time_embedding.linear_1",
            time_dim,
            model_channels,
            true,
        );
        self.linear(
            "time_embed.2",
            "time_embedding.linear_2",
            time_dim,
            time_dim,
            true,
        );
        if let Some(adm) = config.adm_in_channels {
            self.linear(
                "label_emb.0.0",
                "add_embedding.linear_1",
                time_dim,
                adm,
                true,
            );
            self.linear(
                "label_emb.0.2",
                "add_embedding.linear_2",
                time_dim,
                time_dim,
                true,
            );
        }
        self.conv(
            "input_blocks.0.0",
            "conv_in",
            model_channels,
            config.in_channels,
            3,
        );

        let levels = config.channel_mult.len();
        let mut channels = model_channels;
        let mut skip_channels = vec![model_channels];
        let mut block = 1;
        for (level, mult) in config.channel_mult.iter().enumerate() {
            let depth = config.transformer_depth.get(level).copied().unwrap_or(0);
            for res in 0..config.num_res_blocks {
                let out = model_channels * mult;
                let diffusers = format!("down_blocks.{level}.resnets.{res}");
                self.resnet(
                    &format!("input_blocks.{block}.0"),
                    &diffusers,
                    channels,
                    out,
                );
                channels = out;
                if depth > 0 {
                    let diffusers = format!("down_blocks.{level}.attentions.{res}");
                    self.transformer(
                        &format!("input_blocks.{block}.1"),
                        &diffusers,
                        channels,
                        depth,
                        false,
                    );
                }
                skip_channels.push(channels);
                block += 1;
            }
            if level + 1 != levels {
                let diffusers = format!("down_blocks.{level}.downsamplers.0.conv");
                self.conv(
                    &format!("input_blocks.{block}.0.op"),
                    &diffusers,
                    channels,
                    channels,
                    3,
                );
                skip_channels.push(channels);
                block += 1;
            }
        }

        self.resnet("middle_block.0", "mid_block.resnets.0", channels, channels);
        if config.transformer_depth_middle > 0 {
            let depth = config.transformer_depth_middle;
            self.transformer(
                "middle_block.1",
                "mid_block.attentions.0",
                channels,
                depth,
                false,
            );
        }
        self.resnet("middle_block.2", "mid_block.resnets.1", channels, channels);

        let mut block = 0;
        let last_output_block = levels * (config.num_res_blocks + 1) - 1;
        for (up_index, level) in (0..levels).rev().enumerate() {
            let mult = config.channel_mult[level];
            let depth = config.transformer_depth.get(level).copied().unwrap_or(0);
            for res in 0..=config.num_res_blocks {
                let skip = skip_channels.pop().unwrap_or(model_channels);
                let out = model_channels * mult;
                let diffusers = format!("up_blocks.{up_index}.resnets.{res}");
                self.resnet(
                    &format!("output_blocks.{block}.0"),
                    &diffusers,
                    channels + skip,
                    out,
                );
                channels = out;
                let mut sub = 1;
                if depth > 0 {
                    let diffusers = format!("up_blocks.{up_index}.attentions.{res}");
                    let shaped_bias = block == last_output_block;
                    self.transformer(
                        &format!("output_blocks.{block}.1"),
                        &diffusers,
                        channels,
                        depth,
                        shaped_bias,
                    );
                    sub = 2;
                }
                if level != 0 && res == config.num_res_blocks {
                    let diffusers = format!("up_blocks.{up_index}.upsamplers.0.conv");
                    self.conv(
                        &format!("output_blocks.{block}.{sub}.conv"),
                        &diffusers,
                        channels,
                        channels,
                        3,
                    );
                }
                block += 1;
            }
        }
        self.norm("out.0", "conv_norm_out", model_channels);
        self.conv("out.2", "conv_out", config.out_channels, model_channels, 3);
    }

    fn resnet(&mut self, ldm: &str, diffusers: &str, input: usize, out: usize) {
        let time_dim = self.config.time_embed_dim();
        let name = |index: usize| {
            let (ldm_suffix, diffusers_suffix) = RESNET_NAMES[index];
            (
                format!("{ldm}.{ldm_suffix}"),
                format!("{diffusers}.{diffusers_suffix}"),
            )
        };
        let (l, d) = name(0);
        self.norm(&l, &d, input);
        let (l, d) = name(1);
        self.conv(&l, &d, out, input, 3);
        let (l, d) = name(2);
        self.linear(&l, &d, out, time_dim, true);
        let (l, d) = name(3);
        self.norm(&l, &d, out);
        let (l, d) = name(4);
        self.conv(&l, &d, out, out, 3);
        if input != out {
            let (l, d) = name(5);
            self.conv(&l, &d, out, input, 1);
        }
    }

    /// A `SpatialTransformer`. `v_prediction_bias` marks the block whose first `norm1.bias`
    /// ComfyUI inspects to tell SD2 v-prediction from ε.
    fn transformer(
        &mut self,
        ldm: &str,
        diffusers: &str,
        channels: usize,
        depth: usize,
        v_prediction_bias: bool,
    ) {
        let context = self.config.context_dim;
        self.norm(
            &format!("{ldm}.norm"),
            &format!("{diffusers}.norm"),
            channels,
        );
        for projection in ["proj_in", "proj_out"] {
            let (l, d) = (
                format!("{ldm}.{projection}"),
                format!("{diffusers}.{projection}"),
            );
            if self.config.use_linear_in_transformer {
                self.linear(&l, &d, channels, channels, true);
            } else {
                self.conv(&l, &d, channels, channels, 1);
            }
        }
        for index in 0..depth {
            let l = format!("{ldm}.transformer_blocks.{index}");
            let d = format!("{diffusers}.transformer_blocks.{index}");
            for attention in ["attn1", "attn2"] {
                let key_width = if attention == "attn1" {
                    channels
                } else {
                    context
                };
                let (la, da) = (format!("{l}.{attention}"), format!("{d}.{attention}"));
                self.linear(
                    &format!("{la}.to_q"),
                    &format!("{da}.to_q"),
                    channels,
                    channels,
                    false,
                );
                self.linear(
                    &format!("{la}.to_k"),
                    &format!("{da}.to_k"),
                    channels,
                    key_width,
                    false,
                );
                self.linear(
                    &format!("{la}.to_v"),
                    &format!("{da}.to_v"),
                    channels,
                    key_width,
                    false,
                );
                self.linear(
                    &format!("{la}.to_out.0"),
                    &format!("{da}.to_out.0"),
                    channels,
                    channels,
                    true,
                );
            }
            // GEGLU: the first projection is twice the 4× inner width.
            let inner = 4 * channels;
            self.linear(
                &format!("{l}.ff.net.0.proj"),
                &format!("{d}.ff.net.0.proj"),
                2 * inner,
                channels,
                true,
            );
            self.linear(
                &format!("{l}.ff.net.2"),
                &format!("{d}.ff.net.2"),
                channels,
                inner,
                true,
            );
            for norm in ["norm1", "norm2", "norm3"] {
                self.norm(&format!("{l}.{norm}"), &format!("{d}.{norm}"), channels);
            }
            if v_prediction_bias && index == 0 && self.config.prediction == Prediction::V {
                let target = format!("{l}.norm1.bias");
                if let Some(entry) = self.entries.iter_mut().find(|entry| entry.ldm == target) {
                    entry.std = 0.2;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd15_unet_parameter_count_matches_published() {
        // 859,520,964: the SD1.5 UNet size diffusers and ComfyUI report.
        assert_eq!(
            UnetConfig::real(UnetVariant::Sd1).parameter_count(),
            859_520_964
        );
    }

    #[test]
    fn sdxl_unet_parameter_count_matches_published() {
        assert_eq!(
            UnetConfig::real(UnetVariant::Sdxl).parameter_count(),
            2_567_463_684
        );
    }

    #[test]
    fn tiny_refiner_keeps_the_adm_rule() {
        let refiner = UnetConfig::tiny(UnetVariant::SdxlRefiner);
        let base = UnetConfig::tiny(UnetVariant::Sdxl);
        let rule =
            |c: &UnetConfig| c.adm_in_channels.map(|adm| adm - 5 * 256) == Some(c.context_dim);
        assert!(rule(&refiner));
        assert!(!rule(&base));
        let real_refiner = UnetConfig::real(UnetVariant::SdxlRefiner);
        assert!(rule(&real_refiner));
        assert!(!rule(&UnetConfig::real(UnetVariant::Sdxl)));
    }

    #[test]
    fn key_counts_match_real_files() {
        // Real key counts of the UNet part of v1-5-pruned-emaonly, v2-1, sd_xl_base_1.0 and
        // sd_xl_refiner_1.0.
        assert_eq!(UnetConfig::real(UnetVariant::Sd1).tensors().len(), 686);
        assert_eq!(UnetConfig::real(UnetVariant::Sd2).tensors().len(), 686);
        assert_eq!(UnetConfig::real(UnetVariant::Sdxl).tensors().len(), 1680);
        assert_eq!(
            UnetConfig::real(UnetVariant::SdxlRefiner).tensors().len(),
            1220
        );
        assert_eq!(UnetConfig::tiny(UnetVariant::Sdxl).tensors().len(), 1680);
    }

    #[test]
    fn diffusers_names_cover_every_tensor_once() {
        let config = UnetConfig::real(UnetVariant::Sdxl);
        let names: std::collections::HashSet<String> = config
            .diffusers_tensors()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names.len(), 1680);
        assert!(names.contains("down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k.weight"));
        assert!(names.contains("up_blocks.0.upsamplers.0.conv.weight"));
        assert!(names.contains("add_embedding.linear_1.weight"));
        assert!(names.contains("mid_block.attentions.0.transformer_blocks.9.ff.net.2.bias"));
    }
}
