//! `Unet`: ComfyUI's `openaimodel.UNetModel` for SD1, SD2, SDXL and the SDXL refiner, in LDM
//! naming — time (and label) embedding, input blocks saving skips, middle block, output blocks
//! joining them, output head.

use candle_core::{DType, Tensor};

use super::blocks::{Downsample, ResBlock, Upsample, RES_NORM_EPS, RES_NORM_GROUPS};
use super::conditioning::timestep_embedding;
use super::config::{MiddleBlock, UnetConfig};
use super::expect_shape;
use super::transformer::SpatialTransformer;
use crate::attention::Attention;
use crate::error::{ModelError, Result};
use crate::layers::{Conv2d, GroupNorm, Linear};
use crate::weights::Weights;

const MODEL: &str = "UNet";

/// A res block and the spatial transformer that may follow it.
#[derive(Debug, Clone)]
struct ResStage {
    res: ResBlock,
    transformer: Option<SpatialTransformer>,
}

impl ResStage {
    fn new(
        weights: &Weights,
        config: &UnetConfig,
        channels: usize,
        out_channels: usize,
        depth: usize,
    ) -> Result<Self> {
        let res = ResBlock::new(
            &weights.pp(0),
            channels,
            out_channels,
            config.time_embed_dim(),
        )?;
        let transformer = if depth > 0 {
            let (heads, _) = config.heads.split(out_channels)?;
            Some(SpatialTransformer::new(
                &weights.pp(1),
                out_channels,
                depth,
                config.context_dim,
                heads,
            )?)
        } else {
            None
        };
        Ok(ResStage { res, transformer })
    }

    fn forward(
        &self,
        x: &Tensor,
        emb: &Tensor,
        context: &Tensor,
        attention: &Attention,
    ) -> Result<Tensor> {
        let h = self.res.forward(x, emb)?;
        match &self.transformer {
            Some(transformer) => transformer.forward(&h, context, attention),
            None => Ok(h),
        }
    }
}

/// One entry of `input_blocks`.
#[derive(Debug, Clone)]
enum InputBlock {
    /// `input_blocks.0.0`: the 3×3 stem convolution.
    Stem(Conv2d),
    /// `input_blocks.N.{0,1}`.
    Res(Box<ResStage>),
    /// `input_blocks.N.0.op`.
    Down(Downsample),
}

/// One entry of `output_blocks`: res block on `[h, skip]`, optional transformer, optional
/// upsampler (`output_blocks.N.{1|2}.conv`).
#[derive(Debug, Clone)]
struct OutputBlock {
    stage: ResStage,
    upsample: Option<Upsample>,
}

/// `middle_block.0` and, with attention, `middle_block.{1,2}` (ComfyUI's depth −1 keeps only
/// the first res block).
#[derive(Debug, Clone)]
struct Middle {
    first: ResBlock,
    attention: Option<(SpatialTransformer, ResBlock)>,
}

/// The LDM UNet of SD1, SD2, SDXL and the SDXL refiner. Build it with [`Unet::new`] over a
/// planner-loaded diffusion-model component; it predicts ε or v (the caller's model sampling
/// decides which) for a latent at a timestep.
#[derive(Debug, Clone)]
pub struct Unet {
    config: UnetConfig,
    attention: Attention,
    dtype: DType,
    time_embed_0: Linear,
    time_embed_2: Linear,
    label_emb: Option<(Linear, Linear)>,
    input_blocks: Vec<InputBlock>,
    middle_block: Option<Middle>,
    output_blocks: Vec<OutputBlock>,
    out_0: GroupNorm,
    out_2: Conv2d,
}

