//! The UNet's convolutional blocks (`openaimodel.py`): `ResBlock` with its timestep-embedding
//! injection, the strided-conv `Downsample` and the nearest-neighbour `Upsample`.

use candle_core::Tensor;

use super::expect_shape;
use crate::error::Result;
use crate::layers::{Conv2d, GroupNorm, Linear};
use crate::weights::Weights;

/// GroupNorm of the res blocks and the output head: 32 groups, PyTorch's default ε.
pub(super) const RES_NORM_GROUPS: usize = 32;
pub(super) const RES_NORM_EPS: f64 = 1e-5;

/// `ResBlock`: `in_layers` (GroupNorm, SiLU, 3×3 conv), plus the projected time embedding,
/// `out_layers` (GroupNorm, SiLU, dropout, 3×3 conv), plus the (1×1-projected) input.
#[derive(Debug, Clone)]
pub(super) struct ResBlock {
    in_layers_0: GroupNorm,
    in_layers_2: Conv2d,
    emb_layers_1: Linear,
    out_layers_0: GroupNorm,
    out_layers_3: Conv2d,
    skip_connection: Option<Conv2d>,
}

impl ResBlock {
    /// The block under `weights` (`input_blocks.N.0`, `middle_block.0`, …) mapping `channels` to
    /// `out_channels`, with a time embedding `emb_channels` wide.
    pub(super) fn new(
        weights: &Weights,
        channels: usize,
        out_channels: usize,
        emb_channels: usize,
    ) -> Result<Self> {
        expect_shape(weights, "in_layers.0.weight", &[channels])?;
        expect_shape(
            weights,
            "in_layers.2.weight",
            &[out_channels, channels, 3, 3],
        )?;
        expect_shape(
            weights,
            "emb_layers.1.weight",
            &[out_channels, emb_channels],
        )?;
        expect_shape(weights, "out_layers.0.weight", &[out_channels])?;
        expect_shape(
            weights,
            "out_layers.3.weight",
            &[out_channels, out_channels, 3, 3],
        )?;
        let skip_connection = if channels == out_channels {
            None
        } else {
            expect_shape(
                weights,
                "skip_connection.weight",
                &[out_channels, channels, 1, 1],
            )?;
            Some(Conv2d::new(weights.pp("skip_connection"), 0, 1)?)
        };
        Ok(ResBlock {
            in_layers_0: GroupNorm::new(weights.pp("in_layers.0"), RES_NORM_GROUPS, RES_NORM_EPS)?,
            in_layers_2: Conv2d::new(weights.pp("in_layers.2"), 1, 1)?,
            emb_layers_1: Linear::new(weights.pp("emb_layers.1"))?,
            out_layers_0: GroupNorm::new(
                weights.pp("out_layers.0"),
                RES_NORM_GROUPS,
                RES_NORM_EPS,
            )?,
            out_layers_3: Conv2d::new(weights.pp("out_layers.3"), 1, 1)?,
            skip_connection,
        })
    }

    /// `x` `[B, C, H, W]`, `emb` `[B, E]` → `[B, C_out, H, W]`.
    pub(super) fn forward(&self, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
        let h = self
            .in_layers_2
            .forward(&self.in_layers_0.forward_silu(x)?)?;
        let emb_out = self
            .emb_layers_1
            .forward(&emb.silu()?)?
            .to_dtype(h.dtype())?
            .unsqueeze(2)?
            .unsqueeze(3)?;
        let h = h.broadcast_add(&emb_out)?;
        let h = self
            .out_layers_3
            .forward(&self.out_layers_0.forward_silu(&h)?)?;
        let skip = match &self.skip_connection {
            Some(conv) => conv.forward(x)?,
            None => x.clone(),
        };
        Ok((skip + h)?)
    }
}

/// `Downsample` with `conv_resample`: a 3×3 convolution of stride 2 (`input_blocks.N.0.op`).
#[derive(Debug, Clone)]
pub(super) struct Downsample {
    op: Conv2d,
}

impl Downsample {
    /// The convolution under `weights.op`, `channels` wide.
    pub(super) fn new(weights: &Weights, channels: usize) -> Result<Self> {
        expect_shape(weights, "op.weight", &[channels, channels, 3, 3])?;
        Ok(Downsample {
            op: Conv2d::new(weights.pp("op"), 1, 2)?,
        })
    }

    /// Halves the spatial size, rounding up (`⌈H/2⌉`).
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.op.forward(x)
    }
}

/// `Upsample` with `conv_resample`: nearest-neighbour resize to twice the size, or to the size
/// of the skip connection it will be joined with, then a 3×3 convolution (`….conv`).
#[derive(Debug, Clone)]
pub(super) struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    /// The convolution under `weights.conv`, `channels` wide.
    pub(super) fn new(weights: &Weights, channels: usize) -> Result<Self> {
        expect_shape(weights, "conv.weight", &[channels, channels, 3, 3])?;
        Ok(Upsample {
            conv: Conv2d::new(weights.pp("conv"), 1, 1)?,
        })
    }

    /// Resizes `x` to `target` `(H, W)` (default: twice its size), then convolves. ComfyUI
    /// passes the next skip connection's size, so odd latent sizes come back exactly.
    pub(super) fn forward(&self, x: &Tensor, target: Option<(usize, usize)>) -> Result<Tensor> {
        let (_, _, height, width) = x.dims4()?;
        let (target_h, target_w) = target.unwrap_or((height * 2, width * 2));
        self.conv
            .forward(&x.upsample_nearest2d(target_h, target_w)?)
    }
}
