//! `lanczos` as ComfyUI does it: each image is quantised to 8 bits (`clip(255·x)` truncated),
//! resized by Pillow's `Image.resize(..., LANCZOS)` — two separable passes with 22-bit
//! fixed-point coefficients (`libImaging/Resample.c`) — and scaled back by `/ 255`. RGBA goes
//! through Pillow's premultiplied `RGBa` round trip.

use super::planes::Planes;

const PRECISION_BITS: u32 = 32 - 8 - 2;
const LANCZOS_SUPPORT: f64 = 3.0;

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn lanczos_filter(x: f64) -> f64 {
    if (-LANCZOS_SUPPORT..LANCZOS_SUPPORT).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Fixed-point taps for one output pixel: first source index and coefficients.
struct Kernel {
    start: usize,
    coefficients: Vec<i32>,
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc` for resizing `input` pixels to `output`.
fn kernels(input: usize, output: usize) -> Vec<Kernel> {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = LANCZOS_SUPPORT * filter_scale;
    (0..output)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let inverse = 1.0 / filter_scale;
            // C casts truncate toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(input as i64);
            let count = (xmax - xmin).max(0) as usize;
            let mut weights: Vec<f64> = (0..count)
                .map(|x| lanczos_filter((x as f64 + xmin as f64 - center + 0.5) * inverse))
                .collect();
            let total: f64 = weights.iter().sum();
            if total != 0.0 {
                for w in &mut weights {
                    *w /= total;
                }
            }
            let unit = f64::from(1u32 << PRECISION_BITS);
            let coefficients = weights
                .iter()
                .map(|&w| {
                    if w < 0.0 {
                        (-0.5 + w * unit) as i32
                    } else {
                        (0.5 + w * unit) as i32
                    }
                })
                .collect();
            Kernel {
                start: xmin as usize,
                coefficients,
            }
        })
        .collect()
}

fn clip8(accumulator: i64) -> u8 {
    (accumulator >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One 8-bit pass over interleaved `channels`-wide pixels: along rows when `horizontal`.
fn resample_pass(
    pixels: &[u8],
    (height, width, channels): (usize, usize, usize),
    kernels: &[Kernel],
    horizontal: bool,
) -> Vec<u8> {
    let (out_h, out_w) = if horizontal {
        (height, kernels.len())
    } else {
        (kernels.len(), width)
    };
    let mut out = vec![0u8; out_h * out_w * channels];
    for y in 0..out_h {
        for x in 0..out_w {
            let kernel = &kernels[if horizontal { x } else { y }];
            for c in 0..channels {
                let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                for (tap, &k) in kernel.coefficients.iter().enumerate() {
                    let (sy, sx) = if horizontal {
                        (y, kernel.start + tap)
                    } else {
                        (kernel.start + tap, x)
                    };
                    acc += i64::from(pixels[(sy * width + sx) * channels + c]) * i64::from(k);
                }
                out[(y * out_w + x) * channels + c] = clip8(acc);
            }
        }
    }
    out
}

/// Pillow's `RGBA` → `RGBa`: colour times alpha / 255, rounded as `MULDIV255`.
fn premultiply(pixels: &mut [u8]) {
    for px in pixels.chunks_exact_mut(4) {
        let alpha = u32::from(px[3]);
        for value in &mut px[..3] {
            let tmp = u32::from(*value) * alpha + 128;
            *value = (((tmp >> 8) + tmp) >> 8) as u8;
        }
    }
}

/// Pillow's `RGBa` → `RGBA`.
fn unpremultiply(pixels: &mut [u8]) {
    for px in pixels.chunks_exact_mut(4) {
        let alpha = u32::from(px[3]);
        if alpha != 0 && alpha != 255 {
            for value in &mut px[..3] {
                *value = ((255 * u32::from(*value)) / alpha).min(255) as u8;
            }
        }
    }
}

/// ComfyUI's `lanczos(samples, width, height)`.
pub(super) fn lanczos(input: &Planes, height: usize, width: usize) -> Planes {
    let channels = input.channels;
    let mut out = Planes::zeros(input.batch, channels, height, width);
    let horizontal = kernels(input.width, width);
    let vertical = kernels(input.height, height);
    for n in 0..input.batch {
        let mut pixels = vec![0u8; input.height * input.width * channels];
        for y in 0..input.height {
            for x in 0..input.width {
                for c in 0..channels {
                    pixels[(y * input.width + x) * channels + c] =
                        super::super::png_output::to_u8(input.at(n, c, y, x));
                }
            }
        }
        if channels == 4 {
            premultiply(&mut pixels);
        }
        let mut size = (input.height, input.width, channels);
        if width != input.width {
            pixels = resample_pass(&pixels, size, &horizontal, true);
            size.1 = width;
        }
        if height != input.height {
            pixels = resample_pass(&pixels, size, &vertical, false);
        }
        if channels == 4 {
            unpremultiply(&mut pixels);
        }
        for y in 0..height {
            for x in 0..width {
                for c in 0..channels {
                    let index = out.index(n, c, y, x);
                    out.data[index] = f32::from(pixels[(y * width + x) * channels + c]) / 255.0;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for (input, output) in [(10, 3), (3, 10), (512, 768), (7, 7)] {
            for kernel in kernels(input, output) {
                let sum: i32 = kernel.coefficients.iter().sum();
                assert!((sum - (1 << PRECISION_BITS)).abs() <= kernel.coefficients.len() as i32);
            }
        }
    }

    #[test]
    fn flat_images_stay_flat_and_quantised() {
        let value = 100.0 / 255.0;
        let input = Planes::new(1, 3, 5, 7, vec![value; 105]).unwrap();
        let out = lanczos(&input, 9, 4);
        assert_eq!((out.height, out.width), (9, 4));
        for v in out.data {
            assert!((v - value).abs() < 1e-6, "{v}");
        }
    }

    fn to_bytes(planes: &Planes) -> Vec<u8> {
        // Interleaved like a Pillow image, values back to 0..255.
        let mut out = Vec::new();
        for y in 0..planes.height {
            for x in 0..planes.width {
                for c in 0..planes.channels {
                    out.push((planes.at(0, c, y, x) * 255.0).round() as u8);
                }
            }
        }
        out
    }

    #[test]
    fn downscale_matches_pillow() {
        // Pillow 13: Image.fromarray(np.array([[0, 255, 0, 255, 0, 255]], np.uint8))
        //   .resize((3, 1), Image.LANCZOS)
        let data = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0];
        let input = Planes::new(1, 1, 1, 6, data.to_vec()).unwrap();
        assert_eq!(to_bytes(&lanczos(&input, 1, 3)), [107, 128, 148]);
    }

    #[test]
    fn rgb_two_pass_resize_matches_pillow() {
        // b = (np.arange(5*7*3).reshape(5,7,3)*2 % 256).astype(np.uint8)
        // np.array(Image.fromarray(b).resize((4, 9), Image.LANCZOS)).flatten()
        let (h, w, c) = (5, 7, 3);
        let mut input = Planes::zeros(1, c, h, w);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let value = ((((y * w + x) * c + ch) * 2) % 256) as f32 / 255.0;
                    let at = input.index(0, ch, y, x);
                    input.data[at] = value;
                }
            }
        }
        let want: [u8; 108] = [
            0, 1, 3, 9, 11, 13, 21, 23, 25, 31, 33, 35, 11, 13, 15, 21, 23, 25, 33, 35, 37, 43, 45,
            47, 38, 40, 42, 48, 50, 52, 60, 62, 64, 70, 72, 74, 65, 67, 69, 75, 77, 79, 87, 89, 91,
            97, 99, 101, 86, 88, 90, 96, 98, 100, 108, 110, 112, 118, 120, 122, 107, 109, 111, 117,
            119, 121, 129, 131, 133, 139, 141, 143, 134, 136, 138, 144, 146, 148, 156, 158, 160,
            166, 168, 170, 161, 163, 165, 171, 173, 175, 183, 185, 187, 193, 195, 197, 173, 175,
            177, 183, 185, 187, 195, 197, 199, 205, 207, 209,
        ];
        assert_eq!(to_bytes(&lanczos(&input, 9, 4)), want);
    }
}
