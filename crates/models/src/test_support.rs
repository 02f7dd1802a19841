//! Helpers for this crate's unit tests.

use candle_core::{Device, Tensor};

/// A CPU tensor of values in [-2, 2) from `seed` (a small xorshift keeps tests independent of
/// candle's RNG).
pub(crate) fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"))
}
