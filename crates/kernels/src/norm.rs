//! Fused GroupNorm (optionally followed by SiLU) and LayerNorm: one pass for the statistics, one
//! for `x·a + b` with the affine folded in, statistics in f32 (f64 for the final sums), spread
//! over the kernel pool one group or a band of rows per task.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::element::{contiguous, supports_dtype, Element};
use crate::error::{KernelError, Result};
use crate::simd::{dispatch, silu};
use crate::threads::install;

/// What follows the normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Nothing.
    None,
    /// `x · sigmoid(x)` (every ResNet block's `norm → SiLU`).
    Silu,
}

/// Mean and `1/sqrt(var + eps)` of `values` (biased variance, two passes).
#[inline(always)]
fn moments<T: Element>(values: &[T], eps: f64) -> (f32, f32) {
    const LANES: usize = 16;
    let mut sums = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().map(|v| v.to_f32() as f64).sum();
    for chunk in chunks {
        for (s, v) in sums.iter_mut().zip(chunk) {
            *s += v.to_f32();
        }
    }
    let count = values.len().max(1) as f64;
    let mean = (sums.iter().map(|&s| s as f64).sum::<f64>() + tail) / count;
    let mean32 = mean as f32;
    let mut squares = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|v| ((v.to_f32() - mean32) as f64).powi(2))
        .sum();
    for chunk in chunks {
        for (s, v) in squares.iter_mut().zip(chunk) {
            let d = v.to_f32() - mean32;
            *s += d * d;
        }
    }
    let var = (squares.iter().map(|&s| s as f64).sum::<f64>() + tail) / count;
    (mean32, (1.0 / (var + eps).sqrt()) as f32)
}

#[inline(always)]
fn scale_shift<T: Element>(src: &[T], dst: &mut [T], a: f32, b: f32, activation: Activation) {
    match activation {
        Activation::None => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = T::from_f32(s.to_f32() * a + b);
            }
        }
        Activation::Silu => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = T::from_f32(silu(s.to_f32() * a + b));
            }
        }
    }
}

struct GroupNormOp {
    groups: usize,
    channels: usize,
    eps: f64,
    weight: Vec<f32>,
    bias: Vec<f32>,
    activation: Activation,
}

/// GroupNorm of `x` `[B, C, …]` into `groups` groups with per-channel `weight`/`bias`, then
/// `activation`, on the CPU. The result has `x`'s dtype.
pub fn group_norm(
    x: &Tensor,
    groups: usize,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    activation: Activation,
) -> Result<Tensor> {
    const OP: &str = "group_norm";
    check_cpu_dtype(x, OP)?;
    let channels = x.dims().get(1).copied().unwrap_or(0);
    if x.rank() < 2 || groups == 0 || channels % groups != 0 {
        return Err(KernelError::Shape {
            op: OP,
            input: "x",
            actual: x.dims().to_vec(),
            expected: format!("[B, C, …] with C divisible by {groups}"),
        });
    }
    let op = GroupNormOp {
        groups,
        channels,
        eps,
        weight: affine(weight, channels, OP, "weight")?,
        bias: affine(bias, channels, OP, "bias")?,
        activation,
    };
    Ok(x.contiguous()?.apply_op1_no_bwd(&op)?)
}

/// GroupNorm (+ activation) through candle's own ops: the reference.
pub fn group_norm_slow(
    x: &Tensor,
    groups: usize,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    activation: Activation,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (b, c) = (dims[0], dims[1]);
    let x32 = x.to_dtype(DType::F32)?.reshape((b, groups, ()))?;
    let mean = x32.mean_keepdim(2)?;
    let centered = x32.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(2)?;
    let normed = centered
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .reshape(dims.clone())?;
    let mut affine_shape = vec![1, c];
    affine_shape.resize(dims.len(), 1);
    let y = normed
        .broadcast_mul(&weight.to_dtype(DType::F32)?.reshape(affine_shape.clone())?)?
        .broadcast_add(&bias.to_dtype(DType::F32)?.reshape(affine_shape)?)?;
    let y = match activation {
        Activation::None => y,
        Activation::Silu => y.silu()?,
    };
    Ok(y.to_dtype(x.dtype())?)
}

impl CustomOp1 for GroupNormOp {
    fn name(&self) -> &'static str {
        "kiln-group-norm"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match storage {
            CpuStorage::F32(x) => self.run(x, layout)?,
            CpuStorage::BF16(x) => self.run(x, layout)?,
            CpuStorage::F16(x) => self.run(x, layout)?,
            other => return Err(unsupported("kiln-group-norm", other.dtype())),
        };
        Ok((out, layout.shape().clone()))
    }
}

