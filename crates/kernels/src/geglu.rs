//! GEGLU's gating, `value · gelu(gate)` over the two halves of the last dimension, in one pass:
//! the halves are read where the projection wrote them, so neither the gate's contiguous copy,
//! its GELU nor the product exists as a separate tensor (at SD1.5's 64² level each is 42 MB).
//! GELU is the exact (erf) form, vectorised ([`crate::simd::gelu_erf`], an ulp or two from the
//! exact values, as candle's scalar `gelu_erf` is; PyTorch's, the reference's, is ten times
//! further).

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use crate::element::{with_values, WeightValues};
use crate::error::{KernelError, Result};
use crate::simd::{dispatch, gelu_erf};
use crate::threads::install;

/// Rows one task gates.
const ROWS_PER_TASK: usize = 16;

/// `value · gelu_erf(gate)` for `projected` `[..., 2n]` in f32 on the CPU, where `value` is the
/// first half of the last dimension and `gate` the second (ComfyUI's `GEGLU`); the result is
/// `[..., n]`.
pub fn geglu(projected: &Tensor) -> Result<Tensor> {
    const OP: &str = "geglu";
    if !projected.device().is_cpu() {
        return Err(KernelError::NotOnCpu {
            op: OP,
            input: "projected",
        });
    }
    if projected.dtype() != DType::F32 {
        return Err(KernelError::UnsupportedDType {
            op: OP,
            dtype: projected.dtype().as_str(),
        });
    }
    let width = projected.dims().last().copied().unwrap_or(0);
    if width == 0 || width % 2 != 0 {
        return Err(KernelError::Shape {
            op: OP,
            input: "projected",
            actual: projected.dims().to_vec(),
            expected: "[..., 2n] with n ≥ 1".to_string(),
        });
    }
    let half = width / 2;
    let gated = with_values(projected, OP, "projected", |values| {
        let WeightValues::F32(values) = values else {
            return Vec::new();
        };
        let mut out = vec![0f32; values.len() / 2];
        install(|| {
            out.par_chunks_mut(half * ROWS_PER_TASK)
                .zip(values.par_chunks(width * ROWS_PER_TASK))
                .for_each(|(out_rows, rows)| {
                    dispatch(
                        #[inline(always)]
                        || {
                            for (out_row, row) in out_rows
                                .chunks_exact_mut(half)
                                .zip(rows.chunks_exact(width))
                            {
                                let (value, gate) = row.split_at(half);
                                for ((o, &v), &g) in out_row.iter_mut().zip(value).zip(gate) {
                                    *o = v * gelu_erf(g);
                                }
                            }
                        },
                    );
                });
        });
        out
    })?;
    let mut shape = projected.dims().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = half;
    }
    Ok(Tensor::from_vec(gated, shape, projected.device())?)
}

/// The same gating through candle's own ops (the reference the fused pass is tested against).
pub fn geglu_slow(projected: &Tensor) -> Result<Tensor> {
    let halves = projected.chunk(2, candle_core::D::Minus1)?;
    Ok((&halves[0] * halves[1].gelu_erf()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fused_gating_equals_candles_ops_within_their_rounding() {
        let n = 3 * 37 * 10;
        let values: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 125.0 - 4.0)
            .collect();
        let projected = Tensor::from_vec(values, (3, 37, 10), &Device::Cpu).unwrap();
        let fused = geglu(&projected).unwrap();
        assert_eq!(fused.dims(), &[3, 37, 5]);
        let reference = geglu_slow(&projected).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (got, want, input) = (flat(&fused), flat(&reference), flat(&projected));
        // Each GELU is within 1.1e-7·max(|gate|, 1) of the exact one (`simd::gelu_erf`'s test;
        // candle's is as close), times the value, plus the product's rounding.
        let pairs = input
            .chunks_exact(10)
            .flat_map(|row| row[..5].iter().zip(&row[5..]));
        for ((g, w), (value, gate)) in got.iter().zip(&want).zip(pairs) {
            // The fused pass is its scalar definition to the bit…
            assert_eq!(g.to_bits(), (value * gelu_erf(*gate)).to_bits());
            // …and as close to candle's ops as the two GELUs' rounding allows.
            let bound = 3e-7 * gate.abs().max(1.0) * value.abs() + f32::EPSILON * w.abs();
            assert!((g - w).abs() <= bound, "{g} vs {w}");
        }
    }

    #[test]
    fn odd_widths_and_other_dtypes_are_refused() {
        let odd = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(geglu(&odd), Err(KernelError::Shape { .. })));
        let half = Tensor::zeros((2, 4), DType::F16, &Device::Cpu).unwrap();
        assert!(matches!(
            geglu(&half),
            Err(KernelError::UnsupportedDType { .. })
        ));
    }
}
