//! The planner's text-encoder policy in the nodes: under `--disable-smart-memory`
//! (`TextEncoderPolicy::FreeBeforeDiffusion`) sampling an SD3 checkpoint drops every text-encoder
//! weight store (the cached `CLIP` output and the model cache included), and the next prompt
//! loads them again and encodes exactly as a fresh load does; with default options they stay.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod node_support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use candle_core::Tensor;
use kiln_folders::FolderPaths;
use kiln_graph::{
    ExecutionContext, ExecutionEvent, ExecutionRequest, Executor, InterruptFlag, NodeInputs,
    Validator,
};
use kiln_nodes::{
    builtin_registry, decode_image, load_checkpoint, Clip, Conditioning, NodeServices,
};
use kiln_runtime::{detect_host, PlanOptions, Planner, TextEncoderPolicy, WeightStore};
use kiln_test_checkpoints::{CheckpointSpec, Family, Packaging, Storage};
use node_support::{max_diff, write_model};
use serde_json::json;

/// A ComfyUI base folder with the tiny T5 tokenizer, an SD3-medium all-in-one checkpoint, and
/// CPU services planned with `disable_smart_memory`.
struct Setup {
    base: tempfile::TempDir,
    checkpoint: String,
    services: Arc<NodeServices>,
}

fn base_setup(disable_smart_memory: bool) -> Setup {
    let base = tempfile::tempdir().unwrap();
    let tokenizer_dir = base
        .path()
        .join("models")
        .join("text_encoders")
        .join("t5_tokenizer");
    std::fs::create_dir_all(&tokenizer_dir).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/fixtures/t5/tiny_tokenizer/tokenizer.json");
    std::fs::copy(fixture, tokenizer_dir.join("tokenizer.json")).unwrap();
    let spec = CheckpointSpec::new(Family::Sd3Medium, Storage::F32, Packaging::SingleFile);
    let checkpoint = write_model(base.path(), "checkpoints", &spec);
    let planner = Planner::new(
        PlanOptions {
            cpu: true,
            disable_smart_memory,
            ..PlanOptions::default()
        },
        detect_host(),
    );
    let services = NodeServices::builder(FolderPaths::new(base.path()).unwrap(), planner).build();
    Setup {
        base,
        checkpoint,
        services: Arc::new(services),
    }
}

impl Setup {
    fn checkpoint_path(&self) -> PathBuf {
        self.services
            .folders()
            .try_resolve("checkpoints", &self.checkpoint)
            .unwrap()
    }

    /// The checkpoint's CLIP as the loader (and its cache) holds it.
    fn clip(&self) -> Clip {
        let loaded = load_checkpoint(&self.services, &self.checkpoint_path()).unwrap();
        loaded.clip.clone().unwrap()
    }

    /// `CLIPTextEncode` of `text` with `clip`, run on its own.
    fn encode(&self, clip: &Clip, text: &str) -> Tensor {
        let registry = builtin_registry();
        let node = registry.get("CLIPTextEncode").unwrap().node().clone();
        let mut inputs = NodeInputs::new();
        inputs.insert("text", kiln_graph::Value::String(text.to_owned()));
        inputs.insert("clip", clip.clone().into_value());
        let interrupt = InterruptFlag::new();
        let mut events: Vec<ExecutionEvent> = Vec::new();
        let mut ctx = ExecutionContext::standalone("1", &*self.services, &interrupt, &mut events);
        let out = node.execute(&inputs, &mut ctx).unwrap();
        let cond: Arc<Conditioning> = out.values[0].downcast("CONDITIONING").unwrap();
        cond.entries[0].cond.clone()
    }

