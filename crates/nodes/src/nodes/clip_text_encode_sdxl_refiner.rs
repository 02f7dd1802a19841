//! `CLIPTextEncodeSDXLRefiner`: prompt text plus the refiner's aesthetic score and size.

use kiln_graph::{
    ExecutionContext, FloatInput, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput,
    NodeSchema, OutputSpec, StringInput,
};
use kiln_models::RefinerSize;

use crate::node_util::{object, size_input, MAX_RESOLUTION};
use crate::services::NodeServices;
use crate::text_encoding::encode_text;
use crate::types::{Clip, CondMeta, Conditioning, SizeConditioning};

/// `CLIPTextEncodeSDXLRefiner`.
pub struct ClipTextEncodeSdxlRefiner;

impl Node for ClipTextEncodeSdxlRefiner {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("CLIPTextEncodeSDXLRefiner")
            .category("advanced/conditioning")
            .python_module("comfy_extras.nodes_clip_sdxl")
            .input(InputSpec::required(
                "ascore",
                FloatInput::new(6.0, 0.0, 1000.0).step(0.01),
            ))
            .input(InputSpec::required(
                "width",
                IntInput::new(1024, 0, MAX_RESOLUTION),
            ))
            .input(InputSpec::required(
                "height",
                IntInput::new(1024, 0, MAX_RESOLUTION),
            ))
            .input(InputSpec::required("text", StringInput::prompt()))
            .input(InputSpec::required("clip", "CLIP"))
            .output(OutputSpec::new("CONDITIONING"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let services = NodeServices::of(ctx)?;
        let clip = object::<Clip>(inputs, "clip")?;
        let (cond, pooled) = encode_text(services, &clip, inputs.string("text")?)?;
        let size = RefinerSize {
            width: size_input(inputs, "width")? as f64,
            height: size_input(inputs, "height")? as f64,
            crop_w: 0.0,
            crop_h: 0.0,
            aesthetic_score: inputs.float("ascore")?,
        };
        let meta = CondMeta {
            pooled: Some(pooled),
            size: Some(SizeConditioning::Refiner(size)),
            ..CondMeta::default()
        };
        Ok(NodeOutput::new(vec![
            Conditioning::single(cond, meta).into_value()
        ]))
    }
}
