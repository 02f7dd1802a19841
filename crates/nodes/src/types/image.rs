//! [`Image`] (`IMAGE`: `[B, H, W, C]` f32 in 0..1, channels last) and [`Mask`] (`MASK`:
//! `[B, H, W]` f32).

use candle_core::Tensor;
use kiln_graph::Value;

use crate::error::NodesError;

/// A batch of images, `[B, H, W, C]` f32 on the CPU, values nominally in 0..1.
#[derive(Clone, Debug)]
pub struct Image {
    /// The pixels.
    pub pixels: Tensor,
}

impl Image {
    /// ComfyUI's type name.
    pub const TYPE: &'static str = "IMAGE";

    /// Wraps pixels.
    pub fn new(pixels: Tensor) -> Self {
        Image { pixels }
    }

    /// `[B, H, W, C]`, or an error naming `input` when the tensor is not 4-D.
    pub fn dims4(&self, input: &str) -> Result<(usize, usize, usize, usize), NodesError> {
        self.pixels.dims4().map_err(|_| {
            NodesError::input(
                input,
                format!("images must be [B, H, W, C], got {:?}", self.pixels.dims()),
            )
        })
    }

    /// Wraps the image as a node value.
    pub fn into_value(self) -> Value {
        Value::object(Self::TYPE, self)
    }
}

/// A batch of masks, `[B, H, W]` f32 on the CPU.
#[derive(Clone, Debug)]
pub struct Mask {
    /// The mask values.
    pub values: Tensor,
}

impl Mask {
    /// ComfyUI's type name.
    pub const TYPE: &'static str = "MASK";

    /// Wraps mask values.
    pub fn new(values: Tensor) -> Self {
        Mask { values }
    }

    /// `(B, H, W)` of a 2-D (`[H, W]`) or 3-D mask, or an error naming `input`.
    pub fn dims3(&self, input: &str) -> Result<(usize, usize, usize), NodesError> {
        match *self.values.dims() {
            [h, w] => Ok((1, h, w)),
            [b, h, w] => Ok((b, h, w)),
            ref other => Err(NodesError::input(
                input,
                format!("masks must be [B, H, W], got {other:?}"),
            )),
        }
    }

    /// Wraps the mask as a node value.
    pub fn into_value(self) -> Value {
        Value::object(Self::TYPE, self)
    }
}
