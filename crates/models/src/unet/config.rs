//! `UnetConfig`: the architecture of an LDM UNet (SD1, SD2, SDXL, SDXL refiner), as presets that
//! mirror the released models and as read from a checkpoint's weights, the way ComfyUI's
//! `detect_unet_config` reads a state dict.

use crate::error::{ModelError, Result};
use crate::weights::Weights;

const MODEL: &str = "UNet";

/// How attention heads are laid out. Heads are not visible in the weights; ComfyUI takes them
/// from the matched model config (`num_heads` or `num_head_channels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionHeads {
    /// The same number of heads at every width (`num_heads`; SD1: 8).
    Count(usize),
    /// A fixed head width; the head count follows the channels (`num_head_channels`; SD2 and
    /// SDXL: 64).
    Width(usize),
}

impl AttentionHeads {
    /// `(heads, head width)` for a transformer `channels` wide (ComfyUI with `legacy = False`).
    pub fn split(self, channels: usize) -> Result<(usize, usize)> {
        let (heads, width) = match self {
            AttentionHeads::Count(heads) => (heads, channels.checked_div(heads).unwrap_or(0)),
            AttentionHeads::Width(width) => (channels.checked_div(width).unwrap_or(0), width),
        };
        if heads == 0 || width == 0 || heads * width != channels {
            return Err(ModelError::Config {
                model: MODEL,
                reason: format!("{self:?} does not divide a transformer of width {channels}"),
            });
        }
        Ok((heads, width))
    }

    /// The head layout of a UNet of this projection kind and base width.
    ///
    /// Released widths (`model_channels` ≥ 128) get ComfyUI's `supported_models` values: 8 heads
    /// for conv-projection (SD1-family) models, 64-wide heads for linear-projection (SD2, SDXL)
    /// ones. Narrower models are test models (kiln-test-checkpoints' tiny presets: base width
    /// 32), whose heads are 16 wide at level 0: `Count(model_channels / 16)` and `Width(16)`.
    pub fn for_model(projection: TransformerProjection, model_channels: usize) -> Self {
        let released = model_channels >= 128;
        match (projection, released) {
            (TransformerProjection::Conv, true) => AttentionHeads::Count(8),
            (TransformerProjection::Linear, true) => AttentionHeads::Width(64),
            (TransformerProjection::Conv, false) => {
                AttentionHeads::Count((model_channels / TINY_HEAD_WIDTH).max(1))
            }
            (TransformerProjection::Linear, false) => AttentionHeads::Width(TINY_HEAD_WIDTH),
        }
    }
}

/// Head width of narrow test models at level 0.
const TINY_HEAD_WIDTH: usize = 16;

/// How a spatial transformer's `proj_in`/`proj_out` are stored (ComfyUI's
/// `use_linear_in_transformer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransformerProjection {
    /// 1×1 convolutions (SD1).
    Conv,
    /// Linear layers (SD2, SDXL).
    Linear,
}

/// The middle block (ComfyUI's `transformer_depth_middle`: ≥ 0, -1, -2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MiddleBlock {
    /// Res block, spatial transformer of this depth, res block (every released model).
    WithAttention(usize),
    /// One res block, no attention (`-1`).
    ResOnly,
    /// No middle block (`-2`).
    Absent,
}

/// The architecture of one UNet. Lists that ComfyUI flattens per res block stay flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnetConfig {
    /// Latent channels in (`input_blocks.0.0.weight` dim 1).
    pub in_channels: usize,
    /// Channels out (`out.2.weight` dim 0).
    pub out_channels: usize,
    /// Width of level 0; the time embedding is 4× this.
    pub model_channels: usize,
    /// Width multiplier per level.
    pub channel_mult: Vec<usize>,
    /// Res blocks per level on the way down (one more per level on the way up).
    pub num_res_blocks: Vec<usize>,
    /// Transformer depth after each input res block, in block order (SDXL: `[0,0,2,2,10,10]`).
    pub transformer_depth: Vec<usize>,
    /// The middle block.
    pub middle_block: MiddleBlock,
    /// Transformer depth of each output block, in block order (`output_blocks.0` first; this is
    /// ComfyUI's `transformer_depth_output` reversed, as ComfyUI pops it from the end).
    pub transformer_depth_output: Vec<usize>,
    /// Width of the cross-attention context.
    pub context_dim: usize,
    /// `proj_in`/`proj_out` kind.
    pub projection: TransformerProjection,
    /// Width of the `label_emb` (ADM) input: SDXL's pooled text plus size embeddings.
    pub adm_in_channels: Option<usize>,
    /// Attention head layout.
    pub heads: AttentionHeads,
}

