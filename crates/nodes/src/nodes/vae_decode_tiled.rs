//! `VAEDecodeTiled` ("VAE Decode (Tiled)"): decoding in overlapping tiles (the average of three
//! tilings), for large images.

use kiln_graph::{
    ExecutionContext, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};
use kiln_models::Tiling;

use crate::node_util::{object, size_input};
use crate::nodes::vae_decode::check_channels;
use crate::types::{Image, Latent, Vae};
use crate::vae_network::{autoencoder, model_error};

/// `VAEDecodeTiled`.
pub struct VaeDecodeTiled;

impl Node for VaeDecodeTiled {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("VAEDecodeTiled")
            .display_name("VAE Decode (Tiled)")
            .category("_for_testing")
            .input(InputSpec::required("samples", "LATENT"))
            .input(InputSpec::required("vae", "VAE"))
            .input(InputSpec::required(
                "tile_size",
                IntInput::new(512, 64, 4096).step(32),
            ))
            .input(InputSpec::required(
                "overlap",
                IntInput::new(64, 0, 4096).step(32),
            ))
            .input(
                InputSpec::required("temporal_size", IntInput::new(64, 8, 4096).step(4))
                    .tooltip("Only used for video VAEs: Amount of frames to decode at a time."),
            )
            .input(
                InputSpec::required("temporal_overlap", IntInput::new(8, 4, 4096).step(4))
                    .tooltip("Only used for video VAEs: Amount of frames to overlap."),
            )
            .output(OutputSpec::new("IMAGE"))
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
        let tiling = Tiling::from_decode_node(
            size_input(inputs, "tile_size")?,
            inputs.opt_int("overlap")?.map_or(64, |v| v.max(0) as usize),
            network.config().downscale(),
        );
        let images = network
            .decode_tiled(&latent.samples, tiling)
            .map_err(model_error("tiled VAE decoding"))?;
        Ok(NodeOutput::new(vec![Image::new(images).into_value()]))
    }
}
