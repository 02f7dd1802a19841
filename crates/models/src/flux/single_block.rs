//! `SingleStreamBlock` (ComfyUI `comfy/ldm/flux/layers.py`): text and image tokens as one
//! sequence; one Linear makes q/k/v and the MLP input in parallel, another merges attention and
//! MLP output.

use candle_core::{Tensor, D};

use super::config::FluxConfig;
use super::double_block::{clamp_half, LAYER_NORM_EPS};
use super::expect_shape;
use super::modulation::Modulation;
use super::rope::Rope;
use super::self_attention::{rope_attention, split_heads, QkNorm};
use crate::attention::Attention;
use crate::error::Result;
use crate::layers::{LayerNorm, Linear};
use crate::weights::Weights;

/// `single_blocks.N`.
#[derive(Debug, Clone)]
pub(crate) struct SingleStreamBlock {
    modulation: Modulation,
    pre_norm: LayerNorm,
    linear1: Linear,
    norm: QkNorm,
    linear2: Linear,
    hidden: usize,
    mlp_hidden: usize,
    heads: usize,
}

impl SingleStreamBlock {
    /// The block under `weights` (`single_blocks.N`).
    pub(crate) fn new(weights: &Weights, config: &FluxConfig) -> Result<Self> {
        let (hidden, mlp_hidden) = (config.hidden_size, config.mlp_hidden);
        expect_shape(
            &weights.pp("linear1"),
            "weight",
            &[3 * hidden + mlp_hidden, hidden],
        )?;
        expect_shape(
            &weights.pp("linear2"),
            "weight",
            &[hidden, hidden + mlp_hidden],
        )?;
        Ok(SingleStreamBlock {
            modulation: Modulation::new(&weights.pp("modulation"), 1, hidden)?,
            pre_norm: LayerNorm::new(weights.pp("pre_norm"), LAYER_NORM_EPS)?,
            linear1: Linear::new(weights.pp("linear1"))?,
            norm: QkNorm::new(&weights.pp("norm"), config.head_dim())?,
            linear2: Linear::new(weights.pp("linear2"))?,
            hidden,
            mlp_hidden,
            heads: config.num_heads,
        })
    }

    /// The updated joint sequence `x` `[B, L, hidden]`.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        vec: &Tensor,
        rope: &Rope,
        attention: &Attention,
    ) -> Result<Tensor> {
        let modulation = self.modulation.single(vec)?;
        let fused = self
            .linear1
            .forward(&modulation.modulate(&self.pre_norm.forward(x)?)?)?;
        let qkv = fused.narrow(D::Minus1, 0, 3 * self.hidden)?;
        let mlp = fused.narrow(D::Minus1, 3 * self.hidden, self.mlp_hidden)?;
        let (q, k, v) = split_heads(&qkv.contiguous()?, self.heads)?;
        let (q, k) = self.norm.forward(&q, &k)?;
        let attended = rope_attention(&q, &k, &v, rope, attention)?;
        let merged = Tensor::cat(&[&attended, &mlp.gelu()?], D::Minus1)?;
        let output = self.linear2.forward(&merged)?;
        clamp_half(&modulation.gated_add(x, &output)?)
    }
}
