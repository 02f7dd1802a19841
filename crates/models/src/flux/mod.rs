//! The Flux.1 transformer (dev, schnell, fill) — ComfyUI's `comfy/ldm/flux/{model,layers,math}.py`
//! with `model_base.Flux` — over BFL-named weights: [`Flux`] with its [`FluxConfig`] read from
//! weight shapes. Latents are padded to whole 2×2 patches, embedded with RoPE positions, run
//! through the double-stream then single-stream blocks under timestep/guidance/pooled-text
//! modulation, and cropped back.

mod config;
mod double_block;
mod embedding;
mod last_layer;
mod model;
mod modulation;
mod patchify;
mod rope;
mod self_attention;
mod single_block;

pub use config::FluxConfig;
pub use model::{Flux, FLUX_DEFAULT_GUIDANCE};

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
