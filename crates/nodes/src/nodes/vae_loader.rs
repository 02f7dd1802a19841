//! `VAELoader` ("Load VAE"): a file of the `vae` folder as `VAE`.

use kiln_graph::{
    ComboInput, ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};

use crate::error::NodesError;
use crate::loader::load_checkpoint;
use crate::nodes::checkpoint_loader_simple::model_path;
use crate::services::NodeServices;

/// `VAELoader`.
pub struct VaeLoader;

impl Node for VaeLoader {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("VAELoader")
            .display_name("Load VAE")
            .category("loaders")
            .input(InputSpec::required("vae_name", ComboInput::dynamic("vae")))
            .output(OutputSpec::new("VAE"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let services = NodeServices::of(ctx)?;
        let path = model_path(services, inputs, "vae", "vae_name")?;
        let loaded = load_checkpoint(services, &path)?;
        let vae = loaded
            .vae
            .clone()
            .ok_or_else(|| NodesError::MissingComponent {
                path: path.clone(),
                what: "the file holds no VAE".to_owned(),
            })?;
        Ok(NodeOutput::new(vec![vae.into_value()]))
    }
}
