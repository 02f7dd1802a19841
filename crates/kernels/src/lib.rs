//! CPU kernels as candle custom ops, for the layers where candle's own CPU ops are slow or
//! single-threaded: [`conv2d`] (implicit GEMM over the AVX-512 gemm, Winograd F(m,3) for large
//! 3×3 layers), [`group_norm`] fused with
//! SiLU, [`layer_norm`], [`linear`] (bf16 only), and a fused memory-efficient [`attention`] that never builds the `T×T`
//! score matrix. Each takes candle tensors on the CPU in f32, bf16 or f16, computes in f32, and
//! returns the input's dtype (bf16 convolutions multiply in bf16 with f32 sums where the CPU has
//! AVX512-BF16: see [`bf16_compute_available`] and [`bf16_matmul`]); each has a `_slow` twin made
//! of candle ops, the reference its tests and benchmarks compare against. Work runs on one rayon
//! pool sized to the physical cores.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let x = Tensor::ones((1, 4, 8, 8), candle_core::DType::F32, &Device::Cpu)?;
//! let w = Tensor::ones((2, 4, 3, 3), candle_core::DType::F32, &Device::Cpu)?;
//! let y = kiln_kernels::conv2d(&x, &w, None, 1, 1)?;
//! assert_eq!(y.dims(), &[1, 2, 8, 8]);
//! # Ok::<(), kiln_kernels::KernelError>(())
//! ```

#![deny(missing_docs)]

mod attention;
mod conv2d;
mod element;
mod error;
mod geglu;
mod gemm_bf16;
mod gemm_f32;
mod linear;
mod matmul;
mod norm;
mod packed_weight;
mod scratch;
mod simd;
mod threads;
mod winograd;

pub use attention::{attention, attention_slow, attention_with};
pub use conv2d::{conv2d, conv2d_im2col, conv2d_slow, conv2d_values, conv2d_with};
pub use element::{supports_dtype, WeightValues};
pub use error::{KernelError, Result};
pub use geglu::{geglu, geglu_slow};
pub use gemm_bf16::{bf16_compute_available, bf16_matmul, Products};
pub use linear::{linear, linear_slow, linear_values, linear_with};
pub use norm::{group_norm, group_norm_slow, layer_norm, layer_norm_slow, Activation};
pub use packed_weight::{PackedWeight, PackedWeightCache};
pub use threads::{enabled, kernel_threads, physical_cores};
