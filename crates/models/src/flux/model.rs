//! [`Flux`]: the Flux.1 transformer (`Flux` in ComfyUI's `comfy/ldm/flux/model.py`) over
//! planner-loaded BFL-named weights, and its [`DiffusionModel`] face for the guidance.

use candle_core::{DType, Tensor};

use super::config::FluxConfig;
use super::double_block::{clamp_half, DoubleStreamBlock};
use super::embedding::{flux_time_embedding, MlpEmbedder};
use super::expect_shape;
use super::last_layer::LastLayer;
use super::patchify::{patch_grid, patchify, unpatchify};
use super::rope::Rope;
use super::single_block::SingleStreamBlock;
use crate::attention::Attention;
use crate::error::{ModelError, Result};
use crate::layers::Linear;
use crate::unet::{DiffusionModel, ModelConditioning};
use crate::weights::Weights;
use kiln_runtime::AttentionKernel;

/// The guidance `model_base.Flux.extra_conds` supplies when a conditioning sets none.
pub const FLUX_DEFAULT_GUIDANCE: f32 = 3.5;

/// The Flux.1 transformer (dev, schnell, fill).
#[derive(Debug, Clone)]
pub struct Flux {
    config: FluxConfig,
    dtype: DType,
    attention: Attention,
    img_in: Linear,
    time_in: MlpEmbedder,
    vector_in: MlpEmbedder,
    guidance_in: Option<MlpEmbedder>,
    txt_in: Linear,
    double_blocks: Vec<DoubleStreamBlock>,
    single_blocks: Vec<SingleStreamBlock>,
    final_layer: LastLayer,
}

impl Flux {
    /// The transformer whose BFL-named tensors (`img_in.weight`, `double_blocks.0.…`) are at the
    /// root of `weights`, its [`FluxConfig`] read from their shapes. Attention runs with the
    /// plain kernel until [`Flux::with_attention`] sets the plan's choice. Only weight names
    /// are kept: every layer fetches (and widens) its weights when it runs.
    pub fn new(weights: Weights) -> Result<Self> {
        let config = FluxConfig::from_weights(&weights)?;
        let hidden = config.hidden_size;
        expect_shape(
            &weights.pp("img_in"),
            "weight",
            &[hidden, config.patch_in_features()],
        )?;
        expect_shape(
            &weights.pp("txt_in"),
            "weight",
            &[hidden, config.context_in_dim],
        )?;
        let double_blocks = (0..config.depth)
            .map(|index| DoubleStreamBlock::new(&weights.pp("double_blocks").pp(index), &config))
            .collect::<Result<Vec<_>>>()?;
        let single_blocks = (0..config.depth_single_blocks)
            .map(|index| SingleStreamBlock::new(&weights.pp("single_blocks").pp(index), &config))
            .collect::<Result<Vec<_>>>()?;
        Ok(Flux {
            dtype: weights.dtype(),
            attention: Attention::new(AttentionKernel::Plain),
            img_in: Linear::new(weights.pp("img_in"))?,
            time_in: MlpEmbedder::new(&weights.pp("time_in"))?,
            vector_in: MlpEmbedder::new(&weights.pp("vector_in"))?,
            guidance_in: if config.guidance_embed {
                Some(MlpEmbedder::new(&weights.pp("guidance_in"))?)
            } else {
                None
            },
            txt_in: Linear::new(weights.pp("txt_in"))?,
            double_blocks,
            single_blocks,
            final_layer: LastLayer::new(&weights.pp("final_layer"), &config)?,
            config,
        })
    }

    /// The same model running attention as `attention` says (normally
    /// [`Attention::from_plan`] of the diffusion model's component plan).
    pub fn with_attention(self, attention: Attention) -> Self {
        Flux { attention, ..self }
    }

    /// The architecture read from the weights.
    pub fn config(&self) -> &FluxConfig {
        &self.config
    }

    /// The dtype activations are computed in (the plan's compute dtype).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The attention kernel and precision in use.
    pub fn attention(&self) -> &Attention {
        &self.attention
    }

