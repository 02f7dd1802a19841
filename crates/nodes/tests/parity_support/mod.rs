//! Shared by the ComfyUI parity tests: the reference fixtures of `kiln-models`
//! (`crates/models/tests/fixtures`), the tiny checkpoints they were made from (regenerated once
//! per test binary and checked against the recorded sha256), the saved UI workflows of
//! `tests/workflows`, and an engine that converts, validates and executes a workflow in-process
//! and hands back the PNG SaveImage wrote plus the values a probe node saw.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{DType, Device, Tensor};
use kiln_folders::FolderPaths;
use kiln_graph::{
    workflow_to_prompt, ChangePolicy, ExecutionContext, ExecutionEvent, ExecutionRequest, Executor,
    InputSpec, InterruptFlag, Node, NodeError, NodeInputs, NodeOutput, NodeRegistry, NodeSchema,
    Validator,
};
use kiln_nodes::{
    builtin_registry, decode_image, file_sha256, write_png, Clip, Conditioning, Latent, Model,
    NodeServices, Pixels8, Vae,
};
use kiln_runtime::{detect_host, PlanOptions, Planner};
use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};
use serde_json::{json, Value as Json};

/// The ComfyUI reference fixtures (see the README there).
pub(crate) fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures")
}

/// The saved UI workflows.
pub(crate) fn workflows_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workflows")
}

/// The input image the img2img workflows load (`LoadImage`).
pub(crate) const INPUT_IMAGE: &str = "parity_input.png";

/// Image comparisons must reach this PSNR.
pub(crate) const MIN_PSNR_DB: f64 = 40.0;

/// Final latents must agree to `max|Δ| ≤ LATENT_TOLERANCE · max|reference|`.
pub(crate) const LATENT_TOLERANCE: f64 = 1e-3;

/// One `<name>.safetensors` + `<name>.json` fixture pair.
pub(crate) struct Fixture {
    /// The tensors by name.
    pub(crate) tensors: HashMap<String, Tensor>,
    /// The JSON description (settings, models, cases).
    pub(crate) meta: Json,
}

impl Fixture {
    /// Reads `<name>.safetensors` and `<name>.json`.
    pub(crate) fn load(name: &str) -> Fixture {
        let dir = fixtures_dir();
        let tensors =
            candle_core::safetensors::load(dir.join(format!("{name}.safetensors")), &Device::Cpu)
                .unwrap();
        let meta =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap())
                .unwrap();
        Fixture { tensors, meta }
    }

    /// The tensor `name`.
    pub(crate) fn tensor(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("fixture tensor {name} is missing"))
    }

    /// The uint8 image `name` (`[1, H, W, 3]`) as interleaved bytes.
    pub(crate) fn image(&self, name: &str) -> Vec<u8> {
        self.tensor(name)
            .flatten_all()
            .unwrap()
            .to_vec1::<u8>()
            .unwrap()
    }
}

/// The fixtures' checkpoints: fixture key, family.
pub(crate) const CHECKPOINTS: [(&str, Family); 4] = [
    ("sd1", Family::Sd1),
    ("sd2v", Family::Sd2V),
    ("sdxl", Family::Sdxl),
    ("sdxl_refiner", Family::SdxlRefiner),
];

/// The LoRA fixtures, copied into `models/loras` under their own names.
pub(crate) const LORAS: [&str; 2] = ["lora_kohya_sd1", "lora_diffusers_sd1"];

/// The base directory every test of this binary shares: `models/checkpoints` (the four tiny
/// f32 checkpoints), `models/loras` (the fixture LoRAs) and `input/parity_input.png`.
///
/// It lives in Cargo's per-target temporary folder, not in a `TempDir`, because statics are
/// never dropped; every run regenerates the files into a per-process staging folder, checks
/// them and renames them into place, so a concurrent run never sees a half-written file.
pub(crate) fn shared_base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(prepare_base)
}

