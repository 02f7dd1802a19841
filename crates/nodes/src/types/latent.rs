//! [`Latent`]: ComfyUI's `LATENT` dict — `samples` `[B, C, H, W]` in raw VAE space, an optional
//! inpainting `noise_mask`, and the `batch_index` list that keeps seeds per image.

use candle_core::{DType, Device, Tensor};
use kiln_graph::{NodeError, NodeInputs, Value};

use crate::error::{NodesError, TensorContext};

/// A batch of latents.
#[derive(Clone, Debug)]
pub struct Latent {
    /// `[B, C, H, W]` f32 on the CPU, unscaled (the VAE's own space).
    pub samples: Tensor,
    /// `[B or 1, 1, H', W']` in 0..1: 1 where sampling may change the latent.
    pub noise_mask: Option<Tensor>,
    /// Which batch positions these latents were taken from (`LatentFromBatch`), so noise is
    /// drawn per original index.
    pub batch_index: Option<Vec<usize>>,
}

impl Latent {
    /// ComfyUI's type name.
    pub const TYPE: &'static str = "LATENT";

    /// Latents without mask or batch index.
    pub fn new(samples: Tensor) -> Self {
        Latent {
            samples,
            noise_mask: None,
            batch_index: None,
        }
    }

    /// All-zero latents `[batch, channels, height, width]`.
    pub fn zeros(
        batch: usize,
        channels: usize,
        height: usize,
        width: usize,
    ) -> Result<Self, NodesError> {
        let samples = Tensor::zeros((batch, channels, height, width), DType::F32, &Device::Cpu)
            .context("allocating an empty latent")?;
        Ok(Latent::new(samples))
    }

    /// The `[B, C, H, W]` dims, or an error naming `input` when `samples` is not 4-D.
    pub fn dims4(&self, input: &str) -> Result<(usize, usize, usize, usize), NodesError> {
        self.samples.dims4().map_err(|_| {
            NodesError::input(
                input,
                format!(
                    "latent samples must be [B, C, H, W], got {:?}",
                    self.samples.dims()
                ),
            )
        })
    }

    /// Wraps the latent as a node value.
    pub fn into_value(self) -> Value {
        Value::object(Self::TYPE, self)
    }

    /// The latent input `name`.
    pub fn from_inputs(
        inputs: &NodeInputs,
        name: &str,
    ) -> Result<std::sync::Arc<Latent>, NodeError> {
        inputs.object::<Latent>(name)
    }
}
