//! The layers every model is built from. Each holds only the *names* of its weights and fetches
//! them from [`Weights`] when it runs, so one `Linear` serves f32, f16, bf16, fp8 (widened through
//! a lookup table), scaled fp8, GGUF (multiplied blockwise) and streamed weights alike — no model
//! copy per storage format. On the CPU, convolutions and norms run on `kiln_kernels` (multithreaded,
//! f32 accumulation) rather than candle's single-threaded or slower ops.

use candle_core::quantized::QMatMul;
use candle_core::{Module, Shape, Tensor, D};
use kiln_runtime::{HeldTensor, MappedValues};

use crate::error::{ModelError, Result};
use crate::weights::Weights;

/// `y = x Wᵀ + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    weights: Weights,
    has_bias: bool,
    quantized: Option<QMatMul>,
}

impl Linear {
    /// The linear layer whose `weight` (and `bias`, when present) live under `weights`.
    pub fn new(weights: Weights) -> Result<Self> {
        let shape = weights.shape("weight")?;
        if shape.rank() != 2 {
            return Err(ModelError::WeightShape {
                name: weights.path("weight"),
                actual: shape.dims().to_vec(),
                expected: "a 2-D [out, in] matrix".to_string(),
            });
        }
        let quantized = match weights.quantized("weight") {
            Some(q) => Some(QMatMul::from_arc(q)?),
            None => None,
        };
        let has_bias = weights.contains("bias");
        Ok(Linear {
            weights,
            has_bias,
            quantized,
        })
    }

    /// Output features.
    pub fn out_features(&self) -> Result<usize> {
        Ok(self.weights.shape("weight")?.dims()[0])
    }

    /// Applies the layer to `x` of shape `[…, in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = &row_major(x)?;
        let y = match &self.quantized {
            Some(q) => {
                // candle's quantised matmul computes in f32; keep the caller's dtype around it.
                let dtype = x.dtype();
                q.forward(&x.to_dtype(candle_core::DType::F32)?)?
                    .to_dtype(dtype)?
            }
            None if use_cpu_kernel(x) => {
                // The kernel widens a 16-bit weight per call, multiplies in bf16 where the plan
                // or the input says so, and adds the bias in f32 before rounding the result.
                let bias = if self.has_bias {
                    Some(self.weights.get("bias")?)
                } else {
                    None
                };
                let products = self.weights.products();
                if let Some(values) = self.weights.mapped_values("weight")? {
                    let dims = self.weights.shape("weight")?.dims2()?;
                    return kiln_kernels::linear_values(
                        x,
                        values,
                        [dims.0, dims.1],
                        bias.as_ref(),
                        products,
                        Some(&self.weights.packed_cache("weight")),
                    )
                    .map_err(from_kernel);
                }
                let w = self.weights.get_unwidened("weight")?;
                return kiln_kernels::linear_with(x, &w, bias.as_ref(), products)
                    .map_err(from_kernel);
            }
            None => {
                let w = self.weights.get("weight")?;
                match x.dims() {
                    [b1, b2, m, _] => {
                        let w = w.broadcast_left((*b1, *b2))?.t()?;
                        x.matmul(&w)?.reshape((*b1, *b2, *m, ()))?
                    }
                    [b, m, _] => {
                        let w = w.broadcast_left(*b)?.t()?;
                        x.matmul(&w)?.reshape((*b, *m, ()))?
                    }
                    _ => x.matmul(&w.t()?)?,
                }
            }
        };
        if self.has_bias {
            Ok(y.broadcast_add(&self.weights.get("bias")?)?)
        } else {
            Ok(y)
        }
    }
}

/// 2-D convolution with square kernels.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weights: Weights,
    has_bias: bool,
    padding: usize,
    stride: usize,
}

impl Conv2d {
    /// The convolution whose `weight` `[out, in, k, k]` (and `bias`) live under `weights`.
    pub fn new(weights: Weights, padding: usize, stride: usize) -> Result<Self> {
        let shape = weights.shape("weight")?;
        if shape.rank() != 4 {
            return Err(ModelError::WeightShape {
                name: weights.path("weight"),
                actual: shape.dims().to_vec(),
                expected: "a 4-D [out, in, kh, kw] kernel".to_string(),
            });
        }
        let has_bias = weights.contains("bias");
        Ok(Conv2d {
            weights,
            has_bias,
            padding,
            stride,
        })
    }