impl GroupNormOp {
    fn run<T: Element>(&self, x: &[T], layout: &Layout) -> candle_core::Result<CpuStorage> {
        let x = contiguous(x, layout).ok_or_else(not_contiguous)?;
        let per_channel = layout.shape().dims()[2..].iter().product::<usize>();
        let per_group = per_channel * (self.channels / self.groups);
        if per_group == 0 {
            return Ok(T::into_storage(Vec::new()));
        }
        let mut out: Vec<T> = vec![T::from_f32(0.0); x.len()];
        install(|| {
            out.par_chunks_mut(per_group)
                .zip(x.par_chunks(per_group))
                .enumerate()
                .for_each(|(index, (dst, src))| {
                    let first_channel = (index % self.groups) * (self.channels / self.groups);
                    dispatch(
                        #[inline(always)]
                        || {
                            let (mean, rstd) = moments(src, self.eps);
                            for (c, (d, s)) in dst
                                .chunks_exact_mut(per_channel)
                                .zip(src.chunks_exact(per_channel))
                                .enumerate()
                            {
                                let a = rstd * self.weight[first_channel + c];
                                let b = self.bias[first_channel + c] - mean * a;
                                scale_shift(s, d, a, b, self.activation);
                            }
                        },
                    )
                });
        });
        Ok(T::into_storage(out))
    }
}

struct LayerNormOp {
    eps: f64,
    weight: Option<Vec<f32>>,
    bias: Option<Vec<f32>>,
}

/// LayerNorm of `x` over its last dimension with optional `weight`/`bias`, on the CPU. The
/// result has `x`'s dtype.
pub fn layer_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    const OP: &str = "layer_norm";
    check_cpu_dtype(x, OP)?;
    let width = x.dims().last().copied().unwrap_or(0);
    if width == 0 {
        return Err(KernelError::Shape {
            op: OP,
            input: "x",
            actual: x.dims().to_vec(),
            expected: "a non-empty last dimension".to_string(),
        });
    }
    let op = LayerNormOp {
        eps,
        weight: weight.map(|w| affine(w, width, OP, "weight")).transpose()?,
        bias: bias.map(|b| affine(b, width, OP, "bias")).transpose()?,
    };
    Ok(x.contiguous()?.apply_op1_no_bwd(&op)?)
}

/// LayerNorm through candle's own ops: the reference.
pub fn layer_norm_slow(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let x32 = x.to_dtype(DType::F32)?;
    let mean = x32.mean_keepdim(candle_core::D::Minus1)?;
    let centered = x32.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(candle_core::D::Minus1)?;
    let mut y = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    if let Some(w) = weight {
        y = y.broadcast_mul(&w.to_dtype(DType::F32)?)?;
    }
    if let Some(b) = bias {
        y = y.broadcast_add(&b.to_dtype(DType::F32)?)?;
    }
    Ok(y.to_dtype(x.dtype())?)
}

impl CustomOp1 for LayerNormOp {
    fn name(&self) -> &'static str {
        "kiln-layer-norm"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match storage {
            CpuStorage::F32(x) => self.run(x, layout)?,
            CpuStorage::BF16(x) => self.run(x, layout)?,
            CpuStorage::F16(x) => self.run(x, layout)?,
            other => return Err(unsupported("kiln-layer-norm", other.dtype())),
        };
        Ok((out, layout.shape().clone()))
    }
}

impl LayerNormOp {
    fn run<T: Element>(&self, x: &[T], layout: &Layout) -> candle_core::Result<CpuStorage> {
        let x = contiguous(x, layout).ok_or_else(not_contiguous)?;
        let width = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut out: Vec<T> = vec![T::from_f32(0.0); x.len()];
        install(|| {
            out.par_chunks_mut(width)
                .zip(x.par_chunks(width))
                .with_min_len((1 << 14) / width + 1)
                .for_each(|(dst, src)| {
                    dispatch(
                        #[inline(always)]
                        || {
                            let (mean, rstd) = moments(src, self.eps);
                            match (&self.weight, &self.bias) {
                                (None, None) => {
                                    scale_shift(src, dst, rstd, -mean * rstd, Activation::None)
                                }
                                (w, b) => {
                                    for (i, (d, s)) in dst.iter_mut().zip(src).enumerate() {
                                        let n = (s.to_f32() - mean) * rstd;
                                        let n = w.as_ref().map_or(n, |w| n * w[i]);
                                        *d = T::from_f32(b.as_ref().map_or(n, |b| n + b[i]));
                                    }
                                }
                            }
                        },
                    )
                });
        });
        Ok(T::into_storage(out))
    }
}

fn check_cpu_dtype(x: &Tensor, op: &'static str) -> Result<()> {
    if !x.device().is_cpu() {
        return Err(KernelError::NotOnCpu { op, input: "x" });
    }
    if !supports_dtype(x.dtype()) {
        return Err(KernelError::UnsupportedDType {
            op,
            dtype: x.dtype().as_str(),
        });
    }
    Ok(())
}

fn affine(t: &Tensor, len: usize, op: &'static str, input: &'static str) -> Result<Vec<f32>> {
    if t.dims() != [len] {
        return Err(KernelError::Shape {
            op,
            input,
            actual: t.dims().to_vec(),
            expected: format!("[{len}]"),
        });
    }
    Ok(t.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

pub(crate) fn not_contiguous() -> candle_core::Error {
    candle_core::Error::Msg("kiln kernel: input must be contiguous".into())
}

pub(crate) fn unsupported(op: &str, dtype: DType) -> candle_core::Error {
    candle_core::Error::Msg(format!("{op}: unsupported dtype {dtype:?}"))
}
