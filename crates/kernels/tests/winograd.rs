//! The Winograd path of `conv2d` (3×3, stride 1, padding 1 on large enough images) through the
//! public API, against the im2col path on the same inputs: for f32 computations F(2,3) stays
//! within a few times f32 summation noise and F(4,3) within ten times that, a thousandth of an
//! 8-bit level; for bf16 products and 16-bit inputs F(4,3) stays within a small fraction of
//! what bf16 rounding itself costs.

#![allow(clippy::unwrap_used)]

mod common;

use candle_core::{DType, Tensor};
use common::{random, values};
use kiln_kernels::Products;

/// Whether this CPU takes the Winograd path (it needs AVX-512F for now).
fn winograd_runs() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Largest difference over the reference's RMS.
fn relative_error(got: &Tensor, want: &Tensor) -> f32 {
    let (got, want) = (values(got), values(want));
    assert_eq!(got.len(), want.len());
    let rms = (want.iter().map(|v| v * v).sum::<f32>() / want.len() as f32).sqrt();
    got.iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs() / rms)
        .fold(0.0, f32::max)
}

#[test]
fn f32_layers_stay_within_f32_noise_of_im2col() {
    // (batch, channels in, side, channels out, bound): 256 and more F(2,3) tiles (one layer
    // ragged), then 256 and more F(4,3) tiles (one ragged); the bounds are about twice the
    // errors measured.
    let layers = [
        (1, 32, 32, 24, 5e-6),
        (2, 20, 27, 33, 5e-6),
        (1, 24, 64, 20, 2e-5),
        (2, 20, 45, 17, 2e-5),
    ];
    for (i, &(b, c, side, o, bound)) in layers.iter().enumerate() {
        let x = random(&[b, c, side, side], 70 + i as u64);
        let bias = random(&[o], 80 + i as u64);
        for dtype in [DType::F32, DType::F16] {
            let w = random(&[o, c, 3, 3], 90 + i as u64)
                .to_dtype(dtype)
                .unwrap();
            let fast = kiln_kernels::conv2d(&x, &w, Some(&bias), 1, 1).unwrap();
            let direct =
                kiln_kernels::conv2d_im2col(&x, &w, Some(&bias), 1, 1, Products::AsInput).unwrap();
            let error = relative_error(&fast, &direct);
            assert!(error < bound, "case {i} {dtype:?}: {error:e}");
            // Another summation: some element differs (else the layer ran im2col again).
            assert_eq!(error > 0.0, winograd_runs(), "case {i} {dtype:?}");
        }
    }
}

#[test]
fn approximate_layers_are_closer_to_f32_than_bf16_products_are() {
    // 1024 F(4,3) tiles at 128², 512 for two images at 64².
    for (i, &(b, c, side, o)) in [(1, 16, 128, 16), (2, 24, 64, 20)].iter().enumerate() {
        let x = random(&[b, c, side, side], 10 + i as u64);
        let w = random(&[o, c, 3, 3], 20 + i as u64);
        let bias = random(&[o], 30 + i as u64);
        let exact =
            kiln_kernels::conv2d_im2col(&x, &w, Some(&bias), 1, 1, Products::AsInput).unwrap();
        let fast = kiln_kernels::conv2d_with(&x, &w, Some(&bias), 1, 1, Products::Bf16).unwrap();
        let error = relative_error(&fast, &exact);
        assert!(error < 2e-4, "case {i} bf16 products: {error:e}");
        if winograd_runs() {
            assert!(
                error > 0.0,
                "case {i}: the layer did not take the Winograd path"
            );
        }
        if kiln_kernels::bf16_compute_available() {
            let bf16 =
                kiln_kernels::conv2d_im2col(&x, &w, Some(&bias), 1, 1, Products::Bf16).unwrap();
            let bf16_error = relative_error(&bf16, &exact);
            assert!(
                error < bf16_error / 4.0,
                "case {i}: {error:e} vs bf16 {bf16_error:e}"
            );
        }
        // bf16 inputs: the result rounds to bf16 (2⁻⁹ relative), the rest is Winograd's.
        let (xb, wb) = (
            x.to_dtype(DType::BF16).unwrap(),
            w.to_dtype(DType::BF16).unwrap(),
        );
        let fast = kiln_kernels::conv2d(&xb, &wb, Some(&bias), 1, 1).unwrap();
        let want = kiln_kernels::conv2d_im2col(
            &xb.to_dtype(DType::F32).unwrap(),
            &wb.to_dtype(DType::F32).unwrap(),
            Some(&bias),
            1,
            1,
            Products::AsInput,
        )
        .unwrap();
        let error = relative_error(&fast.to_dtype(DType::F32).unwrap(), &want);
        assert!(error < 2e-2, "case {i} bf16 inputs: {error:e}");
    }
}
