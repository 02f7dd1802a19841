//! `CLIPTextEncode` ("CLIP Text Encode (Prompt)"): prompt text to `CONDITIONING` with the
//! pooled output.

use kiln_graph::{
    ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, OutputSpec,
    StringInput,
};

use crate::node_util::object;
use crate::services::NodeServices;
use crate::text_encoding::encode_text;
use crate::types::{Clip, CondMeta, Conditioning};

/// `CLIPTextEncode`.
pub struct ClipTextEncode;

impl Node for ClipTextEncode {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("CLIPTextEncode")
            .display_name("CLIP Text Encode (Prompt)")
            .category("conditioning")
            .description("Encodes a text prompt using a CLIP model into an embedding that can be used to guide the diffusion model towards generating specific images.")
            .input(InputSpec::required("text", StringInput::prompt()).tooltip("The text to be encoded."))
            .input(InputSpec::required("clip", "CLIP").tooltip("The CLIP model used for encoding the text."))
            .output(OutputSpec::new("CONDITIONING").tooltip(
                "A conditioning containing the embedded text used to guide the diffusion model.",
            ))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let services = NodeServices::of(ctx)?;
        let clip = object::<Clip>(inputs, "clip")?;
        let text = inputs.string("text")?;
        let (cond, pooled) = encode_text(services, &clip, text)?;
        let meta = CondMeta {
            pooled: Some(pooled),
            ..CondMeta::default()
        };
        Ok(NodeOutput::new(vec![
            Conditioning::single(cond, meta).into_value()
        ]))
    }
}
