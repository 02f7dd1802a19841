//! `CLIPLoader` ("Load CLIP"): one text encoder file of the `text_encoders` folder (legacy
//! `clip`) as a `CLIP` of the chosen type.

use std::path::{Path, PathBuf};

use kiln_graph::{
    ComboInput, ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};
use kiln_runtime::{PlanOptions, Planner};

use crate::loader::{load_text_encoders, ClipType};
use crate::nodes::checkpoint_loader_simple::model_path;
use crate::services::NodeServices;

/// `CLIPLoader`.
pub struct ClipLoader;

/// ComfyUI 0.3.64's `type` choices, in its order (Kiln encodes `stable_diffusion` and `sd3`).
const CLIP_TYPES: [&str; 16] = [
    "stable_diffusion",
    "stable_cascade",
    "sd3",
    "stable_audio",
    "mochi",
    "ltxv",
    "pixart",
    "cosmos",
    "lumina2",
    "wan",
    "hidream",
    "chroma",
    "ace",
    "omnigen2",
    "qwen_image",
    "hunyuan_image",
];

/// The optional `device` input shared by the CLIP loaders.
pub(crate) fn device_input() -> InputSpec {
    InputSpec::optional("device", ComboInput::new(["default", "cpu"])).option("advanced", true)
}

/// The planner a CLIP loader uses: the services' one, or one keeping everything on the CPU for
/// `device: cpu` (ComfyUI's `load_device = offload_device = cpu`).
pub(crate) fn clip_planner(
    services: &NodeServices,
    inputs: &NodeInputs,
) -> Result<Planner, NodeError> {
    let base = services.planner();
    if inputs.opt_string("device")? == Some("cpu") {
        let options = PlanOptions {
            cpu: true,
            ..base.options().clone()
        };
        Ok(Planner::new(options, base.profile().clone()).with_host(base.host().clone()))
    } else {
        Ok(base.clone())
    }
}

/// The paths of the `text_encoders` files the combo inputs `names` choose, each with its input
/// name.
pub(crate) fn text_encoder_paths(
    services: &NodeServices,
    inputs: &NodeInputs,
    names: &[&'static str],
) -> Result<Vec<(&'static str, PathBuf)>, NodeError> {
    names
        .iter()
        .map(|&name| Ok((name, model_path(services, inputs, "text_encoders", name)?)))
        .collect()
}

/// The text encoder files at `paths` joined into one `CLIP` of `clip_type`, as a node output.
pub(crate) fn load_clip_output(
    services: &NodeServices,
    planner: &Planner,
    paths: &[(&'static str, PathBuf)],
    clip_type: ClipType,
) -> Result<NodeOutput, NodeError> {
    let files: Vec<(&str, &Path)> = paths
        .iter()
        .map(|(name, path)| (*name, path.as_path()))
        .collect();
    let clip = load_text_encoders(services, planner, &files, clip_type)?;
    Ok(NodeOutput::new(vec![clip.into_value()]))
}

impl Node for ClipLoader {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("CLIPLoader")
            .display_name("Load CLIP")
            .category("advanced/loaders")
            .description("[Recipes]\n\nstable_diffusion: clip-l\nstable_cascade: clip-g\nsd3: t5 xxl/ clip-g / clip-l\nstable_audio: t5 base\nmochi: t5 xxl\ncosmos: old t5 xxl\nlumina2: gemma 2 2B\nwan: umt5 xxl\n hidream: llama-3.1 (Recommend) or t5\nomnigen2: qwen vl 2.5 3B")
            .input(InputSpec::required("clip_name", ComboInput::dynamic("text_encoders")))
            .input(InputSpec::required("type", ComboInput::new(CLIP_TYPES)))
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
        let paths = text_encoder_paths(services, inputs, &["clip_name"])?;
        let planner = clip_planner(services, inputs)?;
        load_clip_output(services, &planner, &paths, clip_type)
    }
}
