//! `CLIPTextEncodeFlux`: separate CLIP-L and T5-XXL prompts for a Flux `CLIP`, plus the
//! distilled `guidance` Flux dev reads from the conditioning.

use kiln_graph::{
    ExecutionContext, FloatInput, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec, StringInput,
};

use crate::node_util::object;
use crate::services::NodeServices;
use crate::text_encoding::encode_flux;
use crate::types::{Clip, CondMeta, Conditioning};

/// `CLIPTextEncodeFlux`.
pub struct ClipTextEncodeFlux;

impl Node for ClipTextEncodeFlux {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("CLIPTextEncodeFlux")
            .python_module("comfy_extras.nodes_flux")
            .category("advanced/conditioning/flux")
            .input(InputSpec::required("clip", "CLIP"))
            .input(InputSpec::required("clip_l", StringInput::prompt()))
            .input(InputSpec::required("t5xxl", StringInput::prompt()))
            .input(InputSpec::required(
                "guidance",
                FloatInput::new(3.5, 0.0, 100.0).step(0.1),
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
        let guidance = inputs.float("guidance")?;
        let (cond, pooled) = encode_flux(
            services,
            &clip,
            inputs.string("clip_l")?,
            inputs.string("t5xxl")?,
        )?;
        let meta = CondMeta {
            pooled: Some(pooled),
            guidance: Some(guidance),
            ..CondMeta::default()
        };
        Ok(NodeOutput::new(vec![
            Conditioning::single(cond, meta).into_value()
        ]))
    }
}
