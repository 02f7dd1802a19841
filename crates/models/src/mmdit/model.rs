//! `Mmdit`: the SD3-family diffusion transformer over loaded weights, ComfyUI's
//! `OpenAISignatureMMDITWrapper.forward(x, timesteps, context, y)`.

use candle_core::{DType, Tensor};

use super::block::{JointBlock, JointLayout};
use super::config::{MmditConfig, MMDIT_HEAD_DIM};
use super::embedders::{Mlp2, PatchEmbed, TimestepEmbedder};
use super::final_layer::FinalLayer;
use crate::attention::{Attention, AttentionKernel};
use crate::error::{ModelError, Result};
use crate::layers::Linear;
use crate::unet::{DiffusionModel, ModelConditioning};
use crate::weights::Weights;

const MODEL: &str = "mmdit";

/// The MMDiT of SD3 / SD3.5 (weights in SAI naming, prefix stripped).
#[derive(Debug, Clone)]
pub struct Mmdit {
    config: MmditConfig,
    x_embedder: PatchEmbed,
    t_embedder: TimestepEmbedder,
    y_embedder: Option<Mlp2>,
    context_embedder: Option<Linear>,
    joint_blocks: Vec<JointBlock>,
    final_layer: FinalLayer,
    attention: Attention,
    dtype: DType,
}