impl UnetConfig {
    /// SD 1.x, as `comfy/supported_models.py: SD15` and CompVis `v1-inference.yaml`
    /// (<https://github.com/comfyanonymous/ComfyUI/blob/master/comfy/supported_models.py>).
    pub fn sd1() -> Self {
        UnetConfig {
            in_channels: 4,
            out_channels: 4,
            model_channels: 320,
            channel_mult: vec![1, 2, 4, 4],
            num_res_blocks: vec![2, 2, 2, 2],
            transformer_depth: vec![1, 1, 1, 1, 1, 1, 0, 0],
            middle_block: MiddleBlock::WithAttention(1),
            transformer_depth_output: vec![0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            context_dim: 768,
            projection: TransformerProjection::Conv,
            adm_in_channels: None,
            heads: AttentionHeads::Count(8),
        }
    }

    /// SD 2.x, as `supported_models.py: SD20` and Stability's `v2-inference(-v).yaml`.
    pub fn sd2() -> Self {
        UnetConfig {
            context_dim: 1024,
            projection: TransformerProjection::Linear,
            heads: AttentionHeads::Width(64),
            ..Self::sd1()
        }
    }

    /// SDXL base, as `supported_models.py: SDXL` and SGM's `sd_xl_base.yaml`.
    pub fn sdxl() -> Self {
        UnetConfig {
            in_channels: 4,
            out_channels: 4,
            model_channels: 320,
            channel_mult: vec![1, 2, 4],
            num_res_blocks: vec![2, 2, 2],
            transformer_depth: vec![0, 0, 2, 2, 10, 10],
            middle_block: MiddleBlock::WithAttention(10),
            transformer_depth_output: vec![10, 10, 10, 2, 2, 2, 0, 0, 0],
            context_dim: 2048,
            projection: TransformerProjection::Linear,
            adm_in_channels: Some(2816),
            heads: AttentionHeads::Width(64),
        }
    }

    /// SDXL refiner, as `supported_models.py: SDXLRefiner` and SGM's `sd_xl_refiner.yaml`.
    pub fn sdxl_refiner() -> Self {
        UnetConfig {
            in_channels: 4,
            out_channels: 4,
            model_channels: 384,
            channel_mult: vec![1, 2, 4, 4],
            num_res_blocks: vec![2, 2, 2, 2],
            transformer_depth: vec![0, 0, 4, 4, 4, 4, 0, 0],
            middle_block: MiddleBlock::WithAttention(4),
            transformer_depth_output: vec![0, 0, 0, 4, 4, 4, 4, 4, 4, 0, 0, 0],
            context_dim: 1280,
            projection: TransformerProjection::Linear,
            adm_in_channels: Some(2560),
            heads: AttentionHeads::Width(64),
        }
    }

    /// Width of the time embedding (`4 × model_channels`).
    pub fn time_embed_dim(&self) -> usize {
        4 * self.model_channels
    }

    /// Number of levels (resolutions).
    pub fn levels(&self) -> usize {
        self.channel_mult.len()
    }

    /// Reads the architecture from the weights (ComfyUI's `detect_unet_config`): widths from the
    /// stem, `out.2` and each res block, block counts and transformer depths by counting, the
    /// context width from the first `attn2.to_k`, the projection kind from `proj_in`'s rank and
    /// the ADM width from `label_emb.0.0`. Heads follow [`AttentionHeads::for_model`].
    pub fn from_weights(weights: &Weights) -> Result<Self> {
        let stem = dims(weights, "input_blocks.0.0.weight")?;
        let [model_channels, in_channels, ..] = stem[..] else {
            return Err(config_error(
                "input_blocks.0.0.weight is not a convolution kernel",
            ));
        };
        if model_channels == 0 {
            return Err(config_error(
                "input_blocks.0.0.weight has no output channels",
            ));
        }
        let out_channels = first_dim(weights, "out.2.weight")?;
        let adm_in_channels = if weights.contains("label_emb.0.0.weight") {
            Some(dim_at(weights, "label_emb.0.0.weight", 1)?)
        } else {
            None
        };

        let mut channel_mult = Vec::new();
        let mut num_res_blocks = Vec::new();
        let mut transformer_depth = Vec::new();
        let mut first_transformer: Option<Weights> = None;
        let (mut level_blocks, mut level_mult) = (0usize, 0usize);
        let input_blocks = weights.count_children("input_blocks");
        for index in 1..input_blocks {
            let block = weights.pp("input_blocks").pp(index);
            if block.contains("0.op.weight") {
                channel_mult.push(level_mult);
                num_res_blocks.push(level_blocks);
                (level_blocks, level_mult) = (0, 0);
                continue;
            }
            let out = first_dim(&block, "0.out_layers.3.weight")?;
            if out % model_channels != 0 {
                return Err(config_error(&format!(
                    "input_blocks.{index} is {out} wide, not a multiple of {model_channels}"
                )));
            }
            level_blocks += 1;
            level_mult = out / model_channels;
            let depth = block.pp(1).count_children("transformer_blocks");
            if depth > 0 && first_transformer.is_none() {
                first_transformer = Some(block.pp(1));
            }
            transformer_depth.push(depth);
        }
        channel_mult.push(level_mult);
        num_res_blocks.push(level_blocks);

        let Some(transformer) = first_transformer else {
            return Err(config_error("no input block has a spatial transformer"));
        };
        let context_dim = dim_at(&transformer, "transformer_blocks.0.attn2.to_k.weight", 1)?;
        let projection = match transformer.shape("proj_in.weight")?.rank() {
            2 => TransformerProjection::Linear,
            _ => TransformerProjection::Conv,
        };

        let middle_block = if weights.contains("middle_block.1.proj_in.weight") {
            MiddleBlock::WithAttention(
                weights
                    .pp("middle_block.1")
                    .count_children("transformer_blocks"),
            )
        } else if weights.contains("middle_block.0.in_layers.0.weight") {
            MiddleBlock::ResOnly
        } else {
            MiddleBlock::Absent
        };

        let output_blocks = weights.count_children("output_blocks");
        let transformer_depth_output = (0..output_blocks)
            .map(|index| {
                weights
                    .pp("output_blocks")
                    .pp(index)
                    .pp(1)
                    .count_children("transformer_blocks")
            })
            .collect();

        let config = UnetConfig {
            in_channels,
            out_channels,
            model_channels,
            channel_mult,
            num_res_blocks,
            transformer_depth,
            middle_block,
            transformer_depth_output,
            context_dim,
            projection,
            adm_in_channels,
            heads: AttentionHeads::for_model(projection, model_channels),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that the lists agree with each other and every transformer width splits into
    /// heads.
    pub fn validate(&self) -> Result<()> {
        let levels = self.levels();
        if levels == 0 || self.num_res_blocks.len() != levels {
            return Err(config_error(&format!(
                "{} levels in channel_mult but {} in num_res_blocks",
                levels,
                self.num_res_blocks.len()
            )));
        }
        if self.channel_mult.contains(&0) || self.model_channels == 0 {
            return Err(config_error("a level has zero width"));
        }
        let input_res_blocks: usize = self.num_res_blocks.iter().sum();
        if self.transformer_depth.len() != input_res_blocks {
            return Err(config_error(&format!(
                "{} input transformer depths for {input_res_blocks} res blocks",
                self.transformer_depth.len()
            )));
        }
        let output_blocks = input_res_blocks + levels;
        if self.transformer_depth_output.len() != output_blocks {
            return Err(config_error(&format!(
                "{} output blocks, expected {output_blocks}",
                self.transformer_depth_output.len()
            )));
        }
        for (level, mult) in self.channel_mult.iter().enumerate() {
            let channels = mult * self.model_channels;
            if !channels.is_multiple_of(32) {
                return Err(config_error(&format!(
                    "level {level} is {channels} wide; GroupNorm needs a multiple of 32"
                )));
            }
            self.heads.split(channels)?;
        }
        Ok(())
    }
}

fn config_error(reason: &str) -> ModelError {
    ModelError::Config {
        model: MODEL,
        reason: reason.to_string(),
    }
}

fn dims(weights: &Weights, leaf: &str) -> Result<Vec<usize>> {
    Ok(weights.shape(leaf)?.dims().to_vec())
}

fn dim_at(weights: &Weights, leaf: &str, index: usize) -> Result<usize> {
    let shape = dims(weights, leaf)?;
    shape
        .get(index)
        .copied()
        .ok_or_else(|| ModelError::WeightShape {
            name: weights.path(leaf),
            actual: shape.clone(),
            expected: format!("at least {} dimensions", index + 1),
        })
}

fn first_dim(weights: &Weights, leaf: &str) -> Result<usize> {
    dim_at(weights, leaf, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_consistent() {
        for config in [
            UnetConfig::sd1(),
            UnetConfig::sd2(),
            UnetConfig::sdxl(),
            UnetConfig::sdxl_refiner(),
        ] {
            config.validate().unwrap();
        }
    }

    #[test]
    fn heads_split_like_comfyui() {
        assert_eq!(AttentionHeads::Count(8).split(320).unwrap(), (8, 40));
        assert_eq!(AttentionHeads::Width(64).split(1280).unwrap(), (20, 64));
        assert!(AttentionHeads::Width(64).split(32).is_err());
        assert!(AttentionHeads::Count(3).split(32).is_err());
    }

    #[test]
    fn head_rule_gives_released_and_tiny_layouts() {
        use TransformerProjection::{Conv, Linear};
        assert_eq!(
            AttentionHeads::for_model(Conv, 320),
            AttentionHeads::Count(8)
        );
        assert_eq!(
            AttentionHeads::for_model(Linear, 384),
            AttentionHeads::Width(64)
        );
        assert_eq!(
            AttentionHeads::for_model(Conv, 32),
            AttentionHeads::Count(2)
        );
        assert_eq!(
            AttentionHeads::for_model(Linear, 32),
            AttentionHeads::Width(16)
        );
    }
}
