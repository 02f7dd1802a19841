//! ComfyUI's `comfy.utils.tiled_scale`: run a resizing function (a VAE decoder ×8, an encoder
//! ÷8) over overlapping tiles of `[B, C, H, W]` and blend the tiles with linear feathering, so a
//! large image never goes through the network at once.
//!
//! Blending happens in f32 on the host (ComfyUI's `output_device` is the CPU), with the feather
//! mask multiplied in ComfyUI's order so results match it to the last bit wherever the network's
//! tiles do.

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};

/// How tile coordinates map from input to output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TileScale {
    /// The output is `factor` times larger (decoding).
    Up(usize),
    /// The output is `factor` times smaller (encoding: ComfyUI's `upscale_amount = 1/8`).
    Down(usize),
}

impl TileScale {
    /// ComfyUI `round(get_scale(d, value))`: Python's `round`, ties to even.
    fn apply(self, value: usize) -> usize {
        let scaled = match self {
            TileScale::Up(factor) => value as f64 * factor as f64,
            TileScale::Down(factor) => value as f64 * (1.0 / factor as f64),
        };
        scaled.round_ties_even() as usize
    }
}

/// Tile size (height, width) and overlap in input units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileGrid {
    /// Tile height.
    pub tile_y: usize,
    /// Tile width.
    pub tile_x: usize,
    /// Overlap between neighbouring tiles.
    pub overlap: usize,
}

impl TileGrid {
    /// Tile origins along one axis of length `size` (ComfyUI's `positions`).
    fn positions(size: usize, tile: usize, overlap: usize) -> Vec<usize> {
        if size <= tile {
            return vec![0];
        }
        (0..size.saturating_sub(overlap))
            .step_by(tile - overlap)
            .collect()
    }

    /// How many tiles cover `height × width` (ComfyUI `get_tiled_scale_steps`).
    pub fn steps(&self, height: usize, width: usize) -> usize {
        let count = |size: usize, tile: usize| {
            if size <= tile {
                1
            } else {
                (size - self.overlap).div_ceil(tile - self.overlap)
            }
        };
        count(height, self.tile_y) * count(width, self.tile_x)
    }
}

/// The feather factors of each index along an axis of `len`: for `t < feather`, indices `t` and
/// `len − 1 − t` are multiplied by `(t + 1) / feather`, in that order (an index can be hit
/// twice when the ramps meet).
fn feather_factors(len: usize, feather: usize) -> Vec<Vec<f32>> {
    let mut factors = vec![Vec::new(); len];
    if feather >= len {
        return factors;
    }
    for t in 0..feather {
        let a = ((t + 1) as f64 / feather as f64) as f32;
        factors[t].push(a);
        factors[len - 1 - t].push(a);
    }
    factors
}

