//! torch's `F.interpolate` CPU kernels for `[B, C, H, W]` f32 with `size=` given and
//! `align_corners=False`: scales are `in / out` in f32, source indices and weights are computed
//! per axis, and each output is the height-weighted sum of width-weighted sums, in torch's
//! order (`UpSampleKernel.cpp`'s generic separable kernel; `AdaptiveAvgPoolKernel.cpp`).

use super::planes::Planes;

/// Source taps and weights of one output index along one axis.
struct Taps {
    index: Vec<usize>,
    weight: Vec<f32>,
}

/// Per output index, `taps` source indices with weights.
struct AxisPlan {
    taps: usize,
    entries: Vec<Taps>,
}

fn scale(input: usize, output: usize) -> f32 {
    input as f32 / output as f32
}

fn linear_axis(input: usize, output: usize) -> AxisPlan {
    let scale = scale(input, output);
    let entries = (0..output)
        .map(|dst| {
            let src = (scale * (dst as f32 + 0.5) - 0.5).max(0.0);
            // Non-negative and below `input`, so truncation is floor.
            let i0 = (src as usize).min(input - 1);
            let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
            let lambda1 = src - i0 as f32;
            let lambda0 = 1.0 - lambda1;
            Taps {
                index: vec![i0, i1],
                weight: vec![lambda0, lambda1],
            }
        })
        .collect();
    AxisPlan { taps: 2, entries }
}

fn cubic_axis(input: usize, output: usize) -> AxisPlan {
    const A: f32 = -0.75;
    let conv1 = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let conv2 = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = scale(input, output);
    let last = input as i64 - 1;
    let entries = (0..output)
        .map(|dst| {
            let real = scale * (dst as f32 + 0.5) - 0.5;
            let floor = real.floor();
            let t = real - floor;
            let base = floor as i64;
            let weight = vec![conv2(t + 1.0), conv1(t), conv1(1.0 - t), conv2(2.0 - t)];
            let index = (0..4)
                .map(|j| (base - 1 + j).clamp(0, last) as usize)
                .collect();
            Taps { index, weight }
        })
        .collect();
    AxisPlan { taps: 4, entries }
}

fn nearest_exact_axis(input: usize, output: usize) -> AxisPlan {
    let scale = scale(input, output);
    let entries = (0..output)
        .map(|dst| {
            let src = ((dst as f32 + 0.5) * scale).floor() as usize;
            Taps {
                index: vec![src.min(input - 1)],
                weight: vec![1.0],
            }
        })
        .collect();
    AxisPlan { taps: 1, entries }
}

/// Applies per-axis taps: `out = Σ_h w_h · (Σ_w w_w · x[h][w])`, first terms assigned, then
/// accumulated, as torch's `Interpolate<n>` does.
fn separable(input: &Planes, rows: &AxisPlan, cols: &AxisPlan) -> Planes {
    let (out_h, out_w) = (rows.entries.len(), cols.entries.len());
    let mut out = Planes::zeros(input.batch, input.channels, out_h, out_w);
    let plane_in = input.height * input.width;
    let plane_out = out_h * out_w;
    for plane in 0..input.batch * input.channels {
        let src = &input.data[plane * plane_in..(plane + 1) * plane_in];
        let dst = &mut out.data[plane * plane_out..(plane + 1) * plane_out];
        for (y, row) in rows.entries.iter().enumerate() {
            for (x, col) in cols.entries.iter().enumerate() {
                let horizontal = |source_row: usize| {
                    let line = &src[source_row * input.width..];
                    let mut acc = line[col.index[0]] * col.weight[0];
                    for tap in 1..cols.taps {
                        acc += line[col.index[tap]] * col.weight[tap];
                    }
                    acc
                };
                let mut acc = horizontal(row.index[0]) * row.weight[0];
                for tap in 1..rows.taps {
                    acc += horizontal(row.index[tap]) * row.weight[tap];
                }
                dst[y * out_w + x] = acc;
            }
        }
    }
    out
}

