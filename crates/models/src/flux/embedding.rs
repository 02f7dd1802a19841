//! The vector every Flux block is modulated by: sinusoidal embeddings of the timestep and the
//! distilled guidance (`timestep_embedding` with `time_factor` 1000 in ComfyUI's
//! `comfy/ldm/flux/layers.py`) through two-layer [`MlpEmbedder`]s, plus the pooled text.

use candle_core::{DType, Tensor};

use super::config::TIME_EMBEDDING_WIDTH;
use crate::error::Result;
use crate::layers::Linear;
use crate::unet::timestep_embedding;
use crate::weights::Weights;

/// Flux multiplies timesteps and guidance by this before the sinusoidal embedding.
const TIME_FACTOR: f32 = 1000.0;

/// `MLPEmbedder`: `out_layer(silu(in_layer(x)))`.
#[derive(Debug, Clone)]
pub(crate) struct MlpEmbedder {
    in_layer: Linear,
    out_layer: Linear,
}

impl MlpEmbedder {
    /// The embedder whose `in_layer`/`out_layer` live under `weights`.
    pub(crate) fn new(weights: &Weights) -> Result<Self> {
        Ok(MlpEmbedder {
            in_layer: Linear::new(weights.pp("in_layer"))?,
            out_layer: Linear::new(weights.pp("out_layer"))?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.out_layer.forward(&self.in_layer.forward(x)?.silu()?)
    }
}

/// The 256-wide sinusoidal embedding `[N, 256]` of `values` `[N]`, in `dtype`.
///
/// ComfyUI multiplies by 1000 in the dtype `values` arrive in — the timestep as f32, the
/// guidance already cast to the model dtype by `BaseModel._apply_model` — so `values` is
/// first rounded to `input_dtype`, scaled there, and only then embedded in f32.
pub(crate) fn flux_time_embedding(
    values: &Tensor,
    input_dtype: DType,
    dtype: DType,
) -> Result<Tensor> {
    let scaled = (values.to_dtype(input_dtype)? * f64::from(TIME_FACTOR))?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    Ok(timestep_embedding(&scaled, TIME_EMBEDDING_WIDTH, values.device())?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn time_factor_is_applied_before_the_sinusoids() {
        let t = Tensor::new(&[0.5f32], &Device::Cpu).unwrap();
        let embedded = flux_time_embedding(&t, DType::F32, DType::F32).unwrap();
        let row = embedded.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // First frequency is 1: cos(500), then sin(500) at the half-way column.
        assert!((row[0] - 500f32.cos()).abs() < 1e-6);
        assert!((row[128] - 500f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn guidance_is_scaled_in_the_model_dtype() {
        // 3.5 × 1000 is not representable in bf16 (8 significant bits): torch rounds it to 3504.
        let g = Tensor::new(&[3.5f32], &Device::Cpu).unwrap();
        let bf16 = flux_time_embedding(&g, DType::BF16, DType::F32).unwrap();
        let row = bf16.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!((row[0] - 3504f32.cos()).abs() < 1e-5, "{}", row[0]);
    }
}
