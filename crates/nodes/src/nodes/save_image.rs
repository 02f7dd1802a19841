//! `SaveImage`: writes each image as `<prefix>_<counter:05>_.png` in the output folder with the
//! prompt and workflow as PNG text chunks.

use kiln_graph::{
    ExecutionContext, HiddenKind, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    StringInput,
};

use crate::node_util::object;
use crate::save_images::{hidden_json, metadata_chunks, save_images, SaveOptions};
use crate::services::NodeServices;
use crate::types::Image;

/// `SaveImage` ("Save Image").
pub struct SaveImage;

impl Node for SaveImage {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("SaveImage")
            .display_name("Save Image")
            .category("image")
            .description("Saves the input images to your ComfyUI output directory.")
            .input(InputSpec::required("images", "IMAGE").tooltip("The images to save."))
            .input(
                InputSpec::required("filename_prefix", StringInput::new("ComfyUI")).tooltip(
                    "The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.",
                ),
            )
            .input(InputSpec::hidden("prompt", HiddenKind::Prompt))
            .input(InputSpec::hidden("extra_pnginfo", HiddenKind::ExtraPngInfo))
            .output_node()
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let services = NodeServices::of(ctx)?;
        let images = object::<Image>(inputs, "images")?;
        let prefix = inputs.opt_string("filename_prefix")?.unwrap_or("ComfyUI");
        let chunks = metadata_chunks(
            hidden_json(inputs, "prompt"),
            hidden_json(inputs, "extra_pnginfo"),
        );
        let ui = save_images(
            &images,
            prefix,
            &chunks,
            SaveOptions {
                folder: services.output_directory(),
                kind: "output",
                compress_level: 4,
                metadata: !services.metadata_disabled(),
            },
        )?;
        Ok(NodeOutput::ui(ui))
    }
}
