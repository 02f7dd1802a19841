//! The custom-sampling nodes through the real validator and executor on the tiny SD1
//! checkpoint: `RandomNoise` + `KSamplerSelect` + `BasicScheduler` + `CFGGuider` +
//! `SamplerCustomAdvanced` give exactly `KSampler`'s latent for the same seed, sampler,
//! scheduler and cfg (as in ComfyUI), `SamplerCustom` too, `denoised_output` is the last
//! denoised prediction, and `ModelSamplingSD3` / `ModelSamplingFlux` / `ModelSamplingAuraFlow`
//! change `BasicScheduler`'s sigmas to ComfyUI's numbers.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod node_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::Tensor;
use kiln_graph::{
    ExecutionContext, ExecutionEvent, ExecutionRequest, Executor, InputSpec, InterruptFlag, Node,
    NodeError, NodeInputs, NodeOutput, NodeRegistry, NodeSchema, StringInput, Validator, Value,
};
use kiln_nodes::types::Sigmas;
use kiln_nodes::{builtin_registry, load_checkpoint, Latent, Model, NodeServices};
use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};
use node_support::cpu_services;
use serde_json::json;

/// A test-only output node keeping every latent it sees by `tag`.
struct CaptureLatent {
    seen: Arc<Mutex<HashMap<String, Tensor>>>,
}

impl Node for CaptureLatent {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("CaptureLatent")
            .input(InputSpec::required("samples", "LATENT"))
            .input(InputSpec::required("tag", StringInput::new("")))
            .output_node()
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let latent = inputs.object::<Latent>("samples")?;
        let tag = inputs.string("tag")?.to_owned();
        self.seen
            .lock()
            .unwrap()
            .insert(tag, latent.samples.clone());
        Ok(NodeOutput::ui(json!({})))
    }
}

struct Setup {
    _base: tempfile::TempDir,
    ckpt: String,
    path: std::path::PathBuf,
    services: Arc<NodeServices>,
}

fn setup() -> Setup {
    let base = tempfile::tempdir().unwrap();
    let checkpoints = base.path().join("models").join("checkpoints");
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F32, Packaging::SingleFile);
    let written = write(&spec, &checkpoints).unwrap();
    let ckpt = written.file_name().unwrap().to_str().unwrap().to_owned();
    let services = Arc::new(cpu_services(base.path()));
    Setup {
        _base: base,
        ckpt,
        path: written.clone(),
        services,
    }
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Both samplers on one prompt: KSampler (node 3) and the custom chain (nodes 20..24), each
/// captured; `SamplerCustom` (node 30) with the same settings; `denoised_output` captured too.
fn prompt(ckpt: &str, sampler: &str, scheduler: &str) -> serde_json::Value {
    json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a (red:1.2) cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 1234, "steps": 3, "cfg": 6.5,
              "sampler_name": sampler, "scheduler": scheduler, "denoise": 1.0,
              "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "20": {"class_type": "RandomNoise", "inputs": {"noise_seed": 1234}},
        "21": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}},
        "22": {"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": scheduler,
               "steps": 3, "denoise": 1.0}},
        "23": {"class_type": "CFGGuider", "inputs": {"model": ["4", 0], "positive": ["6", 0],
               "negative": ["7", 0], "cfg": 6.5}},
        "24": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["20", 0], "guider": ["23", 0],
               "sampler": ["21", 0], "sigmas": ["22", 0], "latent_image": ["5", 0]}},
        "30": {"class_type": "SamplerCustom", "inputs": {"model": ["4", 0], "add_noise": true,
               "noise_seed": 1234, "cfg": 6.5, "positive": ["6", 0], "negative": ["7", 0],
               "sampler": ["21", 0], "sigmas": ["22", 0], "latent_image": ["5", 0]}},
        "90": {"class_type": "CaptureLatent", "inputs": {"samples": ["3", 0], "tag": "ksampler"}},
        "91": {"class_type": "CaptureLatent", "inputs": {"samples": ["24", 0], "tag": "advanced"}},
        "92": {"class_type": "CaptureLatent", "inputs": {"samples": ["24", 1], "tag": "denoised"}},
        "93": {"class_type": "CaptureLatent", "inputs": {"samples": ["30", 0], "tag": "custom"}}
    })
}

