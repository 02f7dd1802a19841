//! The bf16 × bf16 → f32 product against an f64 reference of the same bf16-rounded inputs: the
//! only error allowed is f32 summation (`K · 2⁻²⁴ · Σ|a·b|` per element), on ragged shapes that
//! cross every tile, cache-block and task boundary; and bf16 convolutions, which use it on CPUs
//! with AVX512-BF16, and bf16 linear layers, against candle's f32 ops on the same inputs.

#![allow(clippy::unwrap_used)]

mod common;

use candle_core::{DType, Device, Tensor};
use common::random;

/// `t` rounded to bf16 by candle (not by the code under test), back in f32.
fn bf16_rounded(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_dtype(DType::BF16)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
}

#[test]
fn bf16_matmul_is_exact_up_to_f32_summation() {
    // (M, K, N): single tile, ragged tiles, odd K, several cache blocks (384 k at most each),
    // several row tasks.
    let cases = [
        (1, 1, 1),
        (12, 2, 32),
        (13, 3, 33),
        (5, 7, 70),
        (49, 257, 31),
        (100, 600, 97),
        (64, 1031, 65),
    ];
    for (i, &(m, k, n)) in cases.iter().enumerate() {
        let a = random(&[m, k], 10 + i as u64);
        let b = random(&[k, n], 20 + i as u64);
        let product = kiln_kernels::bf16_matmul(&a, &b).unwrap();
        assert_eq!(product.dims(), &[m, n]);
        assert_eq!(product.dtype(), DType::F32);
        let product = product.to_vec2::<f32>().unwrap();
        // bf16 inputs take the bit-copying packing; it must give the same numbers.
        let from_bf16 = kiln_kernels::bf16_matmul(
            &a.to_dtype(DType::BF16).unwrap(),
            &b.to_dtype(DType::BF16).unwrap(),
        )
        .unwrap();
        assert_eq!(from_bf16.to_vec2::<f32>().unwrap(), product, "case {i}");
        let (a, b) = (bf16_rounded(&a), bf16_rounded(&b));
        let unit = (k as f64) * 2f64.powi(-24);
        for r in 0..m {
            for c in 0..n {
                let (mut exact, mut magnitude) = (0f64, 0f64);
                for j in 0..k {
                    let term = f64::from(a[r][j]) * f64::from(b[j][c]);
                    exact += term;
                    magnitude += term.abs();
                }
                let error = (f64::from(product[r][c]) - exact).abs();
                assert!(
                    error <= unit * magnitude + 1e-30,
                    "case {i} ({m}×{k}×{n}) at ({r}, {c}): {} vs {exact}, error {error} > {}",
                    product[r][c],
                    unit * magnitude
                );
            }
        }
    }
}

#[test]
fn bf16_matmul_of_an_empty_inner_dimension_is_zero() {
    for dtype in [DType::F32, DType::BF16] {
        let a = Tensor::zeros((3, 0), dtype, &Device::Cpu).unwrap();
        let b = Tensor::zeros((0, 5), dtype, &Device::Cpu).unwrap();
        let product = kiln_kernels::bf16_matmul(&a, &b).unwrap();
        assert_eq!(product.to_vec2::<f32>().unwrap(), vec![vec![0f32; 5]; 3]);
    }
}

#[test]
fn bf16_matmul_rejects_mismatched_inner_sizes() {
    let err = kiln_kernels::bf16_matmul(&random(&[3, 4], 1), &random(&[5, 2], 2)).unwrap_err();
    assert!(
        matches!(err, kiln_kernels::KernelError::Shape { input: "b", .. }),
        "{err}"
    );
}

