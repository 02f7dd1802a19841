//! `LastLayer` (ComfyUI `comfy/ldm/flux/layers.py`): modulated layer norm and the projection
//! of each image token back to a 2×2 patch of latent channels.

use candle_core::{Tensor, D};

use super::config::FluxConfig;
use super::double_block::LAYER_NORM_EPS;
use super::expect_shape;
use super::modulation::modulate;
use crate::error::{ModelError, Result};
use crate::layers::{LayerNorm, Linear};
use crate::weights::Weights;

/// `final_layer`.
#[derive(Debug, Clone)]
pub(crate) struct LastLayer {
    norm_final: LayerNorm,
    linear: Linear,
    ada_ln_modulation: Linear,
}

impl LastLayer {
    /// The layer under `weights` (`final_layer`: `linear`, `adaLN_modulation.1`).
    pub(crate) fn new(weights: &Weights, config: &FluxConfig) -> Result<Self> {
        let hidden = config.hidden_size;
        expect_shape(
            &weights.pp("adaLN_modulation").pp("1"),
            "weight",
            &[2 * hidden, hidden],
        )?;
        Ok(LastLayer {
            norm_final: LayerNorm::new(weights.pp("norm_final"), LAYER_NORM_EPS)?,
            linear: Linear::new(weights.pp("linear"))?,
            ada_ln_modulation: Linear::new(weights.pp("adaLN_modulation").pp("1"))?,
        })
    }

    /// Patch features `[B, L, 4·out_channels]` of image tokens `x` `[B, L, hidden]`.
    pub(crate) fn forward(&self, x: &Tensor, vec: &Tensor) -> Result<Tensor> {
        let modulation = self.ada_ln_modulation.forward(&vec.silu()?)?.unsqueeze(1)?;
        let halves = modulation.chunk(2, D::Minus1)?;
        // BFL order: shift first, then scale (diffusers swaps them).
        let [shift, scale] = halves.as_slice() else {
            return Err(ModelError::Input {
                model: "Flux",
                input: "vec",
                problem: format!("final modulation {:?} has no two halves", modulation.dims()),
            });
        };
        let x = modulate(&self.norm_final.forward(x)?, shift, scale)?;
        self.linear.forward(&x)
    }
}
