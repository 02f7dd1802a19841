//! `kiln run WORKFLOW [--set NODE.INPUT=VALUE]...`: runs one workflow without the server —
//! an API prompt, a UI workflow (converted as the frontend does) or a ComfyUI PNG (its `prompt`
//! chunk, else its `workflow` chunk) — with progress bars, and prints where the outputs went.
//!
//! Validation failures are printed from ComfyUI's error JSON, one line per problem naming the
//! node and input, and nothing runs. Images are written by SaveImage only when complete.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use kiln_graph::{
    workflow_from_png, workflow_to_prompt, ExecutionEvent, ExecutionObserver, ExecutionRequest,
    Executor, GraphError, InputType, NodeRegistry, Validator,
};
use kiln_nodes::{builtin_registry, NodeServices};
use serde_json::{json, Map, Value as Json};

use super::services::node_services;
use crate::flags::{ComfyArgs, InputOverride, RunArgs};

/// Exit code when the workflow is invalid or a node fails.
const WORKFLOW_FAILED: u8 = 1;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// A workflow file read into an API prompt plus the UI graph to store in saved PNGs.
struct LoadedWorkflow {
    prompt: Json,
    ui_workflow: Option<Json>,
}

/// Runs `kiln run`.
pub fn run(args: &RunArgs, global: &ComfyArgs, simulate: Option<&str>) -> anyhow::Result<ExitCode> {
    let registry = Arc::new(builtin_registry());
    let mut workflow = load_workflow(&args.workflow, &registry)?;
    apply_overrides(&mut workflow.prompt, &args.overrides, &registry)?;

    let services = Arc::new(build_services(global, simulate)?);
    let resolve = |key: &str| services.combo_options(key);
    let validated = match Validator::new(&registry, &resolve).validate(&workflow.prompt) {
        Ok(validated) if validated.node_errors.is_empty() => validated,
        Ok(validated) => {
            print_node_errors(&validated.node_errors_json(), &workflow.prompt);
            return Ok(ExitCode::from(WORKFLOW_FAILED));
        }
        Err(failure) => {
            let report = failure.to_json();
            eprintln!(
                "kiln: the workflow is invalid: {}",
                report["error"]["message"]
                    .as_str()
                    .unwrap_or("invalid prompt")
            );
            print_node_errors(&report["node_errors"], &workflow.prompt);
            if report["node_errors"].as_object().is_none_or(Map::is_empty) {
                if let Some(details) = report["error"]["details"]
                    .as_str()
                    .filter(|d| !d.is_empty())
                {
                    eprintln!("  {details}");
                }
            }
            return Ok(ExitCode::from(WORKFLOW_FAILED));
        }
    };

    let mut extra = Map::new();
    if let Some(ui) = workflow.ui_workflow {
        extra.insert("extra_pnginfo".to_owned(), json!({ "workflow": ui }));
    }
    let request = ExecutionRequest::new("kiln-run", validated).extra_data(Json::Object(extra));
    let mut executor = Executor::new(registry.clone(), services.clone());
    let mut observer = ProgressObserver::new(&workflow.prompt);
    let result = executor.execute(&request, &mut observer);
    observer.finish();
    match result {
        Ok(outcome) => {
            for path in output_paths(&services, &outcome.outputs_json()) {
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            match &failure.error {
                GraphError::NodeFailed {
                    node_id,
                    class_type,
                    source,
                } => eprintln!("kiln: node {node_id} ({class_type}) failed: {source}"),
                other => eprintln!("kiln: {other}"),
            }
            Ok(ExitCode::from(WORKFLOW_FAILED))
        }
    }
}

/// Reads WORKFLOW: a PNG with ComfyUI text chunks, a UI workflow, an API prompt, or a
/// `POST /prompt` body (`{"prompt": {...}, "extra_data": ...}`).
fn load_workflow(path: &Path, registry: &NodeRegistry) -> anyhow::Result<LoadedWorkflow> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read workflow {}", path.display()))?;
    if bytes.starts_with(PNG_SIGNATURE) {
        let source = workflow_from_png(&bytes)
            .with_context(|| format!("cannot read the workflow in {}", path.display()))?;
        let prompt = match (source.prompt, &source.workflow) {
            (Some(prompt), _) => prompt,
            (None, Some(ui)) => workflow_to_prompt(ui, registry)
                .with_context(|| format!("cannot convert the workflow in {}", path.display()))?,
            (None, None) => bail!(
                "{} has no ComfyUI workflow (no `prompt` or `workflow` text chunk)",
                path.display()
            ),
        };
        return Ok(LoadedWorkflow {
            prompt,
            ui_workflow: source.workflow,
        });
    }
    let json: Json = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    if json.get("nodes").is_some_and(Json::is_array) {
        let prompt = workflow_to_prompt(&json, registry)
            .with_context(|| format!("cannot convert the UI workflow {}", path.display()))?;
        return Ok(LoadedWorkflow {
            prompt,
            ui_workflow: Some(json),
        });
    }
    if let Some(prompt) = json.get("prompt").filter(|p| p.is_object()) {
        let ui_workflow = json.pointer("/extra_data/extra_pnginfo/workflow").cloned();
        return Ok(LoadedWorkflow {
            prompt: prompt.clone(),
            ui_workflow,
        });
    }
    if !json.is_object() {
        bail!(
            "{} is not a ComfyUI workflow (expected a JSON object)",
            path.display()
        );
    }
    Ok(LoadedWorkflow {
        prompt: json,
        ui_workflow: None,
    })
}

