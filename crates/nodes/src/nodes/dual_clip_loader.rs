//! `DualCLIPLoader`: two text encoder files of the `text_encoders` folder joined into one
//! `CLIP` (SDXL: CLIP-L + CLIP-G; SD3: any two of CLIP-L, CLIP-G, T5-XXL; Flux: CLIP-L + T5-XXL).

use kiln_graph::{
    ComboInput, ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};

use crate::loader::ClipType;
use crate::nodes::clip_loader::{clip_planner, device_input, load_clip_output, text_encoder_paths};
use crate::services::NodeServices;

/// `DualCLIPLoader`.
pub struct DualClipLoader;

/// ComfyUI 0.3.64's `type` choices, in its order (Kiln encodes `sdxl`, `sd3` and `flux`).
const DUAL_CLIP_TYPES: [&str; 6] = [
    "sdxl",
    "sd3",
    "flux",
    "hunyuan_video",
    "hidream",
    "hunyuan_image",
];

impl Node for DualClipLoader {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("DualCLIPLoader")
            .category("advanced/loaders")
            .description("[Recipes]\n\nsdxl: clip-l, clip-g\nsd3: clip-l, clip-g / clip-l, t5 / clip-g, t5\nflux: clip-l, t5\nhidream: at least one of t5 or llama, recommended t5 and llama\nhunyuan_image: qwen2.5vl 7b and byt5 small")
            .input(InputSpec::required("clip_name1", ComboInput::dynamic("text_encoders")))
            .input(InputSpec::required("clip_name2", ComboInput::dynamic("text_encoders")))
            .input(InputSpec::required("type", ComboInput::new(DUAL_CLIP_TYPES)))
            .input(device_input())
            .output(OutputSpec::new("CLIP"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let services = NodeServices::of(ctx)?;
        let clip_type = ClipType::from_combo(inputs.string("type")?)?;
        let paths = text_encoder_paths(services, inputs, &["clip_name1", "clip_name2"])?;
        let planner = clip_planner(services, inputs)?;
        load_clip_output(services, &planner, &paths, clip_type)
    }
}
