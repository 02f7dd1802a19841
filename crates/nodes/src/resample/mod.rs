//! ComfyUI's `comfy.utils.common_upscale`: resizing `[B, C, H, W]` planes with torch's
//! `interpolate` modes (`nearest-exact`, `bilinear`, `area`, `bicubic`, align_corners off),
//! ComfyUI's `bislerp`, and PIL's 8-bit `LANCZOS`, after an optional centre crop to the target
//! aspect ratio.

mod bislerp;
mod interpolate;
mod lanczos;
mod planes;

pub use planes::Planes;

use crate::error::NodesError;

/// Largest number of values one resize may produce (16 Gi f32s would be 64 GiB).
const MAX_OUTPUT_VALUES: usize = 1 << 32;

/// An `upscale_method` combo value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpscaleMethod {
    /// torch `nearest-exact`.
    NearestExact,
    /// torch `bilinear`, align_corners off.
    Bilinear,
    /// torch `area` (adaptive average pooling).
    Area,
    /// torch `bicubic` (A = −0.75), align_corners off.
    Bicubic,
    /// ComfyUI's spherical-linear `bislerp` (latents only).
    Bislerp,
    /// PIL `LANCZOS` on 8-bit pixels (images only).
    Lanczos,
}

impl UpscaleMethod {
    /// The methods `LatentUpscale`/`LatentUpscaleBy` offer, in ComfyUI's order.
    pub const LATENT: [UpscaleMethod; 5] = [
        UpscaleMethod::NearestExact,
        UpscaleMethod::Bilinear,
        UpscaleMethod::Area,
        UpscaleMethod::Bicubic,
        UpscaleMethod::Bislerp,
    ];

    /// The methods `ImageScale`/`ImageScaleBy` offer, in ComfyUI's order.
    pub const IMAGE: [UpscaleMethod; 5] = [
        UpscaleMethod::NearestExact,
        UpscaleMethod::Bilinear,
        UpscaleMethod::Area,
        UpscaleMethod::Bicubic,
        UpscaleMethod::Lanczos,
    ];

    /// The combo value.
    pub fn name(self) -> &'static str {
        match self {
            UpscaleMethod::NearestExact => "nearest-exact",
            UpscaleMethod::Bilinear => "bilinear",
            UpscaleMethod::Area => "area",
            UpscaleMethod::Bicubic => "bicubic",
            UpscaleMethod::Bislerp => "bislerp",
            UpscaleMethod::Lanczos => "lanczos",
        }
    }

    /// The method called `name` among `offered`, or an error naming `input`.
    pub fn parse(name: &str, offered: &[UpscaleMethod], input: &str) -> Result<Self, NodesError> {
        offered
            .iter()
            .copied()
            .find(|method| method.name() == name)
            .ok_or_else(|| NodesError::input(input, format!("unknown upscale method '{name}'")))
    }
}

/// A `crop` combo value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crop {
    /// Stretch to the new size.
    Disabled,
    /// Cut the sides (or top and bottom) to the target aspect ratio first.
    Center,
}

impl Crop {
    /// The combo values, in ComfyUI's order.
    pub const NAMES: [&'static str; 2] = ["disabled", "center"];

    /// The crop called `name`, or an error naming `input`.
    pub fn parse(name: &str, input: &str) -> Result<Self, NodesError> {
        match name {
            "disabled" => Ok(Crop::Disabled),
            "center" => Ok(Crop::Center),
            other => Err(NodesError::input(input, format!("unknown crop '{other}'"))),
        }
    }
}

/// `common_upscale(samples, width, height, method, crop)`.
pub fn common_upscale(
    samples: &Planes,
    width: usize,
    height: usize,
    method: UpscaleMethod,
    crop: Crop,
) -> Result<Planes, NodesError> {
    if width == 0 || height == 0 || samples.width == 0 || samples.height == 0 {
        return Err(NodesError::input(
            "width",
            format!(
                "cannot resize {}x{} to {width}x{height}: sizes must be greater than 0",
                samples.width, samples.height
            ),
        ));
    }
    let total = samples
        .batch
        .checked_mul(samples.channels)
        .and_then(|n| n.checked_mul(width))
        .and_then(|n| n.checked_mul(height));
    if total.is_none_or(|total| total > MAX_OUTPUT_VALUES) {
        return Err(NodesError::input(
            "width",
            format!("resizing to {width}x{height} would need more than {MAX_OUTPUT_VALUES} values"),
        ));
    }
    let cropped;
    let source = match crop {
        Crop::Disabled => samples,
        Crop::Center => {
            cropped = center_crop(samples, width, height);
            &cropped
        }
    };
    Ok(match method {
        UpscaleMethod::NearestExact => interpolate::nearest_exact(source, height, width),
        UpscaleMethod::Bilinear => interpolate::bilinear(source, height, width),
        UpscaleMethod::Area => interpolate::area(source, height, width),
        UpscaleMethod::Bicubic => interpolate::bicubic(source, height, width),
        UpscaleMethod::Bislerp => bislerp::bislerp(source, height, width),
        UpscaleMethod::Lanczos => lanczos::lanczos(source, height, width),
    })
}

/// The crop `common_upscale` takes for `crop == "center"`.
fn center_crop(samples: &Planes, width: usize, height: usize) -> Planes {
    let (old_width, old_height) = (samples.width as f64, samples.height as f64);
    let old_aspect = old_width / old_height;
    let new_aspect = width as f64 / height as f64;
    let (mut x, mut y) = (0usize, 0usize);
    if old_aspect > new_aspect {
        x = python_round((old_width - old_width * (new_aspect / old_aspect)) / 2.0);
    } else if old_aspect < new_aspect {
        y = python_round((old_height - old_height * (old_aspect / new_aspect)) / 2.0);
    }
    let keep_h = samples.height.saturating_sub(2 * y).max(1);
    let keep_w = samples.width.saturating_sub(2 * x).max(1);
    samples.crop(y, x, keep_h, keep_w)
}

/// Python's `round(x)` for a non-negative float: halves go to the even neighbour.
pub(crate) fn python_round(value: f64) -> usize {
    let rounded = value.round_ties_even();
    if rounded <= 0.0 || !rounded.is_finite() {
        0
    } else {
        // Callers pass pixel counts bounded far below usize::MAX.
        rounded as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_round_is_half_even() {
        assert_eq!(python_round(0.5), 0);
        assert_eq!(python_round(1.5), 2);
        assert_eq!(python_round(2.5), 2);
        assert_eq!(python_round(2.6), 3);
    }

    #[test]
    fn center_crop_matches_comfyui_offsets() {
        // 8 wide, 4 high to a square: old_aspect 2 > 1, x = round((8 - 8 * 0.5) / 2) = 2.
        let planes = Planes::new(1, 1, 4, 8, (0..32).map(|v| v as f32).collect()).unwrap();
        let out = common_upscale(&planes, 4, 4, UpscaleMethod::NearestExact, Crop::Center).unwrap();
        assert_eq!((out.height, out.width), (4, 4));
        assert_eq!(&out.data[..4], &[2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn zero_sizes_are_refused() {
        let planes = Planes::new(1, 1, 2, 2, vec![0.0; 4]).unwrap();
        assert!(common_upscale(&planes, 0, 2, UpscaleMethod::Bilinear, Crop::Disabled).is_err());
    }
}
