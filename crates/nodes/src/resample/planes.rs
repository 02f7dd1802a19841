//! [`Planes`]: a `[B, C, H, W]` f32 buffer, the working form of every resize, with conversions
//! from and to candle tensors in both channel orders.

use candle_core::{Device, Tensor};

use crate::error::{NodesError, TensorContext};

/// `batch × channels` planes of `height × width` f32 values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Planes {
    /// B.
    pub batch: usize,
    /// C.
    pub channels: usize,
    /// H.
    pub height: usize,
    /// W.
    pub width: usize,
    /// `B·C·H·W` values.
    pub data: Vec<f32>,
}

impl Planes {
    /// Wraps `data`, checking its length.
    pub fn new(
        batch: usize,
        channels: usize,
        height: usize,
        width: usize,
        data: Vec<f32>,
    ) -> Result<Self, NodesError> {
        let expected = batch * channels * height * width;
        if data.len() != expected {
            return Err(NodesError::input(
                "samples",
                format!(
                    "{} values for a {batch}x{channels}x{height}x{width} tensor",
                    data.len()
                ),
            ));
        }
        Ok(Planes {
            batch,
            channels,
            height,
            width,
            data,
        })
    }

    /// Zeros.
    pub fn zeros(batch: usize, channels: usize, height: usize, width: usize) -> Self {
        Planes {
            batch,
            channels,
            height,
            width,
            data: vec![0.0; batch * channels * height * width],
        }
    }

    /// From a `[B, C, H, W]` tensor.
    pub fn from_nchw(tensor: &Tensor) -> Result<Self, NodesError> {
        let (b, c, h, w) = tensor.dims4().context("reading a [B, C, H, W] tensor")?;
        let data = tensor
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .context("reading a [B, C, H, W] tensor")?;
        Planes::new(b, c, h, w, data)
    }

    /// From a channels-last `[B, H, W, C]` tensor (an `IMAGE`).
    pub fn from_nhwc(tensor: &Tensor) -> Result<Self, NodesError> {
        let nchw = tensor
            .permute((0, 3, 1, 2))
            .and_then(|t| t.contiguous())
            .context("reading a [B, H, W, C] tensor")?;
        Planes::from_nchw(&nchw)
    }

    /// As a `[B, C, H, W]` CPU tensor.
    pub fn to_nchw(&self) -> Result<Tensor, NodesError> {
        Tensor::from_slice(
            &self.data,
            (self.batch, self.channels, self.height, self.width),
            &Device::Cpu,
        )
        .context("building a [B, C, H, W] tensor")
    }

    /// As a channels-last `[B, H, W, C]` CPU tensor.
    pub fn to_nhwc(&self) -> Result<Tensor, NodesError> {
        self.to_nchw()?
            .permute((0, 2, 3, 1))
            .and_then(|t| t.contiguous())
            .context("building a [B, H, W, C] tensor")
    }

    /// The value at `(b, c, y, x)`.
    pub fn at(&self, b: usize, c: usize, y: usize, x: usize) -> f32 {
        self.data[self.index(b, c, y, x)]
    }

    /// The flat index of `(b, c, y, x)`.
    pub fn index(&self, b: usize, c: usize, y: usize, x: usize) -> usize {
        ((b * self.channels + c) * self.height + y) * self.width + x
    }

    /// Rows `y..y+height`, columns `x..x+width` of every plane.
    pub fn crop(&self, y: usize, x: usize, height: usize, width: usize) -> Planes {
        let height = height.min(self.height.saturating_sub(y));
        let width = width.min(self.width.saturating_sub(x));
        let mut out = Planes::zeros(self.batch, self.channels, height, width);
        for b in 0..self.batch {
            for c in 0..self.channels {
                for row in 0..height {
                    let from = self.index(b, c, y + row, x);
                    let to = out.index(b, c, row, 0);
                    out.data[to..to + width].copy_from_slice(&self.data[from..from + width]);
                }
            }
        }
        out
    }
}
