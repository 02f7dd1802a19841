//! [`FluxConfig`]: the Flux.1 transformer's architecture, read from its BFL-named weights the way
//! ComfyUI's `model_detection.detect_unet_config` reads it (`comfy/model_detection.py`, the
//! `double_blocks.0.img_attn.norm.key_norm.scale` branch), with the widths that ComfyUI
//! hard-codes for the released models derived from tensor shapes instead.

use crate::error::{ModelError, Result};
use crate::weights::Weights;

/// Side of the square latent patches one token covers (`patch_size`).
pub(crate) const PATCH_SIZE: usize = 2;

/// Width of the sinusoidal timestep and guidance embeddings (`time_in.in_layer` input).
pub(crate) const TIME_EMBEDDING_WIDTH: usize = 256;

/// RoPE base period (`theta`).
pub(crate) const ROPE_THETA: f64 = 10_000.0;

/// Flux transformer architecture (ComfyUI's `FluxParams`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FluxConfig {
    /// Latent channels the network reads per position, including Fill's concatenated masked
    /// image and mask (dev/schnell 16, fill 96); `img_in` takes 4× this.
    pub in_channels: usize,
    /// Latent channels predicted per position (16); `final_layer.linear` produces 4× this.
    pub out_channels: usize,
    /// Transformer width (`img_in` rows; 3072 for the released models).
    pub hidden_size: usize,
    /// Attention heads (hidden / qk-norm scale width; 24).
    pub num_heads: usize,
    /// MLP inner width (`img_mlp.0` rows; 4 × hidden).
    pub mlp_hidden: usize,
    /// Double-stream blocks (`double_blocks.N`; 19).
    pub depth: usize,
    /// Single-stream blocks (`single_blocks.N`; 38).
    pub depth_single_blocks: usize,
    /// Pooled text width (`vector_in.in_layer` columns; CLIP-L 768).
    pub vec_in_dim: usize,
    /// Per-token text width (`txt_in` columns; T5-XXL 4096).
    pub context_in_dim: usize,
    /// RoPE widths of the (index, row, column) position axes; they sum to the head width. See
    /// [`FluxConfig::axes_for_head`].
    pub axes_dim: Vec<usize>,
    /// Whether the model embeds distilled guidance (`guidance_in`: dev and fill, not schnell).
    pub guidance_embed: bool,
}

impl FluxConfig {
    /// The architecture of the weights under `weights` (BFL naming, no prefix).
    pub fn from_weights(weights: &Weights) -> Result<Self> {
        let dims2 = |leaf: &str| -> Result<(usize, usize)> {
            let shape = weights.shape(leaf)?;
            match shape.dims() {
                [rows, columns] => Ok((*rows, *columns)),
                other => Err(ModelError::WeightShape {
                    name: weights.path(leaf),
                    actual: other.to_vec(),
                    expected: "a 2-D [out, in] matrix".to_string(),
                }),
            }
        };
        let patch_area = PATCH_SIZE * PATCH_SIZE;
        let (hidden_size, img_in_features) = dims2("img_in.weight")?;
        let (out_features, _) = dims2("final_layer.linear.weight")?;
        let (_, vec_in_dim) = dims2("vector_in.in_layer.weight")?;
        let (_, context_in_dim) = dims2("txt_in.weight")?;
        let (mlp_hidden, _) = dims2("double_blocks.0.img_mlp.0.weight")?;
        let scale_leaf = "double_blocks.0.img_attn.norm.query_norm.scale";
        let head_dim = match weights.shape(scale_leaf)?.dims() {
            [width] if *width > 0 => *width,
            other => {
                return Err(ModelError::WeightShape {
                    name: weights.path(scale_leaf),
                    actual: other.to_vec(),
                    expected: "a non-empty vector (one scale per head channel)".to_string(),
                })
            }
        };
        if !hidden_size.is_multiple_of(head_dim) {
            return Err(config_error(format!(
                "hidden size {hidden_size} is not a multiple of the head width {head_dim}"
            )));
        }
        for (what, features) in [
            ("img_in", img_in_features),
            ("final_layer.linear", out_features),
        ] {
            if !features.is_multiple_of(patch_area) {
                return Err(config_error(format!(
                    "{what} has {features} features, not a multiple of the {patch_area} \
                     positions of a patch"
                )));
            }
        }
        let config = FluxConfig {
            in_channels: img_in_features / patch_area,
            out_channels: out_features / patch_area,
            hidden_size,
            num_heads: hidden_size / head_dim,
            mlp_hidden,
            depth: weights.count_children("double_blocks"),
            depth_single_blocks: weights.count_children("single_blocks"),
            vec_in_dim,
            context_in_dim,
            axes_dim: FluxConfig::axes_for_head(head_dim)?,
            guidance_embed: weights.contains("guidance_in.in_layer.weight"),
        };
        if config.in_channels < config.out_channels {
            return Err(config_error(format!(
                "{} input channels cannot hold the {} predicted ones",
                config.in_channels, config.out_channels
            )));
        }
        Ok(config)
    }

    /// The RoPE axis widths for a head of `head_dim` channels. They are not stored in the
    /// weights: ComfyUI always uses `[16, 56, 56]` for the released models (head 128). Other
    /// head widths scale that split: `[head/8, 7·head/16, 7·head/16]` (head 32 → `[4, 14, 14]`,
    /// the tiny test checkpoints' axes). Every axis must be even (RoPE rotates channel pairs),
    /// so the head width must be a multiple of 32.
    pub fn axes_for_head(head_dim: usize) -> Result<Vec<usize>> {
        if head_dim == 0 || !head_dim.is_multiple_of(32) {
            return Err(config_error(format!(
                "head width {head_dim} is not a positive multiple of 32, so the RoPE axes \
                 cannot be split as 1/8, 7/16, 7/16"
            )));
        }
        Ok(vec![head_dim / 8, head_dim * 7 / 16, head_dim * 7 / 16])
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Features of one patchified input token (`img_in` columns).
    pub fn patch_in_features(&self) -> usize {
        self.in_channels * PATCH_SIZE * PATCH_SIZE
    }
}

/// A [`ModelError::Config`] for Flux.
fn config_error(reason: String) -> ModelError {
    ModelError::Config {
        model: "Flux",
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_scale_the_released_split() {
        assert_eq!(FluxConfig::axes_for_head(128).unwrap(), vec![16, 56, 56]);
        assert_eq!(FluxConfig::axes_for_head(32).unwrap(), vec![4, 14, 14]);
        assert_eq!(FluxConfig::axes_for_head(64).unwrap(), vec![8, 28, 28]);
    }

    #[test]
    fn head_widths_without_even_axes_are_rejected() {
        for head in [0, 16, 48, 100] {
            assert!(
                matches!(
                    FluxConfig::axes_for_head(head),
                    Err(ModelError::Config { .. })
                ),
                "{head}"
            );
        }
    }
}
