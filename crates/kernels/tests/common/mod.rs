//! Inputs and readouts shared by the kernels' integration tests: reproducible random tensors
//! (xorshift, no dependency) and candle-side conversions the code under test does not run.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses its own subset

use candle_core::{DType, Device, Tensor};

/// Values in `[-1, 1)` of `shape` from `seed`, the same on every run and machine.
pub(crate) fn random(shape: &[usize], seed: u64) -> Tensor {
    random_scaled(shape, seed, 1.0)
}

/// [`random`] times `magnitude` (in f32, per value).
pub(crate) fn random_scaled(shape: &[usize], seed: u64, magnitude: f32) -> Tensor {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * magnitude
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Every element of `t`, in f32, flattened.
pub(crate) fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// `t` rounded to bf16 by candle (not by the code under test), back in f32.
pub(crate) fn bf16_rounded(t: &Tensor) -> Tensor {
    t.to_dtype(DType::BF16)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
}
