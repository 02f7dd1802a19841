//! `CLIPSetLastLayer`: which CLIP layer text encoding stops at ("clip skip").

use kiln_graph::{
    ExecutionContext, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};

use crate::node_util::object;
use crate::types::Clip;

/// `CLIPSetLastLayer` ("CLIP Set Last Layer").
pub struct ClipSetLastLayer;

impl Node for ClipSetLastLayer {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("CLIPSetLastLayer")
            .display_name("CLIP Set Last Layer")
            .category("conditioning")
            .input(InputSpec::required("clip", "CLIP"))
            .input(InputSpec::required(
                "stop_at_clip_layer",
                IntInput::new(-1, -24, -1).step(1),
            ))
            .output(OutputSpec::new("CLIP"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let mut clip = object::<Clip>(inputs, "clip")?.as_ref().clone();
        clip.stop_at_layer = Some(inputs.int("stop_at_clip_layer")?);
        Ok(NodeOutput::new(vec![clip.into_value()]))
    }
}