impl Unet {
    /// Builds the UNet of `config` over `weights` (LDM naming, prefix stripped) and checks every
    /// weight's shape against the config. Key layout:
    ///
    /// - `time_embed.{0,2}`; `label_emb.0.{0,2}` when `adm_in_channels` is set;
    /// - `input_blocks.0.0` (stem conv); `input_blocks.N.0` res blocks (`in_layers.{0,2}`,
    ///   `emb_layers.1`, `out_layers.{0,3}`, `skip_connection`) with `input_blocks.N.1`
    ///   spatial transformers (`norm`, `proj_in`, `transformer_blocks.M.{norm1,attn1,norm2,
    ///   attn2,norm3,ff.net.0.proj,ff.net.2}`, `proj_out`), and `input_blocks.N.0.op` between
    ///   levels;
    /// - `middle_block.{0,1,2}`;
    /// - `output_blocks.N.0` res blocks, `.1` transformers, `.{1|2}.conv` upsamplers;
    /// - `out.{0,2}`.
    pub fn new(config: &UnetConfig, weights: &Weights, attention: Attention) -> Result<Self> {
        config.validate()?;
        let model_channels = config.model_channels;
        let time_dim = config.time_embed_dim();
        expect_shape(weights, "time_embed.0.weight", &[time_dim, model_channels])?;
        expect_shape(weights, "time_embed.2.weight", &[time_dim, time_dim])?;
        let label_emb = match config.adm_in_channels {
            Some(adm) => {
                expect_shape(weights, "label_emb.0.0.weight", &[time_dim, adm])?;
                expect_shape(weights, "label_emb.0.2.weight", &[time_dim, time_dim])?;
                Some((
                    Linear::new(weights.pp("label_emb.0.0"))?,
                    Linear::new(weights.pp("label_emb.0.2"))?,
                ))
            }
            None => None,
        };

        let blocks = weights.pp("input_blocks");
        expect_shape(
            &blocks,
            "0.0.weight",
            &[model_channels, config.in_channels, 3, 3],
        )?;
        let mut input_blocks = vec![InputBlock::Stem(Conv2d::new(blocks.pp("0.0"), 1, 1)?)];
        let mut skip_channels = vec![model_channels];
        let mut channels = model_channels;
        let mut depths = config.transformer_depth.iter();
        for (level, (&mult, &res_blocks)) in config
            .channel_mult
            .iter()
            .zip(&config.num_res_blocks)
            .enumerate()
        {
            for _ in 0..res_blocks {
                let out = mult * model_channels;
                let depth = depths.next().copied().unwrap_or(0);
                let weights = blocks.pp(input_blocks.len());
                input_blocks.push(InputBlock::Res(Box::new(ResStage::new(
                    &weights, config, channels, out, depth,
                )?)));
                channels = out;
                skip_channels.push(channels);
            }
            if level + 1 != config.levels() {
                let weights = blocks.pp(input_blocks.len()).pp(0);
                input_blocks.push(InputBlock::Down(Downsample::new(&weights, channels)?));
                skip_channels.push(channels);
            }
        }

        let middle = weights.pp("middle_block");
        let middle_block = match config.middle_block {
            MiddleBlock::Absent => None,
            MiddleBlock::ResOnly => Some(Middle {
                first: ResBlock::new(&middle.pp(0), channels, channels, time_dim)?,
                attention: None,
            }),
            MiddleBlock::WithAttention(depth) => {
                let (heads, _) = config.heads.split(channels)?;
                Some(Middle {
                    first: ResBlock::new(&middle.pp(0), channels, channels, time_dim)?,
                    attention: Some((
                        SpatialTransformer::new(
                            &middle.pp(1),
                            channels,
                            depth,
                            config.context_dim,
                            heads,
                        )?,
                        ResBlock::new(&middle.pp(2), channels, channels, time_dim)?,
                    )),
                })
            }
        };

        let blocks = weights.pp("output_blocks");
        let mut output_blocks = Vec::new();
        let mut depths = config.transformer_depth_output.iter();
        for level in (0..config.levels()).rev() {
            let out = config.channel_mult[level] * model_channels;
            let res_blocks = config.num_res_blocks[level];
            for index in 0..=res_blocks {
                let Some(skip) = skip_channels.pop() else {
                    return Err(ModelError::Config {
                        model: MODEL,
                        reason: "more output blocks than skip connections".to_string(),
                    });
                };
                let depth = depths.next().copied().unwrap_or(0);
                let weights = blocks.pp(output_blocks.len());
                let stage = ResStage::new(&weights, config, channels + skip, out, depth)?;
                channels = out;
                let upsample = if level != 0 && index == res_blocks {
                    let position = if depth > 0 { 2 } else { 1 };
                    Some(Upsample::new(&weights.pp(position), channels)?)
                } else {
                    None
                };
                output_blocks.push(OutputBlock { stage, upsample });
            }
        }

        expect_shape(weights, "out.0.weight", &[channels])?;
        expect_shape(
            weights,
            "out.2.weight",
            &[config.out_channels, model_channels, 3, 3],
        )?;
        Ok(Unet {
            config: config.clone(),
            attention,
            dtype: weights.dtype(),
            time_embed_0: Linear::new(weights.pp("time_embed.0"))?,
            time_embed_2: Linear::new(weights.pp("time_embed.2"))?,
            label_emb,
            input_blocks,
            middle_block,
            output_blocks,
            out_0: GroupNorm::new(weights.pp("out.0"), RES_NORM_GROUPS, RES_NORM_EPS)?,
            out_2: Conv2d::new(weights.pp("out.2"), 1, 1)?,
        })
    }

    /// Reads the config from `weights` ([`UnetConfig::from_weights`]) and builds the model.
    pub fn from_weights(weights: &Weights, attention: Attention) -> Result<Self> {
        Self::new(&UnetConfig::from_weights(weights)?, weights, attention)
    }

    /// The architecture.
    pub fn config(&self) -> &UnetConfig {
        &self.config
    }

