//! Building the AutoencoderKL network over a [`Vae`]'s weights with its plan's attention.

use kiln_models::{Attention, AutoencoderKl, VaeConfig, Weights};

use crate::error::NodesError;
use crate::types::Vae;

/// Maps a model error to a node error with `context`.
pub(crate) fn model_error(context: &str) -> impl Fn(kiln_models::ModelError) -> NodesError + '_ {
    move |source| NodesError::Model {
        context: context.to_owned(),
        source: Box::new(source),
    }
}

/// The network of `vae`.
pub(crate) fn autoencoder(vae: &Vae) -> Result<AutoencoderKl, NodesError> {
    let weights = Weights::new(vae.weights.clone());
    let config =
        VaeConfig::from_weights(&weights).map_err(model_error("reading the VAE configuration"))?;
    Ok(AutoencoderKl::new(weights, config)
        .map_err(model_error("building the VAE"))?
        .with_attention(Attention::from_plan(&vae.plan)))
}