    /// CheckpointLoaderSimple → CLIPTextEncode → one KSampler step → VAEDecode → SaveImage;
    /// returns the RGB bytes saved.
    fn run_prompt(&self, executor: &mut Executor, positive: &str) -> Vec<u8> {
        let prompt = json!({
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": self.checkpoint}},
            "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": ["1", 1]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
            "3": {"class_type": "KSampler", "inputs": {"seed": 3, "steps": 1, "cfg": 2.0,
                  "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0,
                  "model": ["1", 0], "positive": ["6", 0], "negative": ["7", 0],
                  "latent_image": ["5", 0]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["1", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "release", "images": ["8", 0]}}
        });
        let registry = builtin_registry();
        let resolve = |key: &str| self.services.combo_options(key);
        let validated = Validator::new(&registry, &resolve)
            .validate(&prompt)
            .unwrap();
        let mut events: Vec<ExecutionEvent> = Vec::new();
        let outcome = executor
            .execute(&ExecutionRequest::new("p", validated), &mut events)
            .unwrap();
        let file = outcome.outputs["9"]["images"][0]["filename"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = self.services.output_directory().join(file);
        decode_image(&path, "image").unwrap().rgb
    }

    fn executor(&self) -> Executor {
        Executor::new(Arc::new(builtin_registry()), self.services.clone())
    }
}

/// Weak references to the weight stores `clip`'s encoders hold now.
fn weak_stores(clip: &Clip) -> Vec<Weak<WeightStore>> {
    clip.encoders
        .iter()
        .map(|encoder| Arc::downgrade(&encoder.weights().unwrap()))
        .collect()
}

#[test]
fn disable_smart_memory_frees_text_encoders_when_sampling_and_reloads_them() {
    let setup = base_setup(true);
    let loaded = load_checkpoint(&setup.services, &setup.checkpoint_path()).unwrap();
    let model = loaded.model.as_ref().unwrap();
    assert_eq!(model.text_encoders, TextEncoderPolicy::FreeBeforeDiffusion);
    assert!(model
        .text_encoders_reason
        .contains("--disable-smart-memory"));
    let clip = setup.clip();
    assert_eq!(clip.encoders.len(), 3);
    let before = weak_stores(&clip);
    assert!(before.iter().all(|weak| weak.upgrade().is_some()));

    let mut executor = setup.executor();
    setup.run_prompt(&mut executor, "a dog in snow");
    // Every strong reference (the cached CheckpointLoaderSimple output, the model cache, our
    // own clone) let go of the weights.
    assert!(clip.encoders.iter().all(|encoder| !encoder.is_loaded()));
    assert!(before.iter().all(|weak| weak.upgrade().is_none()));

    // A second prompt re-encodes with the cached CLIP: the weights come back from the file.
    let second = setup.run_prompt(&mut executor, "a cat on a mat");
    assert!(
        clip.encoders.iter().all(|encoder| !encoder.is_loaded()),
        "released again when the second prompt sampled"
    );
    let reloaded = setup.encode(&clip, "a cat on a mat");
    assert!(clip.encoders.iter().all(|encoder| encoder.is_loaded()));

    // The same conditioning and image as a fresh load that never released anything.
    let fresh = base_setup(false);
    let fresh_cond = fresh.encode(&fresh.clip(), "a cat on a mat");
    assert_eq!(reloaded.dims(), fresh_cond.dims());
    assert!(max_diff(&reloaded, &fresh_cond) < 1e-6);
    let fresh_image = fresh.run_prompt(&mut fresh.executor(), "a cat on a mat");
    assert_eq!(second, fresh_image);
    drop(fresh.base);
}

#[test]
fn default_options_keep_text_encoders_loaded() {
    let setup = base_setup(false);
    let loaded = load_checkpoint(&setup.services, &setup.checkpoint_path()).unwrap();
    assert_eq!(
        loaded.model.as_ref().unwrap().text_encoders,
        TextEncoderPolicy::Keep
    );
    let clip = setup.clip();
    let before = weak_stores(&clip);
    setup.run_prompt(&mut setup.executor(), "a dog in snow");
    assert!(clip.encoders.iter().all(|encoder| encoder.is_loaded()));
    assert!(before.iter().all(|weak| weak.upgrade().is_some()));
    drop(setup.base);
}
