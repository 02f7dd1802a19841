//! `VAEDecode` ("VAE Decode"): latents to images, falling back to tiled decoding when memory
//! runs out, as ComfyUI does.

use kiln_graph::{
    ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, OutputSpec,
};
use kiln_models::{ModelError, Tiling};

use crate::error::NodesError;
use crate::node_util::object;
use crate::types::{Image, Latent, Vae};
use crate::vae_network::{autoencoder, model_error};

/// `VAEDecode`.
pub struct VaeDecode;

impl Node for VaeDecode {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("VAEDecode")
            .display_name("VAE Decode")
            .category("latent")
            .description("Decodes latent images back into pixel space images.")
            .input(InputSpec::required("samples", "LATENT").tooltip("The latent to be decoded."))
            .input(
                InputSpec::required("vae", "VAE")
                    .tooltip("The VAE model used for decoding the latent."),
            )
            .output(OutputSpec::new("IMAGE").tooltip("The decoded image."))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let latent = object::<Latent>(inputs, "samples")?;
        let vae = object::<Vae>(inputs, "vae")?;
        check_channels(&latent, &vae)?;
        // The VAE's weights stay resident only while it runs.
        let _in_use = vae.weights.in_use();
        let network = autoencoder(&vae)?;
        let images = match network.decode(&latent.samples) {
            Err(ModelError::OutOfMemory(reason)) => {
                tracing::warn!("VAE decode ran out of memory ({reason}); retrying with tiles");
                network.decode_tiled(&latent.samples, Tiling::decode_default())
            }
            other => other,
        }
        .map_err(model_error("VAE decoding"))?;
        Ok(NodeOutput::new(vec![Image::new(images).into_value()]))
    }
}

/// The families whose latents have `channels` channels, for error messages.
fn latent_families(channels: usize) -> &'static str {
    match channels {
        4 => " (SD1/SD2/SDXL)",
        16 => " (SD3/Flux)",
        _ => "",
    }
}

/// Latents must have the VAE's channel count (checked before decoding, which would otherwise
/// fail inside a convolution).
pub(crate) fn check_channels(latent: &Latent, vae: &Vae) -> Result<(), NodesError> {
    let (_, channels, _, _) = latent.dims4("samples")?;
    if channels != vae.latent_channels {
        return Err(NodesError::input(
            "samples",
            format!(
                "latent channel mismatch: the latent has {channels} channels{} but the VAE {} \
                 decodes {}-channel latents{}; use the VAE that belongs to the model",
                latent_families(channels),
                vae.source.display(),
                vae.latent_channels,
                latent_families(vae.latent_channels)
            ),
        ));
    }
    Ok(())
}
