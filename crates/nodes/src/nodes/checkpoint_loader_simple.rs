//! `CheckpointLoaderSimple` ("Load Checkpoint"): a file of the `checkpoints` folder as
//! `MODEL`, `CLIP` and `VAE`, detected and planned for this device, cached across prompts.

use kiln_graph::{
    ComboInput, ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};

use crate::error::NodesError;
use crate::loader::load_checkpoint;
use crate::services::NodeServices;

/// `CheckpointLoaderSimple`.
pub struct CheckpointLoaderSimple;

/// The file a model combo names under `folder`, or an error naming `input`.
pub(crate) fn model_path(
    services: &NodeServices,
    inputs: &NodeInputs,
    folder: &str,
    input: &str,
) -> Result<std::path::PathBuf, NodeError> {
    let name = inputs.string(input)?;
    services
        .folders()
        .try_resolve(folder, name)
        .map_err(|source| {
            NodesError::Folder {
                input: input.to_owned(),
                source: Box::new(source),
            }
            .into()
        })
}

impl Node for CheckpointLoaderSimple {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("CheckpointLoaderSimple")
            .display_name("Load Checkpoint")
            .category("loaders")
            .description(
                "Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
            )
            .input(
                InputSpec::required("ckpt_name", ComboInput::dynamic("checkpoints"))
                    .tooltip("The name of the checkpoint (model) to load."),
            )
            .output(OutputSpec::new("MODEL").tooltip("The model used for denoising latents."))
            .output(
                OutputSpec::new("CLIP").tooltip("The CLIP model used for encoding text prompts."),
            )
            .output(OutputSpec::new("VAE").tooltip(
                "The VAE model used for encoding and decoding images to and from latent space.",
            ))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let services = NodeServices::of(ctx)?;
        let path = model_path(services, inputs, "checkpoints", "ckpt_name")?;
        let loaded = load_checkpoint(services, &path)?;
        let missing = |what: &str| -> NodeError {
            NodesError::MissingComponent {
                path: path.clone(),
                what: format!("the checkpoint has no {what}"),
            }
            .into()
        };
        let model = loaded
            .model
            .clone()
            .ok_or_else(|| missing("diffusion model"))?;
        let clip = loaded.clip.clone().ok_or_else(|| missing("text encoder"))?;
        let vae = loaded.vae.clone().ok_or_else(|| missing("VAE"))?;
        Ok(NodeOutput::new(vec![
            model.into_value(),
            clip.into_value(),
            vae.into_value(),
        ]))
    }
}
