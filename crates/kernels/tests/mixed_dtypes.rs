//! Kernels given a weight in another dtype than their input: an f32 model's 16-bit weights are
//! widened per call to exactly the results of widening them first, and `Products::Bf16` multiplies
//! f32 inputs as the f32 product of their bf16 roundings (f32 sums only), where the CPU has
//! AVX512-BF16 — and exactly as f32 where it has not.

#![allow(clippy::unwrap_used)]

mod common;

use candle_core::{DType, Tensor};
use common::{bf16_rounded, random, values};
use kiln_kernels::Products;

/// Every element within f32 summation noise of the reference.
fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    let (got, want) = (values(got), values(want));
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (j, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= scale * 2e-6,
            "{what} element {j}: {g} vs {w}"
        );
    }
}

/// (batch, in, hw, out, kernel, padding, stride): 3×3 with bands and tiles, strided, and 1×1.
const CONVS: [(usize, usize, usize, usize, usize, usize, usize); 3] = [
    (2, 24, 9, 20, 3, 1, 1),
    (1, 9, 11, 13, 3, 1, 2),
    (2, 33, 6, 20, 1, 0, 1),
];

#[test]
fn sixteen_bit_weights_of_an_f32_input_give_the_widened_results_exactly() {
    for (i, &(b, c, hw, o, k, pad, stride)) in CONVS.iter().enumerate() {
        let x = random(&[b, c, hw, hw], 10 + i as u64);
        let bias = random(&[o], 20 + i as u64);
        for dtype in [DType::F16, DType::BF16] {
            let w = random(&[o, c, k, k], 30 + i as u64)
                .to_dtype(dtype)
                .unwrap();
            let held = kiln_kernels::conv2d(&x, &w, Some(&bias), pad, stride).unwrap();
            assert_eq!(held.dtype(), DType::F32);
            let widened = w.to_dtype(DType::F32).unwrap();
            let first = kiln_kernels::conv2d(&x, &widened, Some(&bias), pad, stride).unwrap();
            assert_eq!(values(&held), values(&first), "conv case {i} {dtype:?}");
        }
    }
    let x = random(&[2, 17, 40], 1);
    for dtype in [DType::F16, DType::BF16] {
        let w = random(&[23, 40], 2).to_dtype(dtype).unwrap();
        let bias = random(&[23], 3);
        let held = kiln_kernels::linear(&x, &w, Some(&bias)).unwrap();
        let widened = w.to_dtype(DType::F32).unwrap();
        let first = kiln_kernels::linear(&x, &widened, Some(&bias)).unwrap();
        assert_eq!(held.dims(), &[2, 17, 23]);
        assert_eq!(values(&held), values(&first), "linear {dtype:?}");
    }
}

/// 16-bit weights larger than one widening block (4 Mi values) are widened and multiplied a block
/// of output channels (rows) at a time; every block lands on its own outputs.
#[test]
fn weights_larger_than_one_widening_block_give_the_widened_results() {
    // 520 × 1024·3·3 = 4.8 M values: blocks of 455 output channels and of 65.
    let x = random(&[1, 1024, 5, 5], 40);
    let bias = random(&[520], 41);
    let w = random(&[520, 1024, 3, 3], 42).to_dtype(DType::F16).unwrap();
    let held = kiln_kernels::conv2d(&x, &w, Some(&bias), 1, 1).unwrap();
    let widened = w.to_dtype(DType::F32).unwrap();
    let first = kiln_kernels::conv2d(&x, &widened, Some(&bias), 1, 1).unwrap();
    assert_close(&held, &first, "conv2d over two widening blocks");
    // 1100 × 4096 = 4.5 M values: blocks of 1024 output features and of 76.
    let x = random(&[2, 3, 4096], 43);
    let bias = random(&[1100], 44);
    let w = random(&[1100, 4096], 45).to_dtype(DType::BF16).unwrap();
    let held = kiln_kernels::linear(&x, &w, Some(&bias)).unwrap();
    let widened = w.to_dtype(DType::F32).unwrap();
    let first = kiln_kernels::linear(&x, &widened, Some(&bias)).unwrap();
    assert_eq!(held.dims(), &[2, 3, 1100]);
    assert_close(&held, &first, "linear over two widening blocks");
}

#[test]
fn bf16_products_of_f32_inputs_are_the_f32_products_of_their_bf16_roundings() {
    let native = kiln_kernels::bf16_compute_available();
    for (i, &(b, c, hw, o, k, pad, stride)) in CONVS.iter().enumerate() {
        let x = random(&[b, c, hw, hw], 40 + i as u64);
        let bias = random(&[o], 50 + i as u64);
        for dtype in [DType::F32, DType::BF16] {
            let w = random(&[o, c, k, k], 60 + i as u64)
                .to_dtype(dtype)
                .unwrap();
            let fast = kiln_kernels::conv2d_with(&x, &w, Some(&bias), pad, stride, Products::Bf16)
                .unwrap();
            assert_eq!(fast.dtype(), DType::F32);
            let (x_ref, w_ref) = if native {
                (bf16_rounded(&x), bf16_rounded(&w))
            } else {
                (x.clone(), w.to_dtype(DType::F32).unwrap())
            };
            let want = kiln_kernels::conv2d_slow(&x_ref, &w_ref, Some(&bias), pad, stride).unwrap();
            assert_close(&fast, &want, &format!("conv case {i} {dtype:?}"));
        }
    }
    let x = random(&[3, 29, 70], 4);
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        let w = random(&[37, 70], 5).to_dtype(dtype).unwrap();
        let bias = random(&[37], 6);
        let fast = kiln_kernels::linear_with(&x, &w, Some(&bias), Products::Bf16).unwrap();
        assert_eq!(fast.dtype(), DType::F32);
        let (x_ref, w_ref) = if native {
            (bf16_rounded(&x), bf16_rounded(&w))
        } else {
            (x.clone(), w.to_dtype(DType::F32).unwrap())
        };
        let want = kiln_kernels::linear_slow(&x_ref, &w_ref, Some(&bias)).unwrap();
        assert_close(&fast, &want, &format!("linear {dtype:?}"));
    }
}
