//! Every kernel against its `_slow` twin made of candle ops, on SD shapes scaled down and on the
//! edge cases of the index arithmetic (stride 2, images smaller than the kernel's reach,
//! ragged query/key blocks), in f32 and bf16.

#![allow(clippy::unwrap_used)]

use candle_core::{DType, Tensor};
use kiln_kernels::Activation;

mod common;

/// The shared test inputs (values in `[-1, 1)` from `seed`) in `dtype`.
fn random(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    common::random(shape, seed).to_dtype(dtype).unwrap()
}

/// Largest |a − b| relative to the largest |b|.
fn relative_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    assert_eq!(a.dtype(), b.dtype());
    let a = a.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let b = b.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let scale = b
        .abs()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .max(1e-12);
    let diff = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    diff / scale
}

#[test]
fn conv2d_matches_candle_in_f32() {
    // (batch, in, hw, out, kernel, padding, stride)
    let cases = [
        (2, 8, 16, 12, 3, 1, 1),
        (1, 5, 9, 7, 3, 1, 2),
        (2, 16, 8, 4, 1, 0, 1),
        (1, 3, 1, 2, 3, 1, 1),
        (1, 3, 2, 2, 3, 1, 2),
        (1, 4, 7, 6, 3, 0, 1),
        (1, 2, 5, 3, 1, 0, 2),
    ];
    for (i, &(b, c, hw, o, k, pad, stride)) in cases.iter().enumerate() {
        let x = random(&[b, c, hw, hw], 1 + i as u64, DType::F32);
        let w = random(&[o, c, k, k], 100 + i as u64, DType::F32);
        let bias = random(&[o], 200 + i as u64, DType::F32);
        for bias in [None, Some(&bias)] {
            let fast = kiln_kernels::conv2d(&x, &w, bias, pad, stride).unwrap();
            let slow = kiln_kernels::conv2d_slow(&x, &w, bias, pad, stride).unwrap();
            let diff = relative_diff(&fast, &slow);
            assert!(diff < 1e-5, "case {i}: relative difference {diff}");
        }
    }
}

#[test]
fn conv2d_bands_cover_a_large_image_exactly() {
    // 64 channels × 9 taps × 128 columns per row: the 4 Mi-element band holds far fewer rows than
    // the 384-row output, so several bands (and a ragged last one) are stitched together.
    let x = random(&[1, 64, 384, 128], 7, DType::F32);
    let w = random(&[8, 64, 3, 3], 8, DType::F32);
    let fast = kiln_kernels::conv2d(&x, &w, None, 1, 1).unwrap();
    let slow = kiln_kernels::conv2d_slow(&x, &w, None, 1, 1).unwrap();
    assert!(relative_diff(&fast, &slow) < 1e-5);
}

#[test]
fn conv2d_in_bf16_accumulates_in_f32() {
    let x = random(&[2, 32, 12, 12], 3, DType::BF16);
    let w = random(&[16, 32, 3, 3], 4, DType::BF16);
    let fast = kiln_kernels::conv2d(&x, &w, None, 1, 1).unwrap();
    let reference = kiln_kernels::conv2d_slow(
        &x.to_dtype(DType::F32).unwrap(),
        &w.to_dtype(DType::F32).unwrap(),
        None,
        1,
        1,
    )
    .unwrap()
    .to_dtype(DType::BF16)
    .unwrap();
    // One bf16 rounding of the f32 result (2⁻⁸ relative), nothing more.
    assert!(relative_diff(&fast, &reference) < 8e-3);
}

#[test]
fn conv2d_rejects_mismatched_channels() {
    let x = random(&[1, 4, 8, 8], 1, DType::F32);
    let w = random(&[2, 3, 3, 3], 2, DType::F32);
    let err = kiln_kernels::conv2d(&x, &w, None, 1, 1).unwrap_err();
    assert!(
        matches!(
            err,
            kiln_kernels::KernelError::Shape {
                input: "weight",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn group_norm_matches_candle_with_and_without_silu() {
    for (dtype, tolerance) in [(DType::F32, 2e-6), (DType::BF16, 8e-3)] {
        let x = (random(&[2, 64, 9, 11], 5, dtype) * 3.0).unwrap();
        let w = random(&[64], 6, DType::F32);
        let b = random(&[64], 7, DType::F32);
        for activation in [Activation::None, Activation::Silu] {
            let fast = kiln_kernels::group_norm(&x, 32, &w, &b, 1e-6, activation).unwrap();
            let slow = kiln_kernels::group_norm_slow(&x, 32, &w, &b, 1e-6, activation).unwrap();
            let diff = relative_diff(&fast, &slow);
            assert!(diff < tolerance, "{dtype:?} {activation:?}: {diff}");
        }
    }
}

#[test]
fn layer_norm_matches_candle() {
    let x = (random(&[3, 17, 40], 9, DType::F32) + 0.5).unwrap();
    let w = random(&[40], 10, DType::F32);
    let b = random(&[40], 11, DType::F32);
    for (weight, bias) in [(None, None), (Some(&w), Some(&b)), (Some(&w), None)] {
        let fast = kiln_kernels::layer_norm(&x, weight, bias, 1e-5).unwrap();
        let slow = kiln_kernels::layer_norm_slow(&x, weight, bias, 1e-5).unwrap();
        assert!(relative_diff(&fast, &slow) < 2e-6);
    }
}

#[test]
fn attention_matches_a_full_softmax() {
    // Query and key counts that leave ragged 64-query and 512-key blocks.
    for (tq, tk, d, dv) in [(100, 700, 8, 8), (5, 77, 16, 12), (130, 1, 4, 4)] {
        let q = (random(&[2, 3, tq, d], 1, DType::F32) * 4.0).unwrap();
        let k = (random(&[2, 3, tk, d], 2, DType::F32) * 4.0).unwrap();
        let v = random(&[2, 3, tk, dv], 3, DType::F32);
        let scale = (d as f32).powf(-0.5);
        let fast = kiln_kernels::attention(&q, &k, &v, scale).unwrap();
        let slow = kiln_kernels::attention_slow(&q, &k, &v, scale).unwrap();
        let diff = relative_diff(&fast, &slow);
        assert!(diff < 2e-5, "{tq}×{tk}: {diff}");
    }
}

#[test]
fn attention_in_bf16_matches_the_f32_result_rounded() {
    let q = random(&[1, 2, 70, 16], 4, DType::BF16);
    let k = random(&[1, 2, 600, 16], 5, DType::BF16);
    let v = random(&[1, 2, 600, 16], 6, DType::BF16);
    let fast = kiln_kernels::attention(&q, &k, &v, 0.25).unwrap();
    let slow = kiln_kernels::attention_slow(&q, &k, &v, 0.25).unwrap();
    assert!(relative_diff(&fast, &slow) < 8e-3);
}