    /// ComfyUI's `Flux.forward(x, timestep, context, y, guidance)`: the flow prediction
    /// `[B, out_channels, H, W]` (compute dtype) for `x` `[B, in_channels, H, W]` (any H, W:
    /// padded to whole patches and cropped back), `timesteps` `[B]` (= sigma for Flux),
    /// `context` `[B, T, context_in_dim]`, pooled `y` `[B, ≥ vec_in_dim]` (zeros when `None`)
    /// and `guidance` `[B]`. As in ComfyUI, a guidance-embedding model given no guidance adds
    /// no guidance term; [`DiffusionModel::predict`] supplies the default 3.5 instead.
    pub fn forward(
        &self,
        x: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        y: Option<&Tensor>,
        guidance: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (batch, height, width) = self.check_inputs(x, timesteps, context, y, guidance)?;
        let dtype = self.dtype;
        let (rows, columns) = patch_grid(height, width);
        let img = self.img_in.forward(&patchify(&x.to_dtype(dtype)?)?)?;

        let mut vec = self
            .time_in
            .forward(&flux_time_embedding(timesteps, DType::F32, dtype)?)?;
        if let (Some(embedder), Some(guidance)) = (&self.guidance_in, guidance) {
            vec = (vec + embedder.forward(&flux_time_embedding(guidance, dtype, dtype)?)?)?;
        }
        let pooled = match y {
            Some(y) => y.narrow(1, 0, self.config.vec_in_dim)?.to_dtype(dtype)?,
            None => Tensor::zeros((batch, self.config.vec_in_dim), dtype, x.device())?,
        };
        let vec = (vec + self.vector_in.forward(&pooled)?)?;
        let mut txt = self.txt_in.forward(&context.to_dtype(dtype)?)?;

        let text_tokens = context.dim(1)?;
        let rope = Rope::new(
            &self.config.axes_dim,
            text_tokens,
            rows,
            columns,
            x.device(),
        )?;
        let mut img = img;
        for block in &self.double_blocks {
            (img, txt) = block.forward(&img, &txt, &vec, &rope, &self.attention)?;
        }
        let img = clamp_half(&img)?;
        let mut joint = Tensor::cat(&[&txt, &img], 1)?;
        for block in &self.single_blocks {
            joint = block.forward(&joint, &vec, &rope, &self.attention)?;
        }
        let img = joint.narrow(1, text_tokens, rows * columns)?;
        let patches = self.final_layer.forward(&img, &vec)?;
        unpatchify(&patches, height, width)
    }

    /// Checks shapes; returns `(batch, height, width)`.
    fn check_inputs(
        &self,
        x: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        y: Option<&Tensor>,
        guidance: Option<&Tensor>,
    ) -> Result<(usize, usize, usize)> {
        let config = &self.config;
        let (batch, channels, height, width) = match x.dims() {
            [b, c, h, w] if *b > 0 && *h > 0 && *w > 0 => (*b, *c, *h, *w),
            other => {
                return Err(input_error(
                    "x",
                    format!("has shape {other:?}, expected a non-empty [B, C, H, W] latent"),
                ))
            }
        };
        if channels != config.in_channels {
            return Err(input_error(
                "x",
                format!(
                    "has {channels} channels, the model reads {} (fill: latent + masked image \
                     + mask)",
                    config.in_channels
                ),
            ));
        }
        if timesteps.dims() != [batch] {
            return Err(input_error(
                "timesteps",
                format!("has shape {:?}, expected [{batch}]", timesteps.dims()),
            ));
        }
        match context.dims() {
            [b, t, d] if *b == batch && *t > 0 && *d == config.context_in_dim => {}
            other => {
                return Err(input_error(
                    "context",
                    format!(
                        "has shape {other:?}, expected [{batch}, tokens, {}]",
                        config.context_in_dim
                    ),
                ))
            }
        }
        if let Some(y) = y {
            match y.dims() {
                [b, d] if *b == batch && *d >= config.vec_in_dim => {}
                other => {
                    return Err(input_error(
                        "y",
                        format!(
                            "has shape {other:?}, expected [{batch}, {}]",
                            config.vec_in_dim
                        ),
                    ))
                }
            }
        }
        if let Some(guidance) = guidance {
            if guidance.dims() != [batch] {
                return Err(input_error(
                    "guidance",
                    format!("has shape {:?}, expected [{batch}]", guidance.dims()),
                ));
            }
        }
        Ok((batch, height, width))
    }
}

impl DiffusionModel for Flux {
    fn compute_dtype(&self) -> DType {
        self.dtype
    }

    /// `x` arrives with any Fill concat channels appended; `timesteps` are sigmas. A
    /// guidance-embedding model given no guidance uses ComfyUI's default 3.5.
    fn predict(&self, x: &Tensor, timesteps: &Tensor, cond: &ModelConditioning) -> Result<Tensor> {
        let default_guidance;
        let guidance = match (cond.guidance, self.config.guidance_embed) {
            (Some(guidance), _) => Some(guidance),
            (None, true) => {
                default_guidance = Tensor::full(FLUX_DEFAULT_GUIDANCE, x.dim(0)?, x.device())?;
                Some(&default_guidance)
            }
            (None, false) => None,
        };
        self.forward(x, timesteps, cond.context, cond.y, guidance)
    }
}

fn input_error(input: &'static str, problem: String) -> ModelError {
    ModelError::Input {
        model: "Flux",
        input,
        problem,
    }
}
