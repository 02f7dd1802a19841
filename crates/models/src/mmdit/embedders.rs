//! The MMDiT input embedders (ComfyUI `mmdit.py`): the patch embedding with its cropped learned
//! position grid, the timestep MLP and the pooled-vector MLP.

use std::sync::{Arc, Mutex};

use candle_core::Tensor;

use crate::error::{ModelError, Result};
use crate::layers::{Conv2d, Linear};
use crate::unet::timestep_embedding;
use crate::weights::Weights;

/// Width of the sinusoidal timestep features (`frequency_embedding_size`).
const FREQUENCY_EMBEDDING_SIZE: usize = 256;

/// `Linear → SiLU → Linear` under `mlp.0` / `mlp.2`.
#[derive(Debug, Clone)]
pub(super) struct Mlp2 {
    first: Linear,
    second: Linear,
}

impl Mlp2 {
    pub(super) fn new(weights: &Weights) -> Result<Self> {
        Ok(Mlp2 {
            first: Linear::new(weights.pp("mlp.0"))?,
            second: Linear::new(weights.pp("mlp.2"))?,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.second.forward(&self.first.forward(x)?.silu()?)
    }
}

/// `TimestepEmbedder`: 256 sinusoidal features (cos half first) in f32, cast to the compute
/// dtype, then the MLP.
#[derive(Debug, Clone)]
pub(super) struct TimestepEmbedder {
    mlp: Mlp2,
}

impl TimestepEmbedder {
    pub(super) fn new(weights: &Weights) -> Result<Self> {
        Ok(TimestepEmbedder {
            mlp: Mlp2::new(weights)?,
        })
    }

    /// `[B]` timesteps → `[B, hidden]` in `like`'s dtype.
    pub(super) fn forward(&self, timesteps: &Tensor, like: &Tensor) -> Result<Tensor> {
        let values = timesteps
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let features = timestep_embedding(&values, FREQUENCY_EMBEDDING_SIZE, like.device())?
            .to_dtype(like.dtype())?;
        self.mlp.forward(&features)
    }
}

/// The last cropped position grid: `(h, w, [1, h·w, hidden])`.
type PositionCache = Arc<Mutex<Option<(usize, usize, Tensor)>>>;

/// `PatchEmbed` (stride-`p` convolution after circular padding to a multiple of `p`) plus the
/// centre crop of the learned `pos_embed` grid (`cropped_pos_embed`).
///
/// The full grid is large (384² × 1536 for SD3.5 medium) and fetching it widens all of it, so
/// the crop is kept for the grid size last used: every step of a sampling run reuses it.
#[derive(Debug, Clone)]
pub(super) struct PatchEmbed {
    proj: Conv2d,
    pos_embed: Weights,
    patch_size: usize,
    max_size: usize,
    hidden: usize,
    cache: PositionCache,
}

impl PatchEmbed {
    pub(super) fn new(
        weights: &Weights,
        patch_size: usize,
        max_size: usize,
        hidden: usize,
    ) -> Result<Self> {
        Ok(PatchEmbed {
            proj: Conv2d::new(weights.pp("x_embedder.proj"), 0, patch_size)?,
            pos_embed: weights.clone(),
            patch_size,
            max_size,
            hidden,
            cache: Arc::new(Mutex::new(None)),
        })
    }

    /// The patch grid `(h, w)` ComfyUI uses for a latent of `height × width`:
    /// `((height + 1) / p, (width + 1) / p)`.
    pub(super) fn grid(&self, height: usize, width: usize) -> (usize, usize) {
        (
            (height + 1) / self.patch_size,
            (width + 1) / self.patch_size,
        )
    }

    /// `[B, C, H, W]` → `[B, h·w, hidden]` tokens with positions added.
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, height, width) = x.dims4()?;
        let padded = circular_pad_to(x, self.patch_size)?;
        let patches = self.proj.forward(&padded)?;
        let (batch, hidden, rows, cols) = patches.dims4()?;
        let tokens = patches
            .reshape((batch, hidden, rows * cols))?
            .transpose(1, 2)?;
        let (h, w) = self.grid(height, width);
        if h * w != rows * cols {
            return Err(ModelError::Input {
                model: "mmdit",
                input: "x",
                problem: format!(
                    "a {height}×{width} latent gives {rows}×{cols} patches but a {h}×{w} \
                     position grid (patch size {})",
                    self.patch_size
                ),
            });
        }
        let positions = self.cropped_pos_embed(h, w)?.to_dtype(tokens.dtype())?;
        Ok(tokens.broadcast_add(&positions)?)
    }

    /// The centred `h × w` window of the `max × max` grid, `[1, h·w, hidden]`, from the cache
    /// when the last call used the same grid.
    fn cropped_pos_embed(&self, h: usize, w: usize) -> Result<Tensor> {
        // A poisoned lock only means another thread panicked mid-update: recompute.
        if let Ok(cache) = self.cache.lock() {
            if let Some((cached_h, cached_w, grid)) = cache.as_ref() {
                if (*cached_h, *cached_w) == (h, w) {
                    return Ok(grid.clone());
                }
            }
        }
        let cropped = self.crop_pos_embed(h, w)?;
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some((h, w, cropped.clone()));
        }
        Ok(cropped)
    }

    fn crop_pos_embed(&self, h: usize, w: usize) -> Result<Tensor> {
        if h > self.max_size || w > self.max_size {
            return Err(ModelError::Input {
                model: "mmdit",
                input: "x",
                problem: format!(
                    "a {h}×{w} patch grid exceeds the {max}×{max} position grid",
                    max = self.max_size
                ),
            });
        }
        let top = (self.max_size - h) / 2;
        let left = (self.max_size - w) / 2;
        let grid = self.pos_embed.get("pos_embed")?.reshape((
            self.max_size,
            self.max_size,
            self.hidden,
        ))?;
        Ok(grid
            .narrow(0, top, h)?
            .narrow(1, left, w)?
            .contiguous()?
            .reshape((1, h * w, self.hidden))?)
    }
}

/// torch `F.pad(x, (0, pw, 0, ph), mode="circular")` with the pads that make H and W multiples
/// of `patch` (`pad_to_patch_size`): wrap-around copies of the first rows/columns.
fn circular_pad_to(x: &Tensor, patch: usize) -> Result<Tensor> {
    let mut out = x.clone();
    for dim in [2usize, 3] {
        let size = out.dim(dim)?;
        let pad = (patch - size % patch) % patch;
        if pad > 0 {
            let wrap = out.narrow(dim, 0, pad.min(size))?;
            out = Tensor::cat(&[&out, &wrap], dim)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn circular_pad_wraps_first_rows_and_columns() {
        let x = Tensor::arange(0f32, 6.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 3, 2))
            .unwrap();
        let padded = circular_pad_to(&x, 2).unwrap();
        assert_eq!(padded.dims(), &[1, 1, 4, 2]);
        let values: Vec<f32> = padded.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(values, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.0, 1.0]);
    }
}
