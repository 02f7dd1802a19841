//! The LDM UNet of SD1, SD2, SDXL and the SDXL refiner ([`Unet`], [`UnetConfig`]), its
//! conditioning helpers (timestep embedding, SDXL ADM vectors) and [`CfgDenoiser`], which turns
//! it into the denoiser samplers call: input scaling, timestep from sigma, batched cond/uncond,
//! areas, strengths and timestep ranges, classifier-free guidance.

mod blocks;
mod conditioning;
mod config;
mod denoiser;
mod guided_cond;
mod model;
mod transformer;

pub use conditioning::{
    sdxl_adm, sdxl_refiner_adm, timestep_embedding, PromptKind, RefinerSize, SdxlSize,
    SDXL_SIZE_EMBEDDING_WIDTH,
};
pub use config::{AttentionHeads, MiddleBlock, TransformerProjection, UnetConfig};
pub use denoiser::{CfgDenoiser, CondBatching, DiffusionModel, ModelConditioning};
pub use guided_cond::{GuidedCond, LatentArea};
pub use model::Unet;

use crate::error::{ModelError, Result};
use crate::weights::Weights;

/// Fails with [`ModelError::WeightShape`] unless `leaf` under `weights` is stored as `expected`.
fn expect_shape(weights: &Weights, leaf: &str, expected: &[usize]) -> Result<()> {
    let shape = weights.shape(leaf)?;
    if shape.dims() != expected {
        return Err(ModelError::WeightShape {
            name: weights.path(leaf),
            actual: shape.dims().to_vec(),
            expected: format!("{expected:?}"),
        });
    }
    Ok(())
}
