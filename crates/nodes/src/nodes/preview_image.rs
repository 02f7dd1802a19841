//! `PreviewImage`: `SaveImage` into the temp folder, prefix `ComfyUI_temp_<5 letters>`, PNG
//! compress level 1, UI type `temp`.

use kiln_graph::{
    ExecutionContext, HiddenKind, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
};
use rand::Rng;

use crate::node_util::object;
use crate::save_images::{hidden_json, metadata_chunks, save_images, SaveOptions};
use crate::services::NodeServices;
use crate::types::Image;

/// ComfyUI's alphabet for the random suffix (sic: `p` twice, no `w`).
const SUFFIX_LETTERS: &[u8] = b"abcdefghijklmnopqrstupvxyz";

/// `PreviewImage` ("Preview Image").
pub struct PreviewImage;

/// `"ComfyUI_temp_" + 5 random letters`.
pub(crate) fn preview_prefix(rng: &mut impl Rng) -> String {
    let suffix: String = (0..5)
        .map(|_| char::from(SUFFIX_LETTERS[rng.random_range(0..SUFFIX_LETTERS.len())]))
        .collect();
    format!("ComfyUI_temp_{suffix}")
}

impl Node for PreviewImage {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("PreviewImage")
            .display_name("Preview Image")
            .category("image")
            .description("Saves the input images to your ComfyUI output directory.")
            .input(InputSpec::required("images", "IMAGE"))
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
        let chunks = metadata_chunks(
            hidden_json(inputs, "prompt"),
            hidden_json(inputs, "extra_pnginfo"),
        );
        let ui = save_images(
            &images,
            &preview_prefix(&mut rand::rng()),
            &chunks,
            SaveOptions {
                folder: services.temp_directory(),
                kind: "temp",
                compress_level: 1,
                metadata: !services.metadata_disabled(),
            },
        )?;
        Ok(NodeOutput::ui(ui))
    }
}
