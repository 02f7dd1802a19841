//! `FinalLayer` of the MMDiT (ComfyUI `mmdit.py`): affine-free layer norm, adaLN shift/scale from
//! the conditioning vector, then the linear map to `patch² · out_channels` per token.

use candle_core::Tensor;

use super::block::{modulate, Modulation};
use crate::error::Result;
use crate::layers::{LayerNorm, Linear};
use crate::weights::Weights;

/// `final_layer.{adaLN_modulation.1, linear}`.
#[derive(Debug, Clone)]
pub(super) struct FinalLayer {
    norm_final: LayerNorm,
    linear: Linear,
    modulation: Modulation,
}

impl FinalLayer {
    pub(super) fn new(weights: &Weights) -> Result<Self> {
        Ok(FinalLayer {
            norm_final: LayerNorm::new(weights.pp("norm_final"), 1e-6)?,
            linear: Linear::new(weights.pp("linear"))?,
            modulation: Modulation::new(weights, 2)?,
        })
    }

    /// `[B, T, hidden]` tokens, `[B, hidden]` conditioning → `[B, T, patch²·out]`.
    pub(super) fn forward(&self, x: &Tensor, c: &Tensor) -> Result<Tensor> {
        let mods = self.modulation.forward(c)?;
        let normed = modulate(&self.norm_final.forward(x)?, &mods[0], &mods[1])?;
        self.linear.forward(&normed)
    }
}