fn prepare_base() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-nodes-comfyui-parity");
    let staging = root.join(format!("staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).unwrap();
    let checkpoints = root.join("models").join("checkpoints");
    let loras = root.join("models").join("loras");
    let input = root.join("input");
    for dir in [&checkpoints, &loras, &input] {
        std::fs::create_dir_all(dir).unwrap();
    }

    let cases = Fixture::load("ksampler_cases").meta;
    for (key, family) in CHECKPOINTS {
        let recorded = &cases["models"][key]["checkpoint"];
        let spec = CheckpointSpec::new(family, Storage::F32, Packaging::SingleFile);
        let written = write(&spec, &staging).unwrap();
        let name = written.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(
            name, recorded["file"],
            "{key}: kiln-test-checkpoints names the file differently from the fixture"
        );
        assert_eq!(
            file_sha256(&written).unwrap(),
            recorded["sha256"].as_str().unwrap(),
            "{key}: the regenerated tiny checkpoint differs from the one ComfyUI ran \
             (kiln-test-checkpoints changed?): every parity result below would be meaningless"
        );
        std::fs::rename(&written, checkpoints.join(&name)).unwrap();
    }
    for lora in LORAS {
        let staged = staging.join(format!("{lora}.safetensors"));
        std::fs::copy(fixtures_dir().join(format!("{lora}.safetensors")), &staged).unwrap();
        std::fs::rename(&staged, loras.join(format!("{lora}.safetensors"))).unwrap();
    }
    let staged = staging.join(INPUT_IMAGE);
    write_png(&staged, &input_image_pixels(), &[], 4).unwrap();
    std::fs::rename(&staged, input.join(INPUT_IMAGE)).unwrap();
    let _ = std::fs::remove_dir_all(&staging);
    root
}

/// The fixture's float input image (`input.image`, `[1, 64, 64, 3]` in 0..1) as the 8-bit PNG
/// a user would have: each value rounded to the nearest level.
pub(crate) fn input_image_pixels() -> Pixels8 {
    let cases = Fixture::load("ksampler_cases");
    let image = cases.tensor("input.image");
    let (_, height, width, channels) = image.dims4().unwrap();
    let data = image
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect();
    Pixels8 {
        height,
        width,
        channels,
        data,
    }
}

/// Reads `tests/workflows/<name>.json`.
pub(crate) fn load_workflow(name: &str) -> Json {
    let path = workflows_dir().join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The widget names each `widgets_values` position holds, per class, as the frontend saves
/// them (`control_after_generate` follows the seed).
pub(crate) fn widget_names(class_type: &str) -> &'static [&'static str] {
    match class_type {
        "CheckpointLoaderSimple" => &["ckpt_name"],
        "CLIPTextEncode" => &["text"],
        "EmptyLatentImage" => &["width", "height", "batch_size"],
        "KSampler" => &[
            "seed",
            "control_after_generate",
            "steps",
            "cfg",
            "sampler_name",
            "scheduler",
            "denoise",
        ],
        "KSamplerAdvanced" => &[
            "add_noise",
            "noise_seed",
            "control_after_generate",
            "steps",
            "cfg",
            "sampler_name",
            "scheduler",
            "start_at_step",
            "end_at_step",
            "return_with_leftover_noise",
        ],
        "LoadImage" => &["image", "upload"],
        "LoraLoader" => &["lora_name", "strength_model", "strength_clip"],
        "SaveImage" => &["filename_prefix"],
        "VAEDecode" | "VAEEncode" => &[],
        other => panic!("no widget table for {other}"),
    }
}

/// The node with UI id `id`.
pub(crate) fn node_mut(workflow: &mut Json, id: u64) -> &mut Json {
    workflow["nodes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|node| node["id"] == id)
        .unwrap_or_else(|| panic!("the workflow has no node {id}"))
}

/// The UI id of the one node of `class_type`.
pub(crate) fn node_id_of(workflow: &Json, class_type: &str) -> u64 {
    let ids: Vec<u64> = workflow["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|node| node["type"] == class_type)
        .map(|node| node["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "expected one {class_type} node, found {ids:?}"
    );
    ids[0]
}

/// Sets the widget `widget` of the one node of `class_type`, as a user editing the graph.
pub(crate) fn set_widget(workflow: &mut Json, class_type: &str, widget: &str, value: Json) {
    let id = node_id_of(workflow, class_type);
    let index = widget_names(class_type)
        .iter()
        .position(|name| *name == widget)
        .unwrap_or_else(|| panic!("{class_type} has no widget {widget}"));
    node_mut(workflow, id)["widgets_values"][index] = value;
}

/// Sets a widget of the node with UI id `id`.
pub(crate) fn set_widget_of(workflow: &mut Json, id: u64, widget: &str, value: Json) {
    let node = node_mut(workflow, id);
    let class_type = node["type"].as_str().unwrap().to_owned();
    let index = widget_names(&class_type)
        .iter()
        .position(|name| *name == widget)
        .unwrap_or_else(|| panic!("{class_type} has no widget {widget}"));
    node["widgets_values"][index] = value;
}

/// What the probe node received, by input name.
#[derive(Clone, Default)]
pub(crate) struct Probed {
    /// `samples`: typically the sampler's output.
    pub(crate) samples: Option<Arc<Latent>>,
    /// `encoded`: typically VAEEncode's output.
    pub(crate) encoded: Option<Arc<Latent>>,
    /// `model`.
    pub(crate) model: Option<Arc<Model>>,
    /// `clip`.
    pub(crate) clip: Option<Arc<Clip>>,
    /// `positive`.
    pub(crate) positive: Option<Arc<Conditioning>>,
    /// `negative`.
    pub(crate) negative: Option<Arc<Conditioning>>,
    /// `vae`.
    pub(crate) vae: Option<Arc<Vae>>,
}

type ProbeStore = Arc<Mutex<HashMap<String, Probed>>>;

/// A test-only output node that keeps what it is given, keyed by prompt id, so a test can
/// read values no output node shows (the final LATENT, a patched MODEL).
struct ParityProbe {
    store: ProbeStore,
}

/// The probe's class name.
pub(crate) const PROBE: &str = "ParityProbe";

impl Node for ParityProbe {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new(PROBE)
            .input(InputSpec::optional("samples", "LATENT"))
            .input(InputSpec::optional("encoded", "LATENT"))
            .input(InputSpec::optional("model", "MODEL"))
            .input(InputSpec::optional("clip", "CLIP"))
            .input(InputSpec::optional("positive", "CONDITIONING"))
            .input(InputSpec::optional("negative", "CONDITIONING"))
            .input(InputSpec::optional("vae", "VAE"))
            .output_node()
            .change_policy(ChangePolicy::Always)
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        fn take<T: std::any::Any + Send + Sync>(
            inputs: &NodeInputs,
            name: &str,
        ) -> Result<Option<Arc<T>>, NodeError> {
            inputs.get(name).map(|v| v.downcast::<T>(name)).transpose()
        }
        let probed = Probed {
            samples: take(inputs, "samples")?,
            encoded: take(inputs, "encoded")?,
            model: take(inputs, "model")?,
            clip: take(inputs, "clip")?,
            positive: take(inputs, "positive")?,
            negative: take(inputs, "negative")?,
            vae: take(inputs, "vae")?,
        };
        self.store
            .lock()
            .unwrap()
            .insert(ctx.prompt_id().to_owned(), probed);
        Ok(NodeOutput::new(Vec::new()))
    }
}

/// One executed workflow.
pub(crate) struct RunResult {
    /// The PNG SaveImage wrote, decoded: `height × width × 3` bytes.
    pub(crate) image: Vec<u8>,
    /// Its size.
    pub(crate) width: usize,
    /// Its size.
    pub(crate) height: usize,
    /// What the probe saw.
    pub(crate) probed: Probed,
    /// The API prompt that ran (after conversion, with the probe).
    pub(crate) prompt: Json,
}

/// Builtin nodes plus the probe, services over [`shared_base`] with a private output folder,
/// and one executor (so loaders and text encoders are cached between runs, as in a server).
pub(crate) struct Engine {
    registry: Arc<NodeRegistry>,
    services: Arc<NodeServices>,
    executor: Executor,
    store: ProbeStore,
    output: tempfile::TempDir,
    runs: usize,
}

impl Engine {
    /// A fresh engine planning for this CPU with default flags (`kiln --cpu`).
    pub(crate) fn new() -> Engine {
        Engine::over(shared_base())
    }

    /// A fresh engine over the models and inputs under `base`.
    pub(crate) fn over(base: &Path) -> Engine {
        let output = tempfile::tempdir().unwrap();
        let folders = FolderPaths::builder()
            .base_directory(base)
            .output_directory(output.path())
            .build()
            .unwrap();
        let planner = Planner::new(
            PlanOptions {
                cpu: true,
                ..PlanOptions::default()
            },
            detect_host(),
        );
        let services = Arc::new(NodeServices::builder(folders, planner).build());
        let store = ProbeStore::default();
        let mut registry = builtin_registry();
        registry
            .register(ParityProbe {
                store: store.clone(),
            })
            .unwrap();
        let registry = Arc::new(registry);
        let executor = Executor::new(registry.clone(), services.clone());
        Engine {
            registry,
            services,
            executor,
            store,
            output,
            runs: 0,
        }
    }

    /// Converts `workflow` as the frontend would, wires the probe's inputs to
    /// `(input, ui node id, output slot)`, validates, executes and reads SaveImage's PNG back.
    pub(crate) fn run(&mut self, workflow: &Json, probe: &[(&str, u64, usize)]) -> RunResult {
        let prompt = workflow_to_prompt(workflow, &self.registry)
            .unwrap_or_else(|e| panic!("the UI workflow does not convert: {e}"));
        self.run_prompt(prompt, Some(workflow), probe)
    }

    /// Validates and executes an API-format `prompt` (with `workflow` as the PNG's embedded
    /// workflow, if any), wiring the probe's inputs to `(input, node id, output slot)`.
    pub(crate) fn run_prompt(
        &mut self,
        mut prompt: Json,
        workflow: Option<&Json>,
        probe: &[(&str, u64, usize)],
    ) -> RunResult {
        self.runs += 1;
        let prompt_id = format!("parity-{}", self.runs);
        if !probe.is_empty() {
            let inputs: serde_json::Map<String, Json> = probe
                .iter()
                .map(|(input, node, slot)| (input.to_string(), json!([node.to_string(), slot])))
                .collect();
            prompt["9000"] = json!({"class_type": PROBE, "inputs": inputs});
        }
        let services = self.services.clone();
        let resolve = |key: &str| services.combo_options(key);
        let validated = match Validator::new(&self.registry, &resolve).validate(&prompt) {
            Ok(validated) if validated.node_errors.is_empty() => validated,
            Ok(validated) => panic!(
                "node errors: {}\nprompt: {prompt:#}",
                validated.node_errors_json()
            ),
            Err(failure) => panic!("invalid prompt: {}\nprompt: {prompt:#}", failure.to_json()),
        };
        let extra = match workflow {
            Some(workflow) => json!({"extra_pnginfo": {"workflow": workflow}}),
            None => json!({}),
        };
        let request = ExecutionRequest::new(prompt_id.clone(), validated).extra_data(extra);
        let mut events: Vec<ExecutionEvent> = Vec::new();
        let outcome = self
            .executor
            .execute(&request, &mut events)
            .unwrap_or_else(|failure| panic!("execution failed: {}", failure.error));

        let save_id = prompt
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, node)| node["class_type"] == "SaveImage")
            .map(|(id, _)| id.clone())
            .expect("the workflow has a SaveImage node");
        let saved = &outcome.outputs[&save_id]["images"][0];
        let path = self
            .output
            .path()
            .join(saved["subfolder"].as_str().unwrap())
            .join(saved["filename"].as_str().unwrap());
        let decoded = decode_image(&path, "images").unwrap();
        let probed = self
            .store
            .lock()
            .unwrap()
            .remove(&prompt_id)
            .unwrap_or_default();
        RunResult {
            image: decoded.rgb,
            width: decoded.width,
            height: decoded.height,
            probed,
            prompt,
        }
    }
}

impl Engine {
    /// Runs one node of class `class_type` outside the graph, with these services (to replay
    /// a graph's node on inputs no saved workflow can produce).
    pub(crate) fn run_node(&self, class_type: &str, inputs: &NodeInputs) -> NodeOutput {
        let node = self.registry.get(class_type).unwrap().node().clone();
        let interrupt = InterruptFlag::new();
        let mut events: Vec<ExecutionEvent> = Vec::new();
        let services: &NodeServices = &self.services;
        let mut ctx = ExecutionContext::standalone("replay", services, &interrupt, &mut events);
        node.execute(inputs, &mut ctx)
            .unwrap_or_else(|e| panic!("{class_type} failed: {e}"))
    }
}

/// `10·log10(255² / MSE)`; infinite for identical images.
pub(crate) fn psnr(got: &[u8], reference: &[u8]) -> f64 {
    assert_eq!(got.len(), reference.len(), "image sizes differ");
    let squared: f64 = got
        .iter()
        .zip(reference)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum();
    let mse = squared / got.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// The largest per-pixel difference in levels.
pub(crate) fn max_level_diff(got: &[u8], reference: &[u8]) -> u8 {
    got.iter()
        .zip(reference)
        .map(|(&a, &b)| a.abs_diff(b))
        .max()
        .unwrap_or(0)
}

/// `max|got − reference| / max|reference|`.
pub(crate) fn relative_max_diff(got: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(got.dims(), reference.dims(), "tensor shapes differ");
    let got = got.to_dtype(DType::F32).unwrap();
    let reference = reference.to_dtype(DType::F32).unwrap();
    let max = |t: &Tensor| -> f64 {
        f64::from(
            t.abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
        )
    };
    max(&(&got - &reference).unwrap()) / max(&reference).max(f64::MIN_POSITIVE)
}

/// One compared run.
pub(crate) struct Comparison {
    /// The case name (`<sampler>.<scheduler>`, a fixture case name, ...).
    pub(crate) name: String,
    /// Image PSNR against the fixture.
    pub(crate) psnr: f64,
    /// Largest pixel difference in levels.
    pub(crate) max_level_diff: u8,
    /// Final latent relative max difference, where the latent was probed.
    pub(crate) latent: Option<f64>,
    /// `None` when the bounds apply; else why this comparison is only printed.
    pub(crate) not_asserted: Option<&'static str>,
}

impl Comparison {
    /// Compares a run's PNG and probed `samples` with the fixture's `image.<key>` /
    /// `latent.<key>`.
    pub(crate) fn of(name: &str, run: &RunResult, fixture: &Fixture, key: &str) -> Comparison {
        assert_eq!((run.width, run.height), (64, 64), "{name}: image size");
        let latent = run.probed.samples.as_ref().map(|latent| &latent.samples);
        Comparison::with(name, &run.image, latent, fixture, key)
    }

    /// Compares `image` (and `latent`) with the fixture's `image.<key>` / `latent.<key>`.
    pub(crate) fn with(
        name: &str,
        image: &[u8],
        latent: Option<&Tensor>,
        fixture: &Fixture,
        key: &str,
    ) -> Comparison {
        let reference = fixture.image(&format!("image.{key}"));
        Comparison {
            name: name.to_owned(),
            psnr: psnr(image, &reference),
            max_level_diff: max_level_diff(image, &reference),
            latent: latent
                .map(|latent| relative_max_diff(latent, fixture.tensor(&format!("latent.{key}")))),
            not_asserted: None,
        }
    }

    /// Whether the image and latent are within tolerance.
    pub(crate) fn within_bounds(&self) -> bool {
        self.psnr >= MIN_PSNR_DB && self.latent.is_none_or(|d| d <= LATENT_TOLERANCE)
    }
}

/// Prints every comparison with the group's minimum PSNR, then fails listing the asserted
/// cases out of tolerance (all of them, not just the first).
pub(crate) fn report(group: &str, comparisons: &[Comparison]) {
    let asserted: Vec<&Comparison> = comparisons
        .iter()
        .filter(|c| c.not_asserted.is_none())
        .collect();
    let min_psnr = asserted
        .iter()
        .map(|c| c.psnr)
        .fold(f64::INFINITY, f64::min);
    let worst_latent = asserted
        .iter()
        .filter_map(|c| c.latent)
        .fold(0.0f64, f64::max);
    let mut text = String::new();
    writeln!(
        text,
        "{group}: {} asserted runs, min PSNR {min_psnr:.2} dB (bound {MIN_PSNR_DB}), worst latent \
         max|Δ|/max|ref| {worst_latent:.2e} (bound {LATENT_TOLERANCE:.0e})",
        asserted.len()
    )
    .unwrap();
    for c in comparisons {
        let latent = c.latent.map_or("-".to_owned(), |d| format!("{d:.2e}"));
        let verdict = match (c.not_asserted, c.within_bounds()) {
            (Some(why), _) => format!("  (not asserted: {why})"),
            (None, true) => String::new(),
            (None, false) => "  <-- MISMATCH".to_owned(),
        };
        writeln!(
            text,
            "  {:<62} PSNR {:>7.2} dB  max Δ {:>3}  latent {latent}{verdict}",
            c.name, c.psnr, c.max_level_diff,
        )
        .unwrap();
    }
    println!("{text}");
    let failed: Vec<&str> = asserted
        .iter()
        .filter(|c| !c.within_bounds())
        .map(|c| c.name.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "{group}: {} of {} runs differ from ComfyUI: {failed:?}\n{text}",
        failed.len(),
        asserted.len()
    );
}