    /// Output channels.
    pub fn out_channels(&self) -> Result<usize> {
        Ok(self.weights.shape("weight")?.dims()[0])
    }

    /// Applies the convolution to `x` `[B, C, H, W]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if use_cpu_kernel(x) {
            let bias = if self.has_bias {
                Some(self.weights.get("bias")?)
            } else {
                None
            };
            let products = self.weights.products();
            if let Some(values) = self.weights.mapped_values("weight")? {
                let dims = self.weights.shape("weight")?.dims4()?;
                return kiln_kernels::conv2d_values(
                    x,
                    values,
                    [dims.0, dims.1, dims.2, dims.3],
                    bias.as_ref(),
                    self.padding,
                    self.stride,
                    products,
                    Some(&self.weights.packed_cache("weight")),
                )
                .map_err(from_kernel);
            }
            let w = self.weights.get_unwidened("weight")?;
            return kiln_kernels::conv2d_with(
                x,
                &w,
                bias.as_ref(),
                self.padding,
                self.stride,
                products,
            )
            .map_err(from_kernel);
        }
        let w = self.weights.get("weight")?;
        let y = x.conv2d(&w, self.padding, self.stride, 1, 1)?;
        if self.has_bias {
            let b = self.weights.get("bias")?;
            let channels = b.dim(0)?;
            Ok(y.broadcast_add(&b.reshape((1, channels, 1, 1))?)?)
        } else {
            Ok(y)
        }
    }
}

/// Group normalisation over `[B, C, …]`, statistics in f32 (as PyTorch does for half inputs).
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weights: Weights,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    /// The norm whose `weight`/`bias` live under `weights`.
    pub fn new(weights: Weights, groups: usize, eps: f64) -> Result<Self> {
        let channels = weights
            .shape("weight")?
            .dims()
            .first()
            .copied()
            .unwrap_or(0);
        if groups == 0 || channels % groups != 0 {
            return Err(ModelError::WeightShape {
                name: weights.path("weight"),
                actual: vec![channels],
                expected: format!("a channel count divisible by {groups} groups"),
            });
        }
        Ok(GroupNorm {
            weights,
            groups,
            eps,
        })
    }

    /// Normalises `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, kiln_kernels::Activation::None)
    }

    /// Normalises `x` and applies SiLU in the same pass (every ResNet block's `norm → SiLU`).
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, kiln_kernels::Activation::Silu)
    }

    fn forward_with(&self, x: &Tensor, activation: kiln_kernels::Activation) -> Result<Tensor> {
        if use_cpu_kernel(x) && x.rank() >= 2 {
            let w = self.weights.get("weight")?;
            let b = self.weights.get("bias")?;
            return kiln_kernels::group_norm(x, self.groups, &w, &b, self.eps, activation)
                .map_err(from_kernel);
        }
        let y = self.forward_candle(x)?;
        Ok(match activation {
            kiln_kernels::Activation::Silu => y.silu()?,
            kiln_kernels::Activation::None => y,
        })
    }

    fn forward_candle(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let dims = x.dims().to_vec();
        let (b, c) = (dims[0], dims[1]);
        let x32 = x.to_dtype(candle_core::DType::F32)?;
        let grouped = x32.reshape((b, self.groups, ()))?;
        let mean = grouped.mean_keepdim(D::Minus1)?;
        let centered = grouped.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let mut affine_shape = vec![1, c];
        affine_shape.extend(std::iter::repeat_n(1, dims.len() - 2));
        let w = self
            .weights
            .get("weight")?
            .to_dtype(candle_core::DType::F32)?
            .reshape(affine_shape.clone())?;
        let bias = self
            .weights
            .get("bias")?
            .to_dtype(candle_core::DType::F32)?
            .reshape(affine_shape)?;
        Ok(normed
            .reshape(dims)?
            .broadcast_mul(&w)?
            .broadcast_add(&bias)?
            .to_dtype(dtype)?)
    }
}

/// Layer normalisation over the last dimension, statistics in f32.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weights: Weights,
    has_affine: bool,
    eps: f64,
}