fn registry_with_capture(seen: &Arc<Mutex<HashMap<String, Tensor>>>) -> Arc<NodeRegistry> {
    let mut registry = builtin_registry();
    registry
        .register(CaptureLatent { seen: seen.clone() })
        .unwrap();
    Arc::new(registry)
}

fn run_prompt(
    setup: &Setup,
    registry: &Arc<NodeRegistry>,
    prompt: &serde_json::Value,
) -> Vec<ExecutionEvent> {
    let resolve = |key: &str| setup.services.combo_options(key);
    let validated = Validator::new(registry, &resolve).validate(prompt).unwrap();
    let mut executor = Executor::new(registry.clone(), setup.services.clone());
    let mut events: Vec<ExecutionEvent> = Vec::new();
    executor
        .execute(&ExecutionRequest::new("p", validated), &mut events)
        .unwrap();
    events
}

#[test]
fn sampler_custom_advanced_gives_exactly_ksamplers_latent() {
    let setup = setup();
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let registry = registry_with_capture(&seen);
    // An ancestral sampler also checks that the per-step noise uses the same seed.
    for (sampler, scheduler) in [("euler", "karras"), ("euler_ancestral", "normal")] {
        seen.lock().unwrap().clear();
        let events = run_prompt(&setup, &registry, &prompt(&setup.ckpt, sampler, scheduler));
        let seen = seen.lock().unwrap();
        let ksampler = flat(&seen["ksampler"]);
        assert_eq!(seen["ksampler"].dims(), &[2, 4, 8, 8]);
        assert_eq!(flat(&seen["advanced"]), ksampler, "{sampler}/{scheduler}");
        assert_eq!(flat(&seen["custom"]), ksampler, "{sampler}/{scheduler}");

        // The last x0 prediction: for a schedule ending at 0 the final euler step lands on
        // it, so it is near the output yet computed separately.
        let denoised = flat(&seen["denoised"]);
        let gap = denoised
            .iter()
            .zip(&ksampler)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            gap < 1e-3,
            "{sampler}: denoised_output far from output: {gap}"
        );

        let steps: Vec<(u64, u64)> = events
            .iter()
            .filter_map(|e| match e {
                ExecutionEvent::Progress {
                    node, value, max, ..
                } if node == "24" => Some((*value, *max)),
                _ => None,
            })
            .collect();
        assert_eq!(steps, [(1, 3), (2, 3), (3, 3)]);
    }
}

#[test]
fn denoised_output_stops_with_the_schedule_and_disable_noise_is_deterministic() {
    let setup = setup();
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let registry = registry_with_capture(&seen);
    // Only the first step of three: `output` keeps leftover noise, `denoised_output` is the
    // prediction at that step; `DisableNoise` + `FlipSigmas` only wire up.
    let prompt = json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": setup.ckpt}},
        "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "20": {"class_type": "RandomNoise", "inputs": {"noise_seed": 7}},
        "21": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "22": {"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": "normal",
               "steps": 3, "denoise": 1.0}},
        "25": {"class_type": "SplitSigmas", "inputs": {"sigmas": ["22", 0], "step": 1}},
        "23": {"class_type": "BasicGuider", "inputs": {"model": ["4", 0], "conditioning": ["6", 0]}},
        "24": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["20", 0], "guider": ["23", 0],
               "sampler": ["21", 0], "sigmas": ["25", 0], "latent_image": ["5", 0]}},
        "26": {"class_type": "DisableNoise", "inputs": {}},
        "27": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["26", 0], "guider": ["23", 0],
               "sampler": ["21", 0], "sigmas": ["25", 1], "latent_image": ["24", 0]}},
        "90": {"class_type": "CaptureLatent", "inputs": {"samples": ["24", 0], "tag": "high"}},
        "91": {"class_type": "CaptureLatent", "inputs": {"samples": ["24", 1], "tag": "high_x0"}},
        "92": {"class_type": "CaptureLatent", "inputs": {"samples": ["27", 0], "tag": "low"}},
    });
    run_prompt(&setup, &registry, &prompt);
    let seen = seen.lock().unwrap();
    // EmptySD3LatentImage's 16 channels are refitted to the SD1 model's 4.
    assert_eq!(seen["high"].dims(), &[1, 4, 8, 8]);
    let high = flat(&seen["high"]);
    let high_x0 = flat(&seen["high_x0"]);
    let gap = high
        .iter()
        .zip(&high_x0)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(gap > 1e-2, "leftover noise expected, gap {gap}");
    assert_ne!(flat(&seen["low"]), high);
}