    /// The dtype activations are computed in (the plan's compute dtype).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The attention kernel and precision in use (from the plan, not the architecture).
    pub fn attention(&self) -> &Attention {
        &self.attention
    }

    /// The model output (ε or v) for latents `x` `[B, C, H, W]` at `timesteps` `[B]`, attending
    /// to `context` `[B, T, context_dim]`, with the ADM vector `y` `[B, adm_in_channels]` for
    /// SDXL models (and only for them). Any `H`, `W` work: upsamplers resize to the skip
    /// connections' sizes. Inputs are cast to the compute dtype; the output is in it too.
    pub fn forward(
        &self,
        x: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        y: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.check_inputs(x, timesteps, context, y)?;
        let dtype = self.dtype;
        let x = x.to_dtype(dtype)?;
        let context = context.to_dtype(dtype)?;

        let steps = timesteps.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let t_emb =
            timestep_embedding(&steps, self.config.model_channels, x.device())?.to_dtype(dtype)?;
        let mut emb = self
            .time_embed_2
            .forward(&self.time_embed_0.forward(&t_emb)?.silu()?)?;
        if let (Some((first, second)), Some(y)) = (&self.label_emb, y) {
            let label = second.forward(&first.forward(&y.to_dtype(dtype)?)?.silu()?)?;
            emb = (emb + label)?;
        }

        let attention = &self.attention;
        let mut skips = Vec::with_capacity(self.input_blocks.len());
        let mut h = x;
        for block in &self.input_blocks {
            h = match block {
                InputBlock::Stem(conv) => conv.forward(&h)?,
                InputBlock::Res(stage) => stage.forward(&h, &emb, &context, attention)?,
                InputBlock::Down(down) => down.forward(&h)?,
            };
            skips.push(h.clone());
        }
        if let Some(middle) = &self.middle_block {
            h = middle.first.forward(&h, &emb)?;
            if let Some((transformer, last)) = &middle.attention {
                h = transformer.forward(&h, &context, attention)?;
                h = last.forward(&h, &emb)?;
            }
        }
        for block in &self.output_blocks {
            let Some(skip) = skips.pop() else {
                return Err(ModelError::Config {
                    model: MODEL,
                    reason: "more output blocks than skip connections".to_string(),
                });
            };
            h = Tensor::cat(&[&h, &skip], 1)?;
            h = block.stage.forward(&h, &emb, &context, attention)?;
            if let Some(upsample) = &block.upsample {
                let target = match skips.last() {
                    Some(next) => {
                        let (_, _, height, width) = next.dims4()?;
                        Some((height, width))
                    }
                    None => None,
                };
                h = upsample.forward(&h, target)?;
            }
        }
        self.out_2.forward(&self.out_0.forward_silu(&h)?)
    }

    /// Checks every input's shape against the config before any work is done.
    fn check_inputs(
        &self,
        x: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        y: Option<&Tensor>,
    ) -> Result<()> {
        let input = |input: &'static str, problem: String| ModelError::Input {
            model: MODEL,
            input,
            problem,
        };
        let [batch, channels, height, width] = x.dims() else {
            return Err(input(
                "x",
                format!(
                    "has shape {:?}, expected [batch, channels, height, width]",
                    x.dims()
                ),
            ));
        };
        let batch = *batch;
        if *channels != self.config.in_channels {
            return Err(input(
                "x",
                format!(
                    "has {channels} channels, the model takes {}",
                    self.config.in_channels
                ),
            ));
        }
        if batch == 0 || *height == 0 || *width == 0 {
            return Err(input("x", format!("is empty: {:?}", x.dims())));
        }
        if !x.dtype().is_float() {
            return Err(input("x", format!("has dtype {:?}", x.dtype())));
        }
        if timesteps.dims() != [batch] {
            return Err(input(
                "timesteps",
                format!("has shape {:?}, expected [{batch}]", timesteps.dims()),
            ));
        }
        match context.dims() {
            [b, tokens, d] if *b == batch && *tokens > 0 && *d == self.config.context_dim => {}
            dims => {
                return Err(input(
                    "context",
                    format!(
                        "has shape {dims:?}, expected [{batch}, tokens, {}]",
                        self.config.context_dim
                    ),
                ))
            }
        }
        match (self.config.adm_in_channels, y) {
            (None, None) => {}
            (Some(adm), Some(y)) if y.dims() == [batch, adm] => {}
            (Some(adm), Some(y)) => {
                return Err(input(
                    "y",
                    format!("has shape {:?}, expected [{batch}, {adm}]", y.dims()),
                ))
            }
            (Some(adm), None) => {
                return Err(input(
                    "y",
                    format!("is missing: the model needs a [{batch}, {adm}] ADM vector"),
                ))
            }
            (None, Some(_)) => {
                return Err(input(
                    "y",
                    "was given but the model takes no ADM vector".to_string(),
                ))
            }
        }
        Ok(())
    }
}