impl LayerNorm {
    /// The norm whose `weight`/`bias` live under `weights`.
    pub fn new(weights: Weights, eps: f64) -> Result<Self> {
        let has_affine = weights.contains("weight");
        Ok(LayerNorm {
            weights,
            has_affine,
            eps,
        })
    }

    /// Normalises `x` over its last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if use_cpu_kernel(x) {
            let (w, b) = if self.has_affine {
                let b = if self.weights.contains("bias") {
                    Some(self.weights.get("bias")?)
                } else {
                    None
                };
                (Some(self.weights.get("weight")?), b)
            } else {
                (None, None)
            };
            return kiln_kernels::layer_norm(x, w.as_ref(), b.as_ref(), self.eps)
                .map_err(from_kernel);
        }
        let dtype = x.dtype();
        let x32 = x.to_dtype(candle_core::DType::F32)?;
        let mean = x32.mean_keepdim(D::Minus1)?;
        let centered = x32.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let mut y = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        if self.has_affine {
            let w = self
                .weights
                .get("weight")?
                .to_dtype(candle_core::DType::F32)?;
            y = y.broadcast_mul(&w)?;
            if self.weights.contains("bias") {
                let b = self
                    .weights
                    .get("bias")?
                    .to_dtype(candle_core::DType::F32)?;
                y = y.broadcast_add(&b)?;
            }
        }
        Ok(y.to_dtype(dtype)?)
    }
}

/// Root-mean-square normalisation over the last dimension (T5's `T5LayerNorm`, the qk-norms of
/// Flux and SD3.5): `x / sqrt(mean(x²) + eps) · weight`, statistics in f32, no mean, no bias.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weights: Weights,
    leaf: &'static str,
    eps: f64,
}

impl RmsNorm {
    /// The norm whose `weight` lives under `weights`.
    pub fn new(weights: Weights, eps: f64) -> Result<Self> {
        RmsNorm::with_leaf(weights, "weight", eps)
    }

    /// The norm whose scale is stored as `leaf` (Flux names it `scale`).
    pub fn with_leaf(weights: Weights, leaf: &'static str, eps: f64) -> Result<Self> {
        weights.shape(leaf)?;
        Ok(RmsNorm { weights, leaf, eps })
    }

    /// Normalises `x` over its last dimension; the result has `x`'s dtype.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x32 = x.to_dtype(candle_core::DType::F32)?;
        let mean_square = x32.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = x32.broadcast_div(&(mean_square + self.eps)?.sqrt()?)?;
        let scale = self
            .weights
            .get(self.leaf)?
            .to_dtype(candle_core::DType::F32)?;
        Ok(normed.broadcast_mul(&scale)?.to_dtype(dtype)?)
    }
}

/// A lookup table of row vectors.
#[derive(Debug, Clone)]
pub struct Embedding {
    weights: Weights,
}

impl Embedding {
    /// The embedding whose `weight` `[rows, dim]` lives under `weights`.
    pub fn new(weights: Weights) -> Result<Self> {
        Ok(Embedding { weights })
    }

