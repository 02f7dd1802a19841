//! ComfyUI's `bislerp` (`comfy/utils.py`): a bilinear resize whose two 1-D passes blend the
//! channel vectors of neighbouring cells by spherical instead of straight-line interpolation,
//! with the norm interpolated linearly. Computed in f32 as ComfyUI does.

use super::interpolate;
use super::planes::Planes;

/// Where each output index samples along one axis: two source indices and the ratio between.
struct BlendAxis {
    first: Vec<usize>,
    second: Vec<usize>,
    ratio: Vec<f32>,
}

/// `generate_bilinear_data(length_old, length_new)`: bilinear resizes of `arange(old)` and of
/// `arange(old) + 1` (last entry kept at `old - 1`), whose fractional part is the ratio.
fn blend_axis(old: usize, new: usize) -> BlendAxis {
    let coords = |offset: bool| {
        let mut values: Vec<f32> = (0..old)
            .map(|i| i as f32 + if offset { 1.0 } else { 0.0 })
            .collect();
        if offset {
            if let Some(last) = values.last_mut() {
                *last -= 1.0;
            }
        }
        let row = Planes {
            batch: 1,
            channels: 1,
            height: 1,
            width: old,
            data: values,
        };
        interpolate::bilinear(&row, 1, new).data
    };
    let first_f = coords(false);
    let second_f = coords(true);
    BlendAxis {
        ratio: first_f.iter().map(|c| c - c.floor()).collect(),
        first: first_f.iter().map(|&c| c as usize).collect(),
        second: second_f.iter().map(|&c| c as usize).collect(),
    }
}

/// `slerp(b1, b2, r)` for one pair of channel vectors, written into `out`.
fn slerp(b1: &[f32], b2: &[f32], r: f32, out: &mut [f32]) {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let (n1, n2) = (norm(b1), norm(b2));
    let unit = |v: f32, n: f32| if n == 0.0 { 0.0 } else { v / n };
    let dot: f32 = b1
        .iter()
        .zip(b2)
        .map(|(&a, &b)| unit(a, n1) * unit(b, n2))
        .sum();
    if dot > 1.0 - 1e-5 {
        out.copy_from_slice(b1);
        return;
    }
    if dot < 1e-5 - 1.0 {
        for ((o, &a), &b) in out.iter_mut().zip(b1).zip(b2) {
            *o = a * (1.0 - r) + b * r;
        }
        return;
    }
    let omega = dot.acos();
    let so = omega.sin();
    let w1 = ((1.0 - r) * omega).sin() / so;
    let w2 = (r * omega).sin() / so;
    let scale = n1 * (1.0 - r) + n2 * r;
    for ((o, &a), &b) in out.iter_mut().zip(b1).zip(b2) {
        *o = (w1 * unit(a, n1) + w2 * unit(b, n2)) * scale;
    }
}

/// One pass along the width (`along_width`) or the height, blending channel vectors.
fn pass(input: &Planes, axis: &BlendAxis, along_width: bool) -> Planes {
    let (out_h, out_w) = if along_width {
        (input.height, axis.ratio.len())
    } else {
        (axis.ratio.len(), input.width)
    };
    let channels = input.channels;
    let mut out = Planes::zeros(input.batch, channels, out_h, out_w);
    let (mut b1, mut b2, mut res) = (
        vec![0.0; channels],
        vec![0.0; channels],
        vec![0.0; channels],
    );
    for n in 0..input.batch {
        for y in 0..out_h {
            for x in 0..out_w {
                let at = if along_width { x } else { y };
                let (s1, s2) = (axis.first[at], axis.second[at]);
                for c in 0..channels {
                    (b1[c], b2[c]) = if along_width {
                        (input.at(n, c, y, s1), input.at(n, c, y, s2))
                    } else {
                        (input.at(n, c, s1, x), input.at(n, c, s2, x))
                    };
                }
                slerp(&b1, &b2, axis.ratio[at], &mut res);
                for (c, value) in res.iter().enumerate() {
                    let index = out.index(n, c, y, x);
                    out.data[index] = *value;
                }
            }
        }
    }
    out
}

/// `bislerp(samples, width, height)`.
pub(super) fn bislerp(input: &Planes, height: usize, width: usize) -> Planes {
    let wide = pass(input, &blend_axis(input.width, width), true);
    pass(&wide, &blend_axis(input.height, height), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_vectors_take_the_first_neighbour() {
        // ComfyUI's edge case: normalised dot > 1 - 1e-5 returns b1 unchanged, so vectors
        // pointing the same way are not blended at all.
        let input = Planes::new(1, 2, 1, 2, vec![1.0, 3.0, 1.0, 3.0]).unwrap();
        let out = bislerp(&input, 1, 4);
        // Columns sample [0, 0.25, 0.75, 1] -> first neighbours 0, 0, 0, 1.
        assert_eq!(out.data, vec![1.0, 1.0, 1.0, 3.0, 1.0, 1.0, 1.0, 3.0]);
    }

    #[test]
    fn orthogonal_vectors_keep_their_norm_midway() {
        // [1, 0] and [0, 1] at ratio 0.5: slerp gives [0.7071, 0.7071] of norm 1, where a
        // linear blend would give norm 0.7071.
        let mut out = [0.0; 2];
        slerp(&[1.0, 0.0], &[0.0, 1.0], 0.5, &mut out);
        let norm = (out[0] * out[0] + out[1] * out[1]).sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!((out[0] - out[1]).abs() < 1e-6);
    }
}