/// `mode="nearest-exact"`.
pub(super) fn nearest_exact(input: &Planes, height: usize, width: usize) -> Planes {
    separable(
        input,
        &nearest_exact_axis(input.height, height),
        &nearest_exact_axis(input.width, width),
    )
}

/// `mode="bilinear"`.
pub(super) fn bilinear(input: &Planes, height: usize, width: usize) -> Planes {
    separable(
        input,
        &linear_axis(input.height, height),
        &linear_axis(input.width, width),
    )
}

/// `mode="bicubic"`.
pub(super) fn bicubic(input: &Planes, height: usize, width: usize) -> Planes {
    separable(
        input,
        &cubic_axis(input.height, height),
        &cubic_axis(input.width, width),
    )
}

/// `mode="area"`: `adaptive_avg_pool2d` to `(height, width)`.
pub(super) fn area(input: &Planes, height: usize, width: usize) -> Planes {
    let start = |i: usize, inp: usize, out: usize| i * inp / out;
    let end = |i: usize, inp: usize, out: usize| ((i + 1) * inp).div_ceil(out);
    let mut out = Planes::zeros(input.batch, input.channels, height, width);
    let plane_in = input.height * input.width;
    for plane in 0..input.batch * input.channels {
        let src = &input.data[plane * plane_in..(plane + 1) * plane_in];
        for y in 0..height {
            let (y0, y1) = (start(y, input.height, height), end(y, input.height, height));
            for x in 0..width {
                let (x0, x1) = (start(x, input.width, width), end(x, input.width, width));
                let mut sum = 0.0f32;
                for row in y0..y1 {
                    for col in x0..x1 {
                        sum += src[row * input.width + col];
                    }
                }
                let value = sum / (y1 - y0) as f32 / (x1 - x0) as f32;
                out.data[plane * height * width + y * width + x] = value;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(h: usize, w: usize) -> Planes {
        Planes::new(1, 1, h, w, (0..h * w).map(|v| v as f32).collect()).unwrap()
    }

    // Expected values worked by hand from torch's index formulas for
    // F.interpolate(torch.arange(16.).reshape(1,1,4,4), size=(2,3), mode=...)
    #[test]
    fn nearest_exact_matches_torch() {
        let out = nearest_exact(&ramp(4, 4), 2, 3);
        assert_eq!(out.data, vec![4.0, 6.0, 7.0, 12.0, 14.0, 15.0]);
    }

    #[test]
    fn bilinear_matches_torch() {
        let out = bilinear(&ramp(4, 4), 2, 3);
        let want = [2.1666667, 3.5, 4.8333335, 10.166667, 11.5, 12.833333];
        for (got, want) in out.data.iter().zip(want) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
    }

    #[test]
    fn area_matches_torch() {
        let out = area(&ramp(4, 4), 2, 3);
        assert_eq!(out.data, vec![2.5, 3.5, 4.5, 10.5, 11.5, 12.5]);
    }

    #[test]
    fn bicubic_uses_keys_kernel_with_a_minus_0_75() {
        // Output 4 of 8 -> 16 samples at 0.5 * 4.5 - 0.5 = 1.75: taps 0..=3 with weights
        // W(1.75), W(0.75), W(0.25), W(1.25) = -0.03515625, 0.26171875, 0.87890625,
        // -0.10546875 on values 0..=3, i.e. 1.703125 (A = -0.75 does not reproduce ramps).
        let out = bicubic(&ramp(1, 8), 1, 16);
        assert!((out.data[4] - 1.703125).abs() < 1e-6, "{}", out.data[4]);
        // Output 0 samples -0.25: taps -2, -1, 0, 1 clamp to 0, 0, 0, 1, so only value 1
        // contributes, with W(1.25).
        assert!((out.data[0] + 0.10546875).abs() < 1e-6, "{}", out.data[0]);
    }

    #[test]
    fn identity_sizes_copy() {
        let input = ramp(3, 5);
        assert_eq!(bilinear(&input, 3, 5).data, input.data);
        assert_eq!(bicubic(&input, 3, 5).data, input.data);
        assert_eq!(area(&input, 3, 5).data, input.data);
        assert_eq!(nearest_exact(&input, 3, 5).data, input.data);
    }
}
