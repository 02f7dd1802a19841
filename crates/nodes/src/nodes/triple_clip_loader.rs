//! `TripleCLIPLoader`: CLIP-L, CLIP-G and T5-XXL files of the `text_encoders` folder joined
//! into one SD3 `CLIP`.

use kiln_graph::{
    ComboInput, ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};

use crate::loader::ClipType;
use crate::nodes::clip_loader::{load_clip_output, text_encoder_paths};
use crate::services::NodeServices;

/// `TripleCLIPLoader`.
pub struct TripleClipLoader;

const INPUTS: [&str; 3] = ["clip_name1", "clip_name2", "clip_name3"];

impl Node for TripleClipLoader {
    fn schema(&self) -> NodeSchema {
        let mut schema = NodeSchema::new("TripleCLIPLoader")
            .python_module("comfy_extras.nodes_sd3")
            .category("advanced/loaders")
            .description("[Recipes]\n\nsd3: clip-l, clip-g, t5");
        for name in INPUTS {
            schema = schema.input(InputSpec::required(
                name,
                ComboInput::dynamic("text_encoders"),
            ));
        }
        schema.output(OutputSpec::new("CLIP"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let services = NodeServices::of(ctx)?;
        let paths = text_encoder_paths(services, inputs, &INPUTS)?;
        load_clip_output(services, services.planner(), &paths, ClipType::Sd3)
    }
}