impl Mmdit {
    /// The model the weights describe ([`MmditConfig::from_weights`]), attention by the plain
    /// kernel until [`with_attention`](Self::with_attention) sets the planner's choice.
    pub fn new(weights: Weights) -> Result<Self> {
        let config = MmditConfig::from_weights(&weights)?;
        if let Some(layers) = config.context_processor_layers {
            return Err(ModelError::Config {
                model: MODEL,
                reason: format!(
                    "{layers} `context_processor.layers` blocks: no released SD3 model has a \
                     context processor and Kiln does not implement one"
                ),
            });
        }
        let hidden = config.hidden_size();
        let joint_blocks = (0..config.depth)
            .map(|index| {
                JointBlock::new(
                    &weights.pp("joint_blocks").pp(index),
                    JointLayout {
                        heads: config.num_heads(),
                        head_dim: MMDIT_HEAD_DIM,
                        qk_norm: config.qk_norm,
                        context_pre_only: config.context_pre_only(index),
                        x_self_attn2: config.has_x_block_self_attn(index),
                    },
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Mmdit {
            x_embedder: PatchEmbed::new(
                &weights,
                config.patch_size,
                config.pos_embed_max_size,
                hidden,
            )?,
            t_embedder: TimestepEmbedder::new(&weights.pp("t_embedder"))?,
            y_embedder: match config.adm_in_channels {
                Some(_) => Some(Mlp2::new(&weights.pp("y_embedder"))?),
                None => None,
            },
            context_embedder: match config.context_in_dim {
                Some(_) => Some(Linear::new(weights.pp("context_embedder"))?),
                None => None,
            },
            joint_blocks,
            final_layer: FinalLayer::new(&weights.pp("final_layer"))?,
            attention: Attention::new(AttentionKernel::Plain),
            dtype: weights.dtype(),
            config,
        })
    }

    /// The same model attending with `attention` (from the plan: `Attention::from_plan`).
    pub fn with_attention(self, attention: Attention) -> Self {
        Mmdit { attention, ..self }
    }

    /// The architecture read from the weights.
    pub fn config(&self) -> &MmditConfig {
        &self.config
    }

    /// The dtype activations are computed in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The raw flow prediction for `x` `[B, C, H, W]` at `timesteps` `[B]` (ComfyUI's
    /// `timestep(σ) = σ·1000` for SD3), joint text tokens `context` `[B, T, ctx]` and pooled
    /// text `y` `[B, adm]` (ignored by a model without `y_embedder`, skipped when `None` as
    /// ComfyUI does). Returns `[B, out_channels, H, W]` in the compute dtype; odd sizes are
    /// padded circularly to the patch and cropped back.
    pub fn forward(
        &self,
        x: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        y: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (batch, height, width) = self.check_inputs(x, timesteps, context, y)?;
        let x = x.to_dtype(self.dtype)?;
        let mut tokens = self.x_embedder.forward(&x)?;
        let mut c = self.t_embedder.forward(timesteps, &tokens)?;
        if let (Some(y), Some(embedder)) = (y, &self.y_embedder) {
            c = (c + embedder.forward(&y.to_dtype(self.dtype)?)?)?;
        }
        let context = context.to_dtype(self.dtype)?;
        let mut context = match &self.context_embedder {
            Some(embedder) => Some(embedder.forward(&context)?),
            None => Some(context),
        };
        for (index, block) in self.joint_blocks.iter().enumerate() {
            let current = context.take().ok_or_else(|| ModelError::Config {
                model: MODEL,
                reason: format!("joint block {index} follows a pre_only context block"),
            })?;
            let (next_context, next_tokens) =
                block.forward(&current, &tokens, &c, &self.attention)?;
            context = next_context;
            tokens = next_tokens;
        }
        let out = self.final_layer.forward(&tokens, &c)?;
        self.unpatchify(&out, batch, height, width)
    }

    /// `[B, h·w, p²·c]` → `[B, c, H, W]` (`einsum nhwpqc->nchpwq`, then the crop).
    fn unpatchify(&self, x: &Tensor, batch: usize, height: usize, width: usize) -> Result<Tensor> {
        let p = self.config.patch_size;
        let c = self.config.out_channels;
        let (h, w) = self.x_embedder.grid(height, width);
        let image = x
            .reshape((batch, h, w, p, p, c))?
            .permute((0, 5, 1, 3, 2, 4))?
            .reshape((batch, c, h * p, w * p))?;
        Ok(image.narrow(2, 0, height)?.narrow(3, 0, width)?)
    }

    fn check_inputs(
        &self,
        x: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        y: Option<&Tensor>,
    ) -> Result<(usize, usize, usize)> {
        let input = |input: &'static str, problem: String| ModelError::Input {
            model: MODEL,
            input,
            problem,
        };
        let (batch, channels, height, width) = match x.dims() {
            &[b, c, h, w] => (b, c, h, w),
            dims => return Err(input("x", format!("must be [B, C, H, W], got {dims:?}"))),
        };
        if channels != self.config.in_channels {
            return Err(input(
                "x",
                format!(
                    "has {channels} channels, the model takes {}",
                    self.config.in_channels
                ),
            ));
        }
        if height == 0 || width == 0 {
            return Err(input("x", format!("is empty: {:?}", x.dims())));
        }
        if timesteps.dims() != [batch] {
            return Err(input(
                "timesteps",
                format!("must be [{batch}], got {:?}", timesteps.dims()),
            ));
        }
        let expected_width = self
            .config
            .context_in_dim
            .unwrap_or_else(|| self.config.hidden_size());
        match context.dims() {
            &[b, _, d] if b == batch && d == expected_width => {}
            dims => {
                return Err(input(
                    "context",
                    format!("must be [{batch}, T, {expected_width}], got {dims:?}"),
                ))
            }
        }
        if let (Some(y), Some(adm)) = (y, self.config.adm_in_channels) {
            if y.dims() != [batch, adm] {
                return Err(input(
                    "y",
                    format!("must be [{batch}, {adm}], got {:?}", y.dims()),
                ));
            }
        }
        Ok((batch, height, width))
    }
}

impl DiffusionModel for Mmdit {
    fn compute_dtype(&self) -> DType {
        self.dtype
    }

    /// SD3 ignores `guidance` (no distilled-guidance embedder).
    fn predict(&self, x: &Tensor, timesteps: &Tensor, cond: &ModelConditioning) -> Result<Tensor> {
        self.forward(x, timesteps, cond.context, cond.y)
    }
}