/// Applies `function` to `samples` `[B, C, H, W]` tile by tile and blends the results into a
/// `[B, out_channels, H·s, W·s]` f32 tensor on the CPU (ComfyUI `tiled_scale`). Inputs that fit
/// one tile go through whole.
pub fn tiled_scale(
    samples: &Tensor,
    function: &dyn Fn(&Tensor) -> Result<Tensor>,
    grid: TileGrid,
    scale: TileScale,
    out_channels: usize,
) -> Result<Tensor> {
    let (batch, _, height, width) = samples.dims4().map_err(|_| ModelError::Input {
        model: "tiled_scale",
        input: "samples",
        problem: format!("must be [B, C, H, W], got {:?}", samples.dims()),
    })?;
    if grid.tile_x == 0
        || grid.tile_y == 0
        || grid.overlap >= grid.tile_x
        || grid.overlap >= grid.tile_y
    {
        return Err(ModelError::Input {
            model: "tiled_scale",
            input: "tiles",
            problem: format!(
                "tiles {}×{} need an overlap below their size, got {}",
                grid.tile_y, grid.tile_x, grid.overlap
            ),
        });
    }
    let out_h = scale.apply(height);
    let out_w = scale.apply(width);
    let plane = out_h * out_w;
    let mut results = Vec::with_capacity(batch);
    for b in 0..batch {
        let sample = samples.narrow(0, b, 1)?;
        if height <= grid.tile_y && width <= grid.tile_x {
            results.push(
                function(&sample)?
                    .to_device(&Device::Cpu)?
                    .to_dtype(DType::F32)?,
            );
            continue;
        }
        let mut out = vec![0f32; out_channels * plane];
        let mut div = vec![0f32; plane];
        let feather = scale.apply(grid.overlap);
        for y in TileGrid::positions(height, grid.tile_y, grid.overlap) {
            for x in TileGrid::positions(width, grid.tile_x, grid.overlap) {
                let y0 = y.min(height.saturating_sub(grid.overlap));
                let x0 = x.min(width.saturating_sub(grid.overlap));
                let tile_h = grid.tile_y.min(height - y0);
                let tile_w = grid.tile_x.min(width - x0);
                let input = sample.narrow(2, y0, tile_h)?.narrow(3, x0, tile_w)?;
                let tile = function(&input)?
                    .to_device(&Device::Cpu)?
                    .to_dtype(DType::F32)?;
                let (_, channels, th, tw) = tile.dims4()?;
                if channels != out_channels {
                    return Err(ModelError::Input {
                        model: "tiled_scale",
                        input: "function",
                        problem: format!("returned {channels} channels, expected {out_channels}"),
                    });
                }
                let values = tile.flatten_all()?.to_vec1::<f32>()?;
                let rows = feather_factors(th, feather);
                let cols = feather_factors(tw, feather);
                let (oy, ox) = (scale.apply(y0), scale.apply(x0));
                // ComfyUI would fail on a tile past the edge; Kiln clips it.
                let visible_h = th.min(out_h.saturating_sub(oy));
                let visible_w = tw.min(out_w.saturating_sub(ox));
                for i in 0..visible_h {
                    let row_weight = rows[i].iter().fold(1f32, |m, a| m * a);
                    for j in 0..visible_w {
                        let mask = cols[j].iter().fold(row_weight, |m, a| m * a);
                        let at = (oy + i) * out_w + ox + j;
                        div[at] += mask;
                        for c in 0..channels {
                            out[c * plane + at] += values[(c * th + i) * tw + j] * mask;
                        }
                    }
                }
            }
        }
        for c in 0..out_channels {
            for (value, d) in out[c * plane..(c + 1) * plane].iter_mut().zip(&div) {
                *value /= d;
            }
        }
        results.push(Tensor::from_vec(
            out,
            (1, out_channels, out_h, out_w),
            &Device::Cpu,
        )?);
    }
    Ok(Tensor::cat(&results, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_steps_follow_comfyui() {
        assert_eq!(TileGrid::positions(100, 64, 16), vec![0, 48]);
        assert_eq!(TileGrid::positions(64, 64, 16), vec![0]);
        assert_eq!(TileGrid::positions(200, 64, 16), vec![0, 48, 96, 144]);
        let grid = TileGrid {
            tile_y: 64,
            tile_x: 64,
            overlap: 16,
        };
        assert_eq!(grid.steps(200, 100), 4 * 2);
    }

    #[test]
    fn feathering_ramps_from_both_edges() {
        let f = feather_factors(6, 2);
        assert_eq!(f[0], vec![0.5]);
        assert_eq!(f[1], vec![1.0]);
        assert!(f[2].is_empty());
        assert_eq!(f[5], vec![0.5]);
        assert!(feather_factors(4, 4).iter().all(Vec::is_empty));
        // Ramps that meet multiply twice.
        assert_eq!(feather_factors(3, 2)[1], vec![1.0, 1.0]);
        assert_eq!(feather_factors(3, 2)[0], vec![0.5]);
    }

    #[test]
    fn identity_tiles_reassemble_the_input() {
        let values: Vec<f32> = (0..2 * 3 * 40 * 50).map(|i| (i % 97) as f32).collect();
        let input = Tensor::from_vec(values, (2, 3, 40, 50), &Device::Cpu).unwrap();
        let grid = TileGrid {
            tile_y: 16,
            tile_x: 24,
            overlap: 4,
        };
        let out = tiled_scale(&input, &|t| Ok(t.clone()), grid, TileScale::Up(1), 3).unwrap();
        let diff = (out - &input)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn upscaling_tiles_place_outputs_by_scaled_origin() {
        let input = Tensor::ones((1, 1, 20, 20), DType::F32, &Device::Cpu).unwrap();
        let grid = TileGrid {
            tile_y: 8,
            tile_x: 8,
            overlap: 2,
        };
        let up = |t: &Tensor| -> Result<Tensor> {
            let (_, _, h, w) = t.dims4()?;
            Ok(t.upsample_nearest2d(h * 2, w * 2)?)
        };
        let out = tiled_scale(&input, &up, grid, TileScale::Up(2), 1).unwrap();
        assert_eq!(out.dims(), [1, 1, 40, 40]);
        let values = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(values.iter().all(|v| (v - 1.0).abs() < 1e-6));
        assert_eq!(TileScale::Down(8).apply(4), 0, "Python rounds 0.5 to even");
        assert_eq!(TileScale::Down(8).apply(12), 2);
    }
}
