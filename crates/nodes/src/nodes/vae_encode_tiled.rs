//! `VAEEncodeTiled` ("VAE Encode (Tiled)"): encoding in overlapping tiles.

use kiln_graph::{
    ExecutionContext, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};
use kiln_models::Tiling;

use crate::node_util::{object, size_input};
use crate::types::{Image, Latent, Vae};
use crate::vae_network::{autoencoder, model_error};

/// `VAEEncodeTiled`.
pub struct VaeEncodeTiled;

impl Node for VaeEncodeTiled {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("VAEEncodeTiled")
            .display_name("VAE Encode (Tiled)")
            .category("_for_testing")
            .input(InputSpec::required("pixels", "IMAGE"))
            .input(InputSpec::required("vae", "VAE"))
            .input(InputSpec::required(
                "tile_size",
                IntInput::new(512, 64, 4096).step(64),
            ))
            .input(InputSpec::required(
                "overlap",
                IntInput::new(64, 0, 4096).step(32),
            ))
            .input(
                InputSpec::required("temporal_size", IntInput::new(64, 8, 4096).step(4))
                    .tooltip("Only used for video VAEs: Amount of frames to encode at a time."),
            )
            .input(
                InputSpec::required("temporal_overlap", IntInput::new(8, 4, 4096).step(4))
                    .tooltip("Only used for video VAEs: Amount of frames to overlap."),
            )
            .output(OutputSpec::new("LATENT"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let pixels = object::<Image>(inputs, "pixels")?;
        let vae = object::<Vae>(inputs, "vae")?;
        let tile = size_input(inputs, "tile_size")?;
        let tiling = Tiling {
            tile_x: tile,
            tile_y: tile,
            overlap: size_input(inputs, "overlap")?,
        };
        // The VAE's weights stay resident only while it runs.
        let _in_use = vae.weights.in_use();
        let samples = autoencoder(&vae)?
            .encode_tiled(&pixels.pixels, tiling)
            .map_err(model_error("tiled VAE encoding"))?;
        Ok(NodeOutput::new(vec![Latent::new(samples).into_value()]))
    }
}
