//! [`Network`]: the diffusion network a [`Model`] runs, built over its weight store when a
//! sampler needs it — the LDM UNet (SD1/SD2/SDXL/refiner), the SD3/SD3.5 MMDiT or the Flux
//! transformer, chosen by the model's architecture.

use candle_core::{DType, Tensor};
use kiln_detect::Architecture;
use kiln_models::{Attention, DiffusionModel, Flux, Mmdit, ModelConditioning, Unet, Weights};

use crate::error::NodesError;
use crate::types::Model;

/// One built diffusion network.
pub(crate) enum Network {
    /// SD1/SD2/SDXL/refiner UNet.
    Unet(Box<Unet>),
    /// SD3 / SD3.5 MMDiT.
    Mmdit(Mmdit),
    /// Flux.1 dev / schnell / fill transformer.
    Flux(Flux),
}

impl Network {
    /// Builds the network of `model` (cheap: layers hold weight names, not copies).
    pub(crate) fn build(model: &Model) -> Result<Network, NodesError> {
        let weights = Weights::new(model.weights.clone());
        let attention = Attention::from_plan(&model.plan);
        let model_error = |what: &str| {
            let context = format!("building the {what}");
            move |source| NodesError::Model {
                context,
                source: Box::new(source),
            }
        };
        match model.architecture {
            Architecture::Sd1
            | Architecture::Sd2
            | Architecture::Sdxl
            | Architecture::SdxlRefiner => Ok(Network::Unet(Box::new(
                Unet::from_weights(&weights, attention).map_err(model_error("UNet"))?,
            ))),
            Architecture::Sd3 => Ok(Network::Mmdit(
                Mmdit::new(weights)
                    .map_err(model_error("MMDiT"))?
                    .with_attention(attention),
            )),
            Architecture::Flux => Ok(Network::Flux(
                Flux::new(weights)
                    .map_err(model_error("Flux transformer"))?
                    .with_attention(attention),
            )),
            other => Err(NodesError::input(
                "model",
                format!("{other:?} diffusion models cannot be sampled yet"),
            )),
        }
    }

    fn inner(&self) -> &dyn DiffusionModel {
        match self {
            Network::Unet(unet) => unet.as_ref(),
            Network::Mmdit(mmdit) => mmdit,
            Network::Flux(flux) => flux,
        }
    }
}

impl DiffusionModel for Network {
    fn compute_dtype(&self) -> DType {
        self.inner().compute_dtype()
    }

    fn predict(
        &self,
        x: &Tensor,
        timesteps: &Tensor,
        cond: &ModelConditioning,
    ) -> kiln_models::Result<Tensor> {
        match self {
            // The sampler resolves Flux's default guidance itself (`ksampler_run::guided`), so
            // `None` here is `FluxDisableGuidance`'s "no guidance term at all".
            Network::Flux(flux) => flux.forward(x, timesteps, cond.context, cond.y, cond.guidance),
            _ => self.inner().predict(x, timesteps, cond),
        }
    }
}
