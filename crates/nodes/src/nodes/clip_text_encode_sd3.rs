//! `CLIPTextEncodeSD3`: separate CLIP-L, CLIP-G and T5-XXL prompts for an SD3 `CLIP`, with
//! ComfyUI's `empty_padding` choice for empty prompts.

use kiln_graph::{
    ComboInput, ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec, StringInput,
};

use crate::error::NodesError;
use crate::node_util::object;
use crate::services::NodeServices;
use crate::text_encoding::{encode_sd3, EmptyPadding, Sd3Texts};
use crate::types::{Clip, CondMeta, Conditioning};

/// `CLIPTextEncodeSD3`.
pub struct ClipTextEncodeSd3;

impl Node for ClipTextEncodeSd3 {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("CLIPTextEncodeSD3")
            .python_module("comfy_extras.nodes_sd3")
            .category("advanced/conditioning")
            .input(InputSpec::required("clip", "CLIP"))
            .input(InputSpec::required("clip_l", StringInput::prompt()))
            .input(InputSpec::required("clip_g", StringInput::prompt()))
            .input(InputSpec::required("t5xxl", StringInput::prompt()))
            .input(InputSpec::required(
                "empty_padding",
                ComboInput::new(["none", "empty_prompt"]),
            ))
            .output(OutputSpec::new("CONDITIONING"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let services = NodeServices::of(ctx)?;
        let clip = object::<Clip>(inputs, "clip")?;
        let padding = match inputs.string("empty_padding")? {
            "none" => EmptyPadding::None,
            "empty_prompt" => EmptyPadding::EmptyPrompt,
            other => {
                return Err(
                    NodesError::input("empty_padding", format!("unknown choice '{other}'")).into(),
                )
            }
        };
        let texts = Sd3Texts {
            clip_l: inputs.string("clip_l")?,
            clip_g: inputs.string("clip_g")?,
            t5xxl: inputs.string("t5xxl")?,
        };
        let (cond, pooled) = encode_sd3(services, &clip, &texts, padding)?;
        let meta = CondMeta {
            pooled: Some(pooled),
            ..CondMeta::default()
        };
        Ok(NodeOutput::new(vec![
            Conditioning::single(cond, meta).into_value()
        ]))
    }
}