    /// Rows for the ids `[B, T]` (u32) → `[B, T, dim]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let mut shape = ids.dims().to_vec();
        let rows = self.rows(&ids.flatten_all()?)?;
        shape.push(rows.dim(1)?);
        Ok(rows.reshape(shape)?)
    }

    /// Rows for flat ids `[N]` → `[N, dim]`, in the compute dtype on the compute device. Rows are
    /// selected before widening where the held form allows it, so a lookup never widens the whole
    /// vocabulary (49408 rows for CLIP) of an f16 or fp8 table.
    pub fn rows(&self, ids: &Tensor) -> Result<Tensor> {
        let held = self.weights.held("weight")?;
        let device = self.weights.device();
        let compute = self.weights.dtype();
        match held {
            HeldTensor::Native(table) => {
                let ids = ids.to_device(table.device())?;
                Ok(table
                    .index_select(&ids, 0)?
                    .to_device(device)?
                    .to_dtype(compute)?)
            }
            HeldTensor::Fp8Bytes {
                bytes,
                format,
                shape,
                scale,
            } if shape.rank() == 2 => {
                let dim = shape.dims()[1];
                let ids = ids.to_device(bytes.device())?;
                let selected = bytes.reshape(shape.clone())?.index_select(&ids, 0)?;
                let count = selected.dim(0)?;
                let rows = HeldTensor::Fp8Bytes {
                    bytes: selected.flatten_all()?,
                    format: *format,
                    shape: Shape::from_dims(&[count, dim]),
                    scale: *scale,
                };
                Ok(rows.widen(compute)?.to_device(device)?)
            }
            HeldTensor::Mapped { shape, .. } if shape.rank() == 2 => {
                let values = held
                    .mapped_values()
                    .ok_or_else(|| ModelError::WeightShape {
                        name: self.weights.path("weight"),
                        actual: shape.dims().to_vec(),
                        expected: "a float table".to_string(),
                    })?;
                let (count, dim) = (shape.dims()[0], shape.dims()[1]);
                let ids = ids.to_dtype(candle_core::DType::U32)?.to_vec1::<u32>()?;
                let selected = ids.len();
                let mut rows = Vec::with_capacity(selected * dim);
                for id in ids {
                    let id = id as usize;
                    if id >= count {
                        return Err(ModelError::Input {
                            model: "embedding",
                            input: "ids",
                            problem: format!("holds id {id} of a table of {count} rows"),
                        });
                    }
                    let row = id * dim..(id + 1) * dim;
                    match values {
                        MappedValues::F32(v) => rows.extend_from_slice(&v[row]),
                        MappedValues::F16(v) => rows.extend(v[row].iter().map(|x| x.to_f32())),
                        MappedValues::BF16(v) => rows.extend(v[row].iter().map(|x| x.to_f32())),
                    }
                }
                let rows = Tensor::from_vec(rows, (selected, dim), device)?;
                Ok(rows.to_dtype(compute)?)
            }
            _ => {
                let table = self.weights.get("weight")?;
                Ok(table.index_select(&ids.to_device(device)?, 0)?)
            }
        }
    }

    /// Width of each row.
    pub fn dim(&self) -> Result<usize> {
        let shape = self.weights.shape("weight")?;
        shape
            .dims()
            .get(1)
            .copied()
            .ok_or_else(|| ModelError::WeightShape {
                name: self.weights.path("weight"),
                actual: shape.dims().to_vec(),
                expected: "a 2-D [rows, dim] table".to_string(),
            })
    }

    /// Number of rows.
    pub fn len(&self) -> Result<usize> {
        Ok(self
            .weights
            .shape("weight")?
            .dims()
            .first()
            .copied()
            .unwrap_or(0))
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The whole table (for textual-inversion splicing and weight tying).
    pub fn table(&self) -> Result<Tensor> {
        self.weights.get("weight")
    }
}

/// Whether `x` goes to a `kiln_kernels` CPU kernel: it lives on the CPU in a dtype the kernels
/// compute (f32/bf16/f16), and `KILN_CPU_KERNELS=candle` has not asked for candle's own ops (a
/// benchmarking switch).
pub(crate) fn use_cpu_kernel(x: &Tensor) -> bool {
    x.device().is_cpu() && kiln_kernels::supports_dtype(x.dtype()) && kiln_kernels::enabled()
}

/// A kernel failure as this crate's error.
pub(crate) fn from_kernel(error: kiln_kernels::KernelError) -> ModelError {
    match error {
        kiln_kernels::KernelError::Candle(source) => ModelError::Candle {
            context: "CPU kernel".to_string(),
            source,
        },
        other => ModelError::Candle {
            context: "CPU kernel".to_string(),
            source: candle_core::Error::Msg(other.to_string()),
        },
    }
}

/// `x` itself when its strides are plain row-major, else a copy that is.
///
/// candle 0.11's CPU matmul misreads a strided view with a size-1 dimension (one token taken
/// from a transposed tensor), and `contiguous()` does not copy such a view because its layout
/// counts as contiguous. Matmul inputs therefore go through here.
pub(crate) fn row_major(x: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let mut expected = vec![0usize; dims.len()];
    let mut step = 1usize;
    for (slot, &dim) in expected.iter_mut().zip(dims).rev() {
        *slot = step;
        step *= dim;
    }
    if x.stride() == expected.as_slice() && x.layout().start_offset() == 0 {
        Ok(x.clone())
    } else {
        Ok(x.force_contiguous()?)
    }
}
