//! `CLIPTextEncodeSDXL`: separate CLIP-G and CLIP-L prompts (window counts evened out with empty
//! windows) plus SDXL's size conditioning.

use kiln_detect::ComponentKind;
use kiln_graph::{
    ExecutionContext, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec, StringInput,
};
use kiln_models::SdxlSize;

use crate::node_util::{object, size_input, MAX_RESOLUTION};
use crate::services::NodeServices;
use crate::text_encoding::{encode_windows, encoders};
use crate::types::{Clip, CondMeta, Conditioning, SizeConditioning};

/// `CLIPTextEncodeSDXL`.
pub struct ClipTextEncodeSdxl;

impl Node for ClipTextEncodeSdxl {
    fn schema(&self) -> NodeSchema {
        let named = |name: &str, default| {
            InputSpec::required(name, IntInput::new(default, 0, MAX_RESOLUTION))
        };
        NodeSchema::new("CLIPTextEncodeSDXL")
            .category("advanced/conditioning")
            .python_module("comfy_extras.nodes_clip_sdxl")
            .input(InputSpec::required("clip", "CLIP"))
            .input(named("width", 1024))
            .input(named("height", 1024))
            .input(named("crop_w", 0))
            .input(named("crop_h", 0))
            .input(named("target_width", 1024))
            .input(named("target_height", 1024))
            .input(InputSpec::required("text_g", StringInput::prompt()))
            .input(InputSpec::required("text_l", StringInput::prompt()))
            .output(OutputSpec::new("CONDITIONING"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let services = NodeServices::of(ctx)?;
        let clip = object::<Clip>(inputs, "clip")?;
        let encoders = encoders(&clip)?;
        let (text_g, text_l) = (inputs.string("text_g")?, inputs.string("text_l")?);
        let mut windows = Vec::with_capacity(encoders.len());
        for encoder in &encoders {
            let text = if encoder.kind() == ComponentKind::ClipL {
                text_l
            } else {
                text_g
            };
            windows.push(encoder.tokenize(services, text)?);
        }
        let l = encoders
            .iter()
            .position(|e| e.kind() == ComponentKind::ClipL);
        let g = encoders
            .iter()
            .position(|e| e.kind() == ComponentKind::ClipG);
        if let (Some(l), Some(g)) = (l, g) {
            while windows[l].len() != windows[g].len() {
                let shorter = if windows[l].len() < windows[g].len() {
                    l
                } else {
                    g
                };
                let empty = encoders[shorter].tokenize(services, "")?;
                windows[shorter].extend(empty);
            }
        }
        let (cond, pooled) = encode_windows(&clip, &encoders, &windows)?;
        let dim = |name| size_input(inputs, name).map(|v| v as f64);
        let size = SdxlSize {
            width: dim("width")?,
            height: dim("height")?,
            crop_w: dim("crop_w")?,
            crop_h: dim("crop_h")?,
            target_width: dim("target_width")?,
            target_height: dim("target_height")?,
        };
        let meta = CondMeta {
            pooled: Some(pooled),
            size: Some(SizeConditioning::Sdxl(size)),
            ..CondMeta::default()
        };
        Ok(NodeOutput::new(vec![
            Conditioning::single(cond, meta).into_value()
        ]))
    }
}
