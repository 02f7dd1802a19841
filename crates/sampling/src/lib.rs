//! placeholder
mod avx_mathfun;
mod mt19937;
mod torch_rng;
pub use torch_rng::{NormalKernel, TorchGenerator};
