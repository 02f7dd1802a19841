//! Tensor-by-scalar operations with PyTorch's rounding: a Python float or 0-d float32 tensor
//! combined with a float32 tensor is applied as one float32 operation per element.

use candle_core::Tensor;

use crate::error::{Result, TensorContext};

/// `x * c`.
pub(crate) fn scale(x: &Tensor, c: f32) -> Result<Tensor> {
    x.affine(f64::from(c), 0.0).context("multiply by scalar")
}

/// `x + c`.
pub(crate) fn add_scalar(x: &Tensor, c: f32) -> Result<Tensor> {
    x.affine(1.0, f64::from(c)).context("add scalar")
}

/// `x / c` as a true division (not a multiplication by `1 / c`).
pub(crate) fn div_scalar(x: &Tensor, c: f32) -> Result<Tensor> {
    let divisor = Tensor::new(c, x.device())
        .and_then(|t| t.to_dtype(x.dtype()))
        .context("divide by scalar")?;
    x.broadcast_div(&divisor).context("divide by scalar")
}

/// `a + b`.
pub(crate) fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.add(b).context("add")
}

/// `a - b`.
pub(crate) fn sub(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.sub(b).context("subtract")
}

/// `x + d * c`: the Euler update `x + d * dt`, rounded like torch (product, then sum).
pub(crate) fn add_scaled(x: &Tensor, d: &Tensor, c: f32) -> Result<Tensor> {
    add(x, &scale(d, c)?)
}

/// `a * x + b * y`, each product rounded before the sum.
pub(crate) fn lincomb(a: f32, x: &Tensor, b: f32, y: &Tensor) -> Result<Tensor> {
    add(&scale(x, a)?, &scale(y, b)?)
}

/// `(x - denoised) / sigma`: the Karras ODE derivative (`to_d`).
pub(crate) fn to_d(x: &Tensor, sigma: f32, denoised: &Tensor) -> Result<Tensor> {
    div_scalar(&sub(x, denoised)?, sigma)
}
