//! Flux's rotary position embedding over three position axes (`EmbedND`, `rope` and
//! `apply_rope` in ComfyUI's `comfy/ldm/flux/{layers,math}.py`): text tokens sit at position
//! (0, 0, 0), image tokens at (0, row, column) of their patch; each axis rotates its own slice
//! of channel pairs.

use candle_core::{DType, Device, Tensor, D};

use super::config::ROPE_THETA;
use crate::error::Result;

/// Rotation tables for one token sequence: `cos` and `sin` `[1, 1, L, head/2]` in f32, one
/// angle per channel pair.
#[derive(Debug, Clone)]
pub(crate) struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// The tables for `text_tokens` text tokens followed by a `rows × columns` grid of image
    /// patches. Angles are computed in f64 and rounded to f32, as ComfyUI's `rope` (its
    /// frequencies are f64, so the position product is promoted).
    pub(crate) fn new(
        axes_dim: &[usize],
        text_tokens: usize,
        rows: usize,
        columns: usize,
        device: &Device,
    ) -> Result<Self> {
        let pairs: usize = axes_dim.iter().map(|width| width / 2).sum();
        let tokens = text_tokens + rows * columns;
        let frequencies: Vec<Vec<f64>> = axes_dim.iter().map(|&w| axis_frequencies(w)).collect();
        let mut cos = Vec::with_capacity(tokens * pairs);
        let mut sin = Vec::with_capacity(tokens * pairs);
        let text = std::iter::repeat_n([0usize; 3], text_tokens);
        let image = (0..rows).flat_map(|row| (0..columns).map(move |column| [0, row, column]));
        for position in text.chain(image) {
            for (axis, axis_frequencies) in frequencies.iter().enumerate() {
                let coordinate = position.get(axis).copied().unwrap_or(0) as f32;
                for frequency in axis_frequencies {
                    let angle = f64::from(coordinate) * frequency;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        Ok(Rope {
            cos: Tensor::from_vec(cos, (1, 1, tokens, pairs), device)?,
            sin: Tensor::from_vec(sin, (1, 1, tokens, pairs), device)?,
        })
    }

    /// Rotates each channel pair `(x₀, x₁)` of `x` `[B, H, L, D]` by its angle, in f32:
    /// `(cos·x₀ − sin·x₁, sin·x₀ + cos·x₁)`. The result has `dtype`.
    pub(crate) fn apply(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        let (batch, heads, tokens, width) = x.dims4()?;
        let pairs = x
            .to_dtype(DType::F32)?
            .reshape((batch, heads, tokens, width / 2, 2))?;
        let first = pairs.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?;
        let second = pairs.narrow(D::Minus1, 1, 1)?.squeeze(D::Minus1)?;
        let rotated_first = (first.broadcast_mul(&self.cos)? - second.broadcast_mul(&self.sin)?)?;
        let rotated_second =
            (first.broadcast_mul(&self.sin)? + second.broadcast_mul(&self.cos)?)?;
        Ok(Tensor::stack(&[rotated_first, rotated_second], D::Minus1)?
            .reshape((batch, heads, tokens, width))?
            .to_dtype(dtype)?)
    }
}

/// `1 / θ^s` for `s` = `linspace(0, (width − 2)/width, width/2)` in f64 (= `2i/width`).
fn axis_frequencies(width: usize) -> Vec<f64> {
    let count = width / 2;
    let end = (width as f64 - 2.0) / width as f64;
    (0..count)
        .map(|i| {
            let exponent = if count > 1 {
                end * i as f64 / (count - 1) as f64
            } else {
                0.0
            };
            1.0 / ROPE_THETA.powf(exponent)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies_follow_two_i_over_width() {
        let f = axis_frequencies(4);
        assert_eq!(f.len(), 2);
        assert!((f[0] - 1.0).abs() < 1e-15);
        assert!((f[1] - 0.01).abs() < 1e-15);
    }

    #[test]
    fn text_tokens_are_not_rotated_and_image_tokens_are() {
        let rope = Rope::new(&[4, 14, 14], 1, 1, 2, &Device::Cpu).unwrap();
        let x = Tensor::ones((1, 1, 3, 32), DType::F32, &Device::Cpu).unwrap();
        let y = rope.apply(&x, DType::F32).unwrap();
        let rows = y
            .squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert!(rows[0].iter().all(|v| (v - 1.0).abs() < 1e-7));
        // Token 2 is at column 1: the first column-axis pair (channels 18, 19) turns by 1 rad.
        let (c, s) = (1f32.cos(), 1f32.sin());
        assert!((rows[2][18] - (c - s)).abs() < 1e-6);
        assert!((rows[2][19] - (s + c)).abs() < 1e-6);
        // Its row-axis pairs (position 0) stay put.
        assert!((rows[2][4] - 1.0).abs() < 1e-7);
    }
}
