//! A linear layer, `x·Wᵀ + b`, for bf16 inputs on CPUs with AVX512-BF16: the bf16 product with
//! f32 sums (candle's own bf16 matmul on the CPU is slower than its f32 one). Every other dtype
//! or CPU takes candle's matmul, the same as [`linear_slow`].

use candle_core::{DType, Tensor};
use half::bf16;

use crate::error::{KernelError, Result};
use crate::gemm_bf16::{matmul_bf16, PackedLhs, RhsRows};
use crate::matmul::MatMut;

/// `x·weightᵀ + bias` for `x` `[..., K]`, `weight` `[N, K]` (PyTorch's layout) and `bias` `[N]`
/// on the CPU; the result is `[..., N]` in `x`'s dtype. bf16 inputs multiply in bf16 with f32
/// sums where the CPU can ([`crate::bf16_compute_available`]).
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    const OP: &str = "linear";
    if !x.device().is_cpu() || !weight.device().is_cpu() {
        return Err(KernelError::NotOnCpu { op: OP, input: "x" });
    }
    let in_features = x.dims().last().copied().ok_or_else(|| KernelError::Shape {
        op: OP,
        input: "x",
        actual: x.dims().to_vec(),
        expected: "[..., K]".to_string(),
    })?;
    let out_features = match weight.dims() {
        &[n, k] if k == in_features => n,
        other => {
            return Err(KernelError::Shape {
                op: OP,
                input: "weight",
                actual: other.to_vec(),
                expected: format!("[N, {in_features}]"),
            })
        }
    };
    if let Some(b) = bias {
        if b.dims() != [out_features] {
            return Err(KernelError::Shape {
                op: OP,
                input: "bias",
                actual: b.dims().to_vec(),
                expected: format!("[{out_features}]"),
            });
        }
    }
    let use_bf16 = x.dtype() == DType::BF16 && crate::gemm_bf16::available();
    if !use_bf16 {
        return linear_slow(x, weight, bias);
    }
    let tokens = x.elem_count() / in_features.max(1);
    let x_values = x.flatten_all()?.to_vec1::<bf16>()?;
    let w_values = weight
        .to_dtype(DType::BF16)?
        .flatten_all()?
        .to_vec1::<bf16>()?;
    let mut out = vec![0f32; tokens * out_features];
    if let Some(b) = bias {
        let b = b.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        for row in out.chunks_exact_mut(out_features.max(1)) {
            row.copy_from_slice(&b);
        }
    }
    let size_error = || KernelError::Shape {
        op: OP,
        input: "x",
        actual: x.dims().to_vec(),
        expected: "a contiguous [..., K] tensor".to_string(),
    };
    let packed = PackedLhs::from_bf16(&x_values, tokens, in_features).ok_or_else(size_error)?;
    let transposed = TransposedWeight {
        weight: &w_values,
        out_features,
        in_features,
    };
    let dst = MatMut {
        data: &mut out,
        rows: tokens,
        cols: out_features,
        row_stride: out_features,
        col_stride: 1,
    };
    if !matmul_bf16(dst, &packed, &transposed, bias.is_some()) {
        return Err(size_error());
    }
    let mut shape = x.dims().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = out_features;
    }
    let out = crate::threads::par_map(&out, bf16::from_f32);
    Ok(Tensor::from_vec(out, shape, x.device())?)
}

/// The same layer through candle's own ops (the reference the fast path is tested against).
pub fn linear_slow(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let weight = weight.to_dtype(x.dtype())?;
    let y = x.broadcast_matmul(&weight.t()?)?;
    Ok(match bias {
        Some(b) => y.broadcast_add(&b.to_dtype(x.dtype())?)?,
        None => y,
    })
}

/// `weightᵀ` (`[K, N]`) read out of the `[N, K]` weight as the product's right operand.
struct TransposedWeight<'a> {
    weight: &'a [bf16],
    out_features: usize,
    in_features: usize,
}

impl RhsRows for TransposedWeight<'_> {
    fn rows(&self) -> usize {
        self.in_features
    }

    fn cols(&self) -> usize {
        self.out_features
    }

    fn fill(&self, k: usize, first_col: usize, dst: &mut [u16]) {
        let rows = self.weight[first_col * self.in_features..]
            .chunks_exact(self.in_features)
            .take(dst.len());
        for (d, row) in dst.iter_mut().zip(rows) {
            *d = row[k].to_bits();
        }
    }
}