/// Applies `--set NODE.INPUT=VALUE`, parsing VALUE as the input's declared type.
fn apply_overrides(
    prompt: &mut Json,
    overrides: &[InputOverride],
    registry: &NodeRegistry,
) -> anyhow::Result<()> {
    for set in overrides {
        let ids: Vec<String> = prompt
            .as_object()
            .map(|nodes| nodes.keys().cloned().collect())
            .unwrap_or_default();
        let node = prompt.get_mut(&set.node).ok_or_else(|| {
            anyhow::anyhow!(
                "--set {}.{}: the workflow has no node '{}' (nodes: {})",
                set.node,
                set.input,
                set.node,
                ids.join(", ")
            )
        })?;
        let class_type = node
            .get("class_type")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned();
        let schema = registry.schema(&class_type).ok_or_else(|| {
            anyhow::anyhow!(
                "--set {}.{}: node {} has unknown class '{class_type}'",
                set.node,
                set.input,
                set.node
            )
        })?;
        let spec = schema.input_named(&set.input).ok_or_else(|| {
            let names: Vec<&str> = schema.inputs.iter().map(|i| i.name.as_str()).collect();
            anyhow::anyhow!(
                "--set {}.{}: {class_type} has no input '{}' (inputs: {})",
                set.node,
                set.input,
                set.input,
                names.join(", ")
            )
        })?;
        let bad = |expected: &str| {
            anyhow::anyhow!(
                "--set {}.{}: '{}' is not {expected}",
                set.node,
                set.input,
                set.value
            )
        };
        let value = match &spec.ty {
            InputType::Int(_) => {
                let parsed: i128 = set.value.trim().parse().map_err(|_| bad("an integer"))?;
                if let Ok(small) = i64::try_from(parsed) {
                    json!(small)
                } else {
                    json!(u64::try_from(parsed).map_err(|_| bad("an integer in range"))?)
                }
            }
            InputType::Float(_) => {
                let parsed: f64 = set.value.trim().parse().map_err(|_| bad("a number"))?;
                json!(parsed)
            }
            InputType::Boolean(_) => match set.value.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => json!(true),
                "false" | "0" | "no" => json!(false),
                _ => return Err(bad("true or false")),
            },
            InputType::String(_) | InputType::Combo(_) => json!(set.value),
            InputType::Link(ty) => bail!(
                "--set {}.{}: the input takes a {ty} from another node, not a value",
                set.node,
                set.input
            ),
        };
        let inputs = node
            .as_object_mut()
            .map(|n| n.entry("inputs").or_insert_with(|| json!({})))
            .and_then(Json::as_object_mut)
            .ok_or_else(|| anyhow::anyhow!("node {} has malformed inputs", set.node))?;
        inputs.insert(set.input.clone(), value);
    }
    Ok(())
}

