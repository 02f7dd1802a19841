//! A linear layer, `x·Wᵀ + b`, on the CPU. bf16 inputs — and f32 inputs under
//! [`Products::Bf16`] — multiply in bf16 with f32 sums on CPUs with AVX512-BF16 (candle's own
//! bf16 matmul on the CPU is slower than its f32 one). Otherwise the weight is widened to the
//! input's dtype on all cores (16-bit weights of an f32 model are held 16-bit and widened per
//! call, exactly) and candle's matmul runs, as in [`linear_slow`].

use std::ops::Range;

use candle_core::{DType, Tensor};
use half::bf16;

use crate::element::{check_cpu_input, for_widened_rows, with_values, Element, WeightValues};
use crate::error::{KernelError, Result};
use crate::gemm_bf16::{matmul_bf16_packed, PackedLhs, Products, RhsRows};
use crate::matmul::{matmul, MatMut, MatRef, Threads};
use crate::packed_weight::{from_cache_or_pack, PackedWeight, PackedWeightCache};

/// `x·weightᵀ + bias` for `x` `[..., K]`, `weight` `[N, K]` (PyTorch's layout) and `bias` `[N]`
/// on the CPU; the result is `[..., N]` in `x`'s dtype. bf16 inputs multiply in bf16 with f32
/// sums where the CPU can ([`crate::bf16_compute_available`]); `weight` may be f32, bf16 or f16
/// whatever `x` is.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    linear_with(x, weight, bias, Products::AsInput)
}

const OP: &str = "linear";

/// [`linear`] with the products multiplied as `products` says.
pub fn linear_with(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    products: Products,
) -> Result<Tensor> {
    check_cpu_input(weight, OP, "weight")?;
    let dims = weight.dims2().map_err(|_| KernelError::Shape {
        op: OP,
        input: "weight",
        actual: weight.dims().to_vec(),
        expected: "[N, K]".to_string(),
    })?;
    with_values(weight, OP, "weight", |values| {
        linear_values(x, values, [dims.0, dims.1], bias, products, None)
    })?
}