#[test]
fn bad_custom_sampling_prompts_fail_validation_naming_the_input() {
    let setup = setup();
    let registry = Arc::new(builtin_registry());
    let resolve = |key: &str| setup.services.combo_options(key);
    let prompt = json!({
        "20": {"class_type": "RandomNoise", "inputs": {"noise_seed": -1}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": setup.ckpt}},
        "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "21": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "not_a_sampler"}},
        "22": {"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": "normal",
               "steps": 3, "denoise": 1.0}},
        "23": {"class_type": "BasicGuider", "inputs": {"model": ["4", 0], "conditioning": ["6", 0]}},
        "24": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["20", 0], "guider": ["23", 0],
               "sampler": ["21", 0], "sigmas": ["22", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["24", 1], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["8", 0]}},
        // A LATENT where an IMAGE belongs: ComfyUI reports the mismatch and stops there.
        "10": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["24", 0]}}
    });
    let failure = Validator::new(&registry, &resolve)
        .validate(&prompt)
        .unwrap_err();
    let text = failure.to_json().to_string();
    for input in ["noise_seed", "sampler_name", "images"] {
        assert!(text.contains(input), "{input} not named in {text}");
    }
}

/// `BasicScheduler` on `model` for `scheduler`/`steps`/`denoise`.
fn basic_sigmas(
    model: &Model,
    scheduler: &str,
    steps: i64,
    denoise: f64,
    services: &NodeServices,
) -> Vec<f32> {
    let registry = builtin_registry();
    let node = registry.get("BasicScheduler").unwrap().node().clone();
    let interrupt = InterruptFlag::new();
    let mut events: Vec<ExecutionEvent> = Vec::new();
    let mut ctx = ExecutionContext::standalone("1", services, &interrupt, &mut events);
    let inputs = NodeInputs::new()
        .with("model", model.clone().into_value())
        .with("scheduler", Value::String(scheduler.into()))
        .with("steps", Value::Int(i128::from(steps)))
        .with("denoise", Value::Float(denoise));
    let out = node.execute(&inputs, &mut ctx).unwrap();
    out.values[0]
        .downcast::<Sigmas>("SIGMAS")
        .unwrap()
        .values
        .clone()
}

fn patch(model: &Model, class: &str, inputs: NodeInputs, services: &NodeServices) -> Model {
    let registry = builtin_registry();
    let node = registry.get(class).unwrap().node().clone();
    let interrupt = InterruptFlag::new();
    let mut events: Vec<ExecutionEvent> = Vec::new();
    let mut ctx = ExecutionContext::standalone("1", services, &interrupt, &mut events);
    let out = node
        .execute(&inputs.with("model", model.clone().into_value()), &mut ctx)
        .unwrap();
    out.values[0]
        .downcast::<Model>("MODEL")
        .unwrap()
        .as_ref()
        .clone()
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?}");
    for (g, w) in got.iter().zip(want) {
        // torch's vectorised exp/pow may differ from libm in the last bit.
        let tolerance = 2e-7 * w.abs().max(1e-3);
        assert!(
            (f64::from(*g) - w).abs() <= tolerance,
            "{what}: got {got:?}, ComfyUI {want:?}"
        );
    }
}