fn build_services(global: &ComfyArgs, simulate: Option<&str>) -> anyhow::Result<NodeServices> {
    let folders = global
        .folder_paths()
        .context("cannot set up the model folders")?;
    Ok(node_services(global, simulate, folders)?.0)
}

/// One line per validation error: `node 5 (EmptyLatentImage) input 'width': Value 100000
/// bigger than max of 16384`.
fn print_node_errors(node_errors: &Json, prompt: &Json) {
    let Some(nodes) = node_errors.as_object() else {
        return;
    };
    for (node_id, entry) in nodes {
        let class_type = entry["class_type"]
            .as_str()
            .or_else(|| prompt[node_id]["class_type"].as_str())
            .unwrap_or("?");
        for error in entry["errors"].as_array().into_iter().flatten() {
            let input = error["extra_info"]["input_name"]
                .as_str()
                .map(|name| format!(" input '{name}'"))
                .unwrap_or_default();
            let message = error["message"].as_str().unwrap_or("invalid");
            let details = error["details"].as_str().unwrap_or("");
            if details.is_empty() {
                eprintln!("  node {node_id} ({class_type}){input}: {message}");
            } else {
                eprintln!("  node {node_id} ({class_type}){input}: {message}: {details}");
            }
        }
    }
}

/// The files output nodes report in their UI results.
fn output_paths(services: &NodeServices, outputs: &Json) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for ui in outputs.as_object().into_iter().flat_map(Map::values) {
        for item in ui["images"].as_array().into_iter().flatten() {
            let folder = match item["type"].as_str() {
                Some("temp") => services.temp_directory(),
                Some("input") => services.input_directory(),
                _ => services.output_directory(),
            };
            let subfolder = item["subfolder"].as_str().unwrap_or("");
            if let Some(name) = item["filename"].as_str() {
                paths.push(folder.join(subfolder).join(name));
            }
        }
    }
    paths
}

/// Progress bars on a terminal (one per sampling node, it/s and ETA), log lines otherwise.
struct ProgressObserver {
    titles: Map<String, Json>,
    bar: Option<(String, ProgressBar)>,
    interactive: bool,
}

impl ProgressObserver {
    fn new(prompt: &Json) -> Self {
        ProgressObserver {
            titles: prompt.as_object().cloned().unwrap_or_default(),
            bar: None,
            interactive: std::io::stderr().is_terminal(),
        }
    }

    fn label(&self, node: &str) -> String {
        let class_type = self
            .titles
            .get(node)
            .and_then(|n| n["class_type"].as_str())
            .unwrap_or("?");
        format!("node {node} ({class_type})")
    }

    fn finish(&mut self) {
        if let Some((_, bar)) = self.bar.take() {
            bar.finish();
        }
    }
}

impl ExecutionObserver for ProgressObserver {
    fn on_event(&mut self, event: ExecutionEvent) {
        match event {
            ExecutionEvent::Executing {
                node: Some(node), ..
            } => {
                self.finish();
                if !self.interactive {
                    eprintln!("running {}", self.label(&node));
                }
            }
            ExecutionEvent::Progress {
                node, value, max, ..
            } => {
                if !self.interactive {
                    eprintln!("{}: step {value}/{max}", self.label(&node));
                    return;
                }
                if self
                    .bar
                    .as_ref()
                    .is_none_or(|(current, _)| *current != node)
                {
                    self.finish();
                    let bar = ProgressBar::new(max);
                    let style = ProgressStyle::with_template(
                        "{msg} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
                    bar.set_style(style.progress_chars("=> "));
                    bar.set_message(self.label(&node));
                    self.bar = Some((node.clone(), bar));
                }
                if let Some((_, bar)) = &self.bar {
                    bar.set_length(max);
                    bar.set_position(value);
                }
            }
            _ => {}
        }
    }
}
