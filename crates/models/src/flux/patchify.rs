//! Latents to token sequences and back (`process_img` and the final `rearrange` of ComfyUI's
//! `comfy/ldm/flux/model.py`): pad to whole 2×2 patches circularly (`pad_to_patch_size`), flatten
//! each patch as `(channel, row, column)`, and on the way back crop the padding away.

use candle_core::Tensor;

use super::config::PATCH_SIZE;
use crate::error::Result;

/// Patch rows and columns covering `height × width` latent cells (rounded up).
pub(crate) fn patch_grid(height: usize, width: usize) -> (usize, usize) {
    (height.div_ceil(PATCH_SIZE), width.div_ceil(PATCH_SIZE))
}

/// `[B, C, H, W]` → `[B, rows·columns, C·4]`, padding H and W up to even sizes by wrapping
/// around (`torch.nn.functional.pad(mode="circular")`: the padded row repeats row 0).
pub(crate) fn patchify(x: &Tensor) -> Result<Tensor> {
    let (batch, channels, height, width) = x.dims4()?;
    let (rows, columns) = patch_grid(height, width);
    let mut padded = x.clone();
    for (dim, size, target) in [
        (2, height, rows * PATCH_SIZE),
        (3, width, columns * PATCH_SIZE),
    ] {
        if target > size {
            let wrap = padded.narrow(dim, 0, target - size)?;
            padded = Tensor::cat(&[&padded, &wrap], dim)?;
        }
    }
    Ok(padded
        .reshape((batch, channels, rows, PATCH_SIZE, columns, PATCH_SIZE))?
        .permute([0, 2, 4, 1, 3, 5])?
        .reshape((batch, rows * columns, channels * PATCH_SIZE * PATCH_SIZE))?)
}

/// `[B, rows·columns, C·4]` → `[B, C, height, width]`, dropping the padded cells.
pub(crate) fn unpatchify(tokens: &Tensor, height: usize, width: usize) -> Result<Tensor> {
    let (batch, _, features) = tokens.dims3()?;
    let (rows, columns) = patch_grid(height, width);
    let channels = features / (PATCH_SIZE * PATCH_SIZE);
    Ok(tokens
        .reshape((batch, rows, columns, channels, PATCH_SIZE, PATCH_SIZE))?
        .permute([0, 3, 1, 4, 2, 5])?
        .reshape((batch, channels, rows * PATCH_SIZE, columns * PATCH_SIZE))?
        .narrow(2, 0, height)?
        .narrow(3, 0, width)?
        .contiguous()?)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    #[test]
    fn round_trip_crops_the_circular_padding() {
        let x = Tensor::arange(0f32, 2.0 * 5.0 * 7.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 5, 7))
            .unwrap();
        let tokens = patchify(&x).unwrap();
        assert_eq!(tokens.dims(), &[1, 3 * 4, 8]);
        let back = unpatchify(&tokens, 5, 7).unwrap();
        let difference = (back - &x).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(difference.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn padding_wraps_to_the_first_row_and_column() {
        let x = Tensor::arange(0f32, 9.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 3, 3))
            .unwrap();
        let tokens = patchify(&x).unwrap().to_dtype(DType::F32).unwrap();
        let rows = tokens.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        // Patch (1, 1) covers cells (2, 2), (2, 0), (0, 2), (0, 0) of the wrapped latent.
        assert_eq!(rows[3], vec![8.0, 6.0, 2.0, 0.0]);
        // Patch (0, 0) is plain: channel-major, then row, then column.
        assert_eq!(rows[0], vec![0.0, 1.0, 3.0, 4.0]);
    }
}
