//! A whole txt2img prompt through the real validator and executor on a tiny SD1 checkpoint:
//! checkpoint loading, text encoding, sampling, VAE decoding and saving, plus the model cache
//! across prompts and the sampler's per-step progress.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod node_support;

use std::sync::Arc;

use kiln_graph::{ExecutionEvent, ExecutionRequest, Executor, Validator};
use kiln_nodes::{builtin_registry, read_png_text};
use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};
use node_support::cpu_services;
use serde_json::json;

fn prompt(ckpt: &str, seed: u64) -> serde_json::Value {
    json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a (red:1.2) cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": 2, "cfg": 7.5,
              "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
              "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "test", "images": ["8", 0]}}
    })
}

#[test]
fn tiny_sd1_txt2img_runs_end_to_end() {
    let base = tempfile::tempdir().unwrap();
    let checkpoints = base.path().join("models").join("checkpoints");
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F16, Packaging::SingleFile);
    let written = write(&spec, &checkpoints).unwrap();
    let ckpt = written.file_name().unwrap().to_str().unwrap().to_owned();

    let services = Arc::new(cpu_services(base.path()));
    let registry = Arc::new(builtin_registry());
    let resolve = |key: &str| services.combo_options(key);
    let validated = Validator::new(&registry, &resolve)
        .validate(&prompt(&ckpt, 42))
        .unwrap();
    let mut executor = Executor::new(registry.clone(), services.clone());
    let mut events: Vec<ExecutionEvent> = Vec::new();
    let request = ExecutionRequest::new("p1", validated)
        .extra_data(json!({"extra_pnginfo": {"workflow": {"k": 1}}}));
    let outcome = executor.execute(&request, &mut events).unwrap();
    let file = outcome.outputs["9"]["images"][0]["filename"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(file, "test_00001_.png");
    let path = services.output_directory().join(&file);
    let chunks = read_png_text(&path).unwrap();
    assert_eq!(
        chunks.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["prompt", "workflow"]
    );
    assert_eq!(chunks[1].1, r#"{"k": 1}"#);
    let steps: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            ExecutionEvent::Progress {
                node, value, max, ..
            } if node == "3" => Some((*value, *max)),
            _ => None,
        })
        .collect();
    assert_eq!(steps, [(1, 2), (2, 2)]);
    assert_eq!(services.models().len(), 1);

    // Same seed again with another prefix-free run: the cache serves the loader, and the new
    // seed changes the image.
    let validated = Validator::new(&registry, &resolve)
        .validate(&prompt(&ckpt, 43))
        .unwrap();
    let outcome = executor
        .execute(&ExecutionRequest::new("p2", validated), &mut events)
        .unwrap();
    assert!(outcome.cached.contains(&"4".to_owned()));
    let second = outcome.outputs["9"]["images"][0]["filename"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(second, "test_00002_.png");
    let a = std::fs::read(&path).unwrap();
    let b = std::fs::read(services.output_directory().join(&second)).unwrap();
    assert_ne!(a, b);
    assert_eq!(services.models().len(), 1);
}

#[test]
fn zero_noise_mask_keeps_the_latent_and_interrupt_stops_sampling() {
    use candle_core::{Device, Tensor};
    use kiln_graph::{ExecutionContext, InterruptFlag, NodeInputs, Value};
    use kiln_nodes::{load_checkpoint, Conditioning, Latent};

    let base = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F32, Packaging::SingleFile);
    let ckpt = write(&spec, &base.path().join("models").join("checkpoints")).unwrap();
    let services = cpu_services(base.path());
    let loaded = load_checkpoint(&services, &ckpt).unwrap();
    let model = loaded.model.clone().unwrap();
    let clip = loaded.clip.clone().unwrap();
    let registry = builtin_registry();
    let interrupt = InterruptFlag::new();
    let mut events: Vec<ExecutionEvent> = Vec::new();
    let mut ctx = ExecutionContext::standalone("3", &services, &interrupt, &mut events);
    let encode = registry.get("CLIPTextEncode").unwrap().node().clone();
    let cond = encode
        .execute(
            &NodeInputs::new()
                .with("text", Value::String("a cat".into()))
                .with("clip", clip.into_value()),
            &mut ctx,
        )
        .unwrap()
        .values[0]
        .downcast::<Conditioning>("c")
        .unwrap();

    let values: Vec<f32> = (0..4 * 8 * 8)
        .map(|i| ((i % 13) as f32 - 6.0) / 4.0)
        .collect();
    let samples = Tensor::from_vec(values, (1, 4, 8, 8), &Device::Cpu).unwrap();
    let sampler = registry.get("KSampler").unwrap().node().clone();
    let run = |mask_value: f32, ctx: &mut ExecutionContext<'_>| {
        let mut latent = Latent::new(samples.clone());
        latent.noise_mask = Some(Tensor::full(mask_value, (1, 1, 64, 64), &Device::Cpu).unwrap());
        let inputs = NodeInputs::new()
            .with("model", model.clone().into_value())
            .with("positive", cond.as_ref().clone().into_value())
            .with("negative", cond.as_ref().clone().into_value())
            .with("latent_image", latent.into_value())
            .with("seed", Value::Int(1))
            .with("steps", Value::Int(3))
            .with("cfg", Value::Float(2.0))
            .with("sampler_name", Value::String("euler".into()))
            .with("scheduler", Value::String("karras".into()))
            .with("denoise", Value::Float(1.0));
        sampler.execute(&inputs, ctx)
    };
    let diff = |out: &kiln_graph::NodeOutput| -> f32 {
        let latent = out.values[0].downcast::<Latent>("LATENT").unwrap();
        (&latent.samples - &samples)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    let kept = run(0.0, &mut ctx).unwrap();
    assert!(diff(&kept) < 1e-4, "{}", diff(&kept));
    let changed = run(1.0, &mut ctx).unwrap();
    assert!(diff(&changed) > 1e-2);

    interrupt.interrupt();
    let err = run(1.0, &mut ctx).unwrap_err();
    assert!(matches!(err, kiln_graph::NodeError::Interrupted), "{err}");
}
