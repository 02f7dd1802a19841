//! `VAEEncode` ("VAE Encode"): images to latents (alpha dropped, centre-cropped to a multiple
//! of 8, posterior mean).

use kiln_graph::{
    ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, OutputSpec,
};

use crate::node_util::object;
use crate::types::{Image, Latent, Vae};
use crate::vae_network::{autoencoder, model_error};

/// `VAEEncode`.
pub struct VaeEncode;

impl Node for VaeEncode {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("VAEEncode")
            .display_name("VAE Encode")
            .category("latent")
            .input(InputSpec::required("pixels", "IMAGE"))
            .input(InputSpec::required("vae", "VAE"))
            .output(OutputSpec::new("LATENT"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let pixels = object::<Image>(inputs, "pixels")?;
        let vae = object::<Vae>(inputs, "vae")?;
        pixels.dims4("pixels")?;
        // The VAE's weights stay resident only while it runs.
        let _in_use = vae.weights.in_use();
        let samples = autoencoder(&vae)?
            .encode(&pixels.pixels)
            .map_err(model_error("VAE encoding"))?;
        Ok(NodeOutput::new(vec![Latent::new(samples).into_value()]))
    }
}