/// Reference numbers from ComfyUI 0.3.64 itself (`/work/venv-ref`, `--cpu`):
///
/// ```python
/// class SD3S(ms.ModelSamplingDiscreteFlow, ms.CONST): pass
/// class FluxS(ms.ModelSamplingFlux, ms.CONST): pass
/// m = SD3S(cfg); m.set_parameters(shift=2.5, multiplier=1000)
/// comfy.samplers.calculate_sigmas(m, scheduler, 4)                # ModelSamplingSD3 2.5
/// comfy.samplers.calculate_sigmas(m, "simple", int(3 / 0.6))[-4:] # BasicScheduler denoise 0.6
/// shift = (512 * 768 / 256) * mm + b                              # ModelSamplingFlux 512x768
/// f = FluxS(cfg); f.set_parameters(shift=shift)
/// a = SD3S(cfg); a.set_parameters(shift=1.73, multiplier=1.0)     # ModelSamplingAuraFlow
/// ```
#[test]
fn model_sampling_nodes_change_sigmas_as_comfyui_does() {
    let setup = setup();
    let loaded = load_checkpoint(&setup.services, &setup.path).unwrap();
    let model = loaded.model.clone().unwrap();
    let services = setup.services.as_ref();

    let sd3 = patch(
        &model,
        "ModelSamplingSD3",
        NodeInputs::new().with("shift", Value::Float(2.5)),
        services,
    );
    let sd3_cases: [(&str, [f64; 5]); 4] = [
        (
            "simple",
            [
                1.0,
                0.8823529481887817,
                0.7142857313156128,
                0.4545454680919647,
                0.0,
            ],
        ),
        (
            "normal",
            [
                1.0,
                0.8338531255722046,
                0.5574015974998474,
                0.006217359099537134,
                0.0,
            ],
        ),
        (
            "karras",
            [
                1.0,
                0.22536274790763855,
                0.03386063501238823,
                0.002496256958693266,
                0.0,
            ],
        ),
        (
            "beta",
            [
                1.0,
                0.9212879538536072,
                0.7151013016700745,
                0.3496641516685486,
                0.0,
            ],
        ),
    ];
    for (scheduler, want) in sd3_cases {
        let got = basic_sigmas(&sd3, scheduler, 4, 1.0, services);
        assert_close(&got, &want, &format!("sd3 {scheduler}"));
    }
    assert_close(
        &basic_sigmas(&sd3, "simple", 3, 0.6, services),
        &[0.7894736528396606, 0.625, 0.38461539149284363, 0.0],
        "sd3 simple denoise 0.6",
    );
    // The input model is untouched (ComfyUI patches a clone).
    assert_eq!(
        basic_sigmas(&model, "simple", 4, 1.0, services),
        [14.614641, 4.0817294, 1.6128862, 0.6932049, 0.0]
    );

    let flux = patch(
        &model,
        "ModelSamplingFlux",
        NodeInputs::new()
            .with("max_shift", Value::Float(1.15))
            .with("base_shift", Value::Float(0.5))
            .with("width", Value::Int(512))
            .with("height", Value::Int(768)),
        services,
    );
    let flux_cases: [(&str, [f64; 5]); 3] = [
        (
            "simple",
            [
                1.0,
                0.8599985837936401,
                0.671872615814209,
                0.40565770864486694,
                0.0,
            ],
        ),
        (
            "normal",
            [
                1.0,
                0.8037850260734558,
                0.5060331225395203,
                0.0004191313055343926,
                0.0,
            ],
        ),
        (
            "beta",
            [
                1.0,
                0.9057167768478394,
                0.6719607710838318,
                0.30398353934288025,
                0.0,
            ],
        ),
    ];
    for (scheduler, want) in flux_cases {
        let got = basic_sigmas(&flux, scheduler, 4, 1.0, services);
        assert_close(&got, &want, &format!("flux {scheduler}"));
    }

    let aura = patch(
        &model,
        "ModelSamplingAuraFlow",
        NodeInputs::new().with("shift", Value::Float(1.73)),
        services,
    );
    assert_close(
        &basic_sigmas(&aura, "simple", 4, 1.0, services),
        &[
            1.0,
            0.8384491205215454,
            0.6336996555328369,
            0.3657505214214325,
            0.0,
        ],
        "aura simple",
    );
}