/// [`linear_with`] for a weight of `weight_dims` `[N, K]` read in place from `weight` (a file's
/// memory map, say) instead of a tensor. Where the products are in bf16, the weight's packed
/// form comes from `cache` when there is one (packed on the first call, kept for the next).
pub fn linear_values(
    x: &Tensor,
    weight: WeightValues<'_>,
    weight_dims: [usize; 2],
    bias: Option<&Tensor>,
    products: Products,
    cache: Option<&dyn PackedWeightCache>,
) -> Result<Tensor> {
    check_cpu_input(x, OP, "x")?;
    let in_features = x.dims().last().copied().ok_or_else(|| KernelError::Shape {
        op: OP,
        input: "x",
        actual: x.dims().to_vec(),
        expected: "[..., K]".to_string(),
    })?;
    let out_features = match weight_dims {
        [n, k] if k == in_features && n.checked_mul(k) == Some(weight.len()) => n,
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
    let bf16_products =
        crate::gemm_bf16::available() && (x.dtype() == DType::BF16 || products == Products::Bf16);
    let tokens = x.elem_count() / in_features.max(1);
    let size_error = || KernelError::Shape {
        op: OP,
        input: "x",
        actual: x.dims().to_vec(),
        expected: "a contiguous [..., K] tensor".to_string(),
    };
    let mut shape = x.dims().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = out_features;
    }
    if !bf16_products {
        if x.dtype() != DType::F32 {
            let weight = match weight {
                WeightValues::F32(w) => {
                    Tensor::from_slice(w, (weight_dims[0], weight_dims[1]), x.device())?
                }
                WeightValues::BF16(w) => {
                    Tensor::from_slice(w, (weight_dims[0], weight_dims[1]), x.device())?
                }
                WeightValues::F16(w) => {
                    Tensor::from_slice(w, (weight_dims[0], weight_dims[1]), x.device())?
                }
            };
            return linear_slow(x, &weight.to_dtype(x.dtype())?, bias);
        }
        // f32: the weight is read in place, or widened into a reused buffer when 16-bit.
        let mut out = bias_rows(bias, tokens, out_features)?;
        let multiplied = with_values(x, OP, "x", |x_values| {
            let WeightValues::F32(x_values) = x_values else {
                return false;
            };
            {
                // Output features `features` from those rows of the weight, widened.
                let mut product = |features: Range<usize>, w: &[f32]| {
                    let Some(data) = out.get_mut(features.start..) else {
                        return false;
                    };
                    let dst = MatMut {
                        data,
                        rows: tokens,
                        cols: features.len(),
                        row_stride: out_features,
                        col_stride: 1,
                    };
                    // `weightᵀ` as a `[K, n]` view of the `[n, K]` weight rows.
                    let transposed = MatRef {
                        data: w,
                        rows: in_features,
                        cols: features.len(),
                        row_stride: 1,
                        col_stride: in_features,
                    };
                    let lhs = row_major(x_values, tokens, in_features);
                    matmul(dst, lhs, transposed, 1.0, bias.is_some(), Threads::Pool)
                };
                match weight {
                    WeightValues::F32(w) => for_widened_rows(w, in_features, &mut product),
                    WeightValues::BF16(w) => for_widened_rows(w, in_features, &mut product),
                    WeightValues::F16(w) => for_widened_rows(w, in_features, &mut product),
                }
            }
        })?;
        if !multiplied {
            return Err(size_error());
        }
        return Ok(Tensor::from_vec(out, shape, x.device())?);
    }
    let packed = with_values(x, OP, "x", |values| match values {
        WeightValues::BF16(v) => PackedLhs::from_bf16(v, tokens, in_features),
        WeightValues::F32(v) => PackedLhs::new(row_major(v, tokens, in_features)),
        WeightValues::F16(v) => {
            let widened = crate::threads::par_map(v, half::f16::to_f32);
            PackedLhs::new(row_major(&widened, tokens, in_features))
        }
    })?
    .ok_or_else(size_error)?;
    let mut out = bias_rows(bias, tokens, out_features)?;
    let dst = MatMut {
        data: &mut out,
        rows: tokens,
        cols: out_features,
        row_stride: out_features,
        col_stride: 1,
    };
    // The weight rounded to bf16 and packed: kept by the caller's cache between calls.
    let rhs_dims = [in_features, out_features];
    let packed_weight = from_cache_or_pack(
        cache,
        |kept| PackedWeight::linear(weight, [out_features, in_features], kept),
        |packed| packed.linear_rhs(rhs_dims).is_some(),
    );
    let multiplied = packed_weight
        .as_deref()
        .and_then(|packed| packed.linear_rhs(rhs_dims))
        .is_some_and(|rhs| matmul_bf16_packed(dst, &packed, rhs, bias.is_some()));
    if !multiplied {
        return Err(size_error());
    }
    Ok(match x.dtype() {
        DType::BF16 => {
            let rounded = crate::threads::par_map(&out, bf16::from_f32);
            Tensor::from_vec(rounded, shape, x.device())?
        }
        dtype => Tensor::from_vec(out, shape, x.device())?.to_dtype(dtype)?,
    })
}

/// `tokens` rows of the bias (zeros without one): the products accumulate onto it.
fn bias_rows(bias: Option<&Tensor>, tokens: usize, out_features: usize) -> Result<Vec<f32>> {
    let mut out = vec![0f32; tokens * out_features];
    if let Some(b) = bias {
        let b = b.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        for row in out.chunks_exact_mut(out_features.max(1)) {
            row.copy_from_slice(&b);
        }
    }
    Ok(out)
}

/// A row-major `rows × cols` view of `data`.
fn row_major(data: &[f32], rows: usize, cols: usize) -> MatRef<'_> {
    MatRef {
        data,
        rows,
        cols,
        row_stride: cols,
        col_stride: 1,
    }
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

/// `weightᵀ` (`[K, N]`) read out of the `[N, K]` weight as the product's right operand (rounded
/// to bf16 unless it is bf16 already).
pub(crate) struct TransposedWeight<'a, W> {
    pub(crate) weight: &'a [W],
    pub(crate) out_features: usize,
    pub(crate) in_features: usize,
}

impl<W: Element> RhsRows for TransposedWeight<'_, W> {
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
            *d = row[k].to_bf16_bits();
        }
    }
}