#[test]
fn bf16_convolutions_match_the_f32_convolution_of_the_same_inputs() {
    // (batch, in, hw, out, kernel, padding, stride): a patch of 576 spans two cache blocks, 50
    // output channels cross tiles and tasks, stride 2 and 1×1 take the other gather paths.
    // The rest are the index arithmetic's edges: images smaller than the kernel's reach, no
    // padding, a strided 1×1; the last spans several bands of output rows.
    let cases = [
        (2, 64, 10, 50, 3, 1, 1),
        (1, 9, 11, 13, 3, 1, 2),
        (2, 33, 6, 20, 1, 0, 1),
        (1, 3, 1, 2, 3, 1, 1),
        (1, 3, 2, 2, 3, 1, 2),
        (1, 4, 7, 6, 3, 0, 1),
        (1, 2, 5, 3, 1, 0, 2),
        (1, 64, 130, 4, 3, 1, 1),
    ];
    for (i, &(b, c, hw, o, k, pad, stride)) in cases.iter().enumerate() {
        let x = random(&[b, c, hw, hw], 30 + i as u64)
            .to_dtype(DType::BF16)
            .unwrap();
        let w = random(&[o, c, k, k], 40 + i as u64)
            .to_dtype(DType::BF16)
            .unwrap();
        let bias = random(&[o], 50 + i as u64).to_dtype(DType::BF16).unwrap();
        let fast = kiln_kernels::conv2d(&x, &w, Some(&bias), pad, stride).unwrap();
        assert_eq!(fast.dtype(), DType::BF16);
        let reference = kiln_kernels::conv2d_slow(
            &x.to_dtype(DType::F32).unwrap(),
            &w.to_dtype(DType::F32).unwrap(),
            Some(&bias.to_dtype(DType::F32).unwrap()),
            pad,
            stride,
        )
        .unwrap();
        let fast = fast.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
        let fast = fast.to_vec1::<f32>().unwrap();
        let reference = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (j, (&got, &want)) in fast.iter().zip(&reference).enumerate() {
            // One bf16 rounding of the result (2⁻⁸ relative) plus f32 summation noise.
            let allowed = want.abs() * 2f32.powi(-8) + scale * 1e-5;
            assert!(
                (got - want).abs() <= allowed,
                "case {i} element {j}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn bf16_linear_matches_the_f32_layer_of_the_same_inputs() {
    // (leading dims, K, N): tokens and features ragged against every tile and block size.
    let cases: [(&[usize], usize, usize); 3] =
        [(&[2, 37], 40, 50), (&[5], 300, 7), (&[1, 1], 3, 1)];
    for (i, &(lead, k, n)) in cases.iter().enumerate() {
        let x_shape: Vec<usize> = lead.iter().copied().chain([k]).collect();
        let x = random(&x_shape, 60 + i as u64)
            .to_dtype(DType::BF16)
            .unwrap();
        let w = random(&[n, k], 70 + i as u64)
            .to_dtype(DType::BF16)
            .unwrap();
        let bias = random(&[n], 80 + i as u64).to_dtype(DType::BF16).unwrap();
        for bias in [None, Some(&bias)] {
            let fast = kiln_kernels::linear(&x, &w, bias).unwrap();
            let want_shape: Vec<usize> = lead.iter().copied().chain([n]).collect();
            assert_eq!(fast.dims(), want_shape.as_slice());
            assert_eq!(fast.dtype(), DType::BF16);
            let reference = kiln_kernels::linear_slow(
                &x.to_dtype(DType::F32).unwrap(),
                &w.to_dtype(DType::F32).unwrap(),
                bias.map(|b| b.to_dtype(DType::F32).unwrap()).as_ref(),
            )
            .unwrap();
            let fast = fast.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
            let fast = fast.to_vec1::<f32>().unwrap();
            let reference = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (j, (&got, &want)) in fast.iter().zip(&reference).enumerate() {
                // One bf16 rounding of the result plus f32 summation noise.
                let allowed = want.abs() * 2f32.powi(-8) + scale * 1e-5;
                assert!(
                    (got - want).abs() <= allowed,
                    "case {i} element {j}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn linear_rejects_a_weight_of_the_wrong_width() {
    let x = random(&[4, 6], 1).to_dtype(DType::BF16).unwrap();
    let w = random(&[3, 5], 2).to_dtype(DType::BF16).unwrap();
    let err = kiln_kernels::linear(&x, &w, None).unwrap_err();
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
