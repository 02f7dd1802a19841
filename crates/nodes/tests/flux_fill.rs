//! Flux Fill inpainting as ComfyUI runs it: LoadImage (an RGBA PNG whose alpha is the mask) →
//! InpaintModelConditioning → DifferentialDiffusion / FluxGuidance / FluxDisableGuidance →
//! KSampler or SamplerCustomAdvanced → VAEDecode on the tiny f32 FLUX.1-Fill-dev checkpoint,
//! compared with ComfyUI's own node functions on the same file
//! (`scripts/reference/flux_fill_fixtures.py`, fixture in `tests/fixtures/flux_fill/`).
//!
//! Also: InpaintModelConditioning alone on an image that is not a multiple of 8 with a mask of
//! another size (ComfyUI resizes the mask to the image, then crops both), and a non-inpainting
//! model (SD1) given inpaint conditioning, which ComfyUI ignores: the SD1 `BaseModel` has no
//! `concat_keys`, so the run equals VAEEncode + SetLatentNoiseMask with plain conditioning.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

#[allow(dead_code)] // the shared helpers serve several test binaries
mod parity_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use kiln_graph::{NodeInputs, Value};
use kiln_nodes::{file_sha256, Conditioning, Image, Latent, Mask};
use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};
use parity_support::{psnr, relative_max_diff, Engine};
use serde_json::{json, Value as Json};

/// Final latents must agree to `max|Δ| ≤ LATENT_TOLERANCE · max|reference|`.
const LATENT_TOLERANCE: f64 = 1e-5;

/// Images must reach this PSNR.
const MIN_PSNR_DB: f64 = 40.0;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flux_fill")
}

struct Fixture {
    tensors: HashMap<String, Tensor>,
    meta: Json,
}

impl Fixture {
    fn load() -> Fixture {
        let dir = fixture_dir();
        let tensors =
            candle_core::safetensors::load(dir.join("flux_fill.safetensors"), &Device::Cpu)
                .unwrap();
        let meta =
            serde_json::from_slice(&std::fs::read(dir.join("flux_fill.json")).unwrap()).unwrap();
        Fixture { tensors, meta }
    }

    fn tensor(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("fixture tensor {name} is missing"))
    }

    fn image(&self, name: &str) -> Vec<u8> {
        self.tensor(name)
            .flatten_all()
            .unwrap()
            .to_vec1::<u8>()
            .unwrap()
    }
}

/// A base directory with the Fill checkpoint ComfyUI ran (sha256 checked), the tiny T5
/// tokenizer where users put ComfyUI's, and the input PNG.
fn prepare_base(fixture: &Fixture) -> tempfile::TempDir {
    let base = tempfile::tempdir().unwrap();
    let models = base.path().join("models");
    let spec = CheckpointSpec::new(Family::FluxFill, Storage::F32, Packaging::SingleFile);
    let written = write(&spec, &models.join("checkpoints")).unwrap();
    let recorded = &fixture.meta["checkpoint"];
    assert_eq!(
        written.file_name().unwrap().to_str().unwrap(),
        recorded["file"]
    );
    assert_eq!(
        file_sha256(&written).unwrap(),
        recorded["sha256"].as_str().unwrap(),
        "the regenerated Fill checkpoint is not the file ComfyUI ran"
    );
    let tokenizer = models.join("text_encoders").join("t5_tokenizer");
    std::fs::create_dir_all(&tokenizer).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/tests/fixtures/t5/tiny_tokenizer/tokenizer.json"),
        tokenizer.join("tokenizer.json"),
    )
    .unwrap();
    let input = base.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let png = fixture.meta["settings"]["input"].as_str().unwrap();
    std::fs::copy(fixture_dir().join(png), input.join(png)).unwrap();
    base
}

/// The nodes every graph shares: checkpoint (1), prompts (2, 3), LoadImage (4),
/// InpaintModelConditioning (5), VAEDecode of node `sampler` (9) and SaveImage (10).
fn common_nodes(fixture: &Fixture, checkpoint: &str, noise_mask: bool, sampler: u64) -> Json {
    let settings = &fixture.meta["settings"];
    json!({
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode",
              "inputs": {"clip": ["1", 1], "text": settings["positive"]}},
        "3": {"class_type": "CLIPTextEncode",
              "inputs": {"clip": ["1", 1], "text": settings["negative"]}},
        "4": {"class_type": "LoadImage", "inputs": {"image": settings["input"]}},
        "5": {"class_type": "InpaintModelConditioning",
              "inputs": {"positive": ["2", 0], "negative": ["3", 0], "vae": ["1", 2],
                         "pixels": ["4", 0], "mask": ["4", 1], "noise_mask": noise_mask}},
        "9": {"class_type": "VAEDecode",
              "inputs": {"samples": [sampler.to_string(), 0], "vae": ["1", 2]}},
        "10": {"class_type": "SaveImage",
               "inputs": {"images": ["9", 0], "filename_prefix": "fill"}},
    })
}

/// `script`'s `ksampler_case`: [DifferentialDiffusion 1.0] → FluxGuidance 30 → KSampler.
fn ksampler_prompt(fixture: &Fixture, noise_mask: bool, dd: bool, sampler: &str) -> Json {
    let checkpoint = fixture.meta["checkpoint"]["file"].as_str().unwrap();
    let mut prompt = common_nodes(fixture, checkpoint, noise_mask, 8);
    let model = if dd { "6" } else { "1" };
    prompt["6"] = json!({"class_type": "DifferentialDiffusion",
                         "inputs": {"model": ["1", 0], "strength": 1.0}});
    prompt["7"] = json!({"class_type": "FluxGuidance",
                         "inputs": {"conditioning": ["5", 0], "guidance": 30.0}});
    prompt["8"] = json!({"class_type": "KSampler", "inputs": {
        "model": [model, 0], "seed": fixture.meta["settings"]["seed"], "steps": 4, "cfg": 1.0,
        "sampler_name": sampler, "scheduler": "simple", "positive": ["7", 0],
        "negative": ["5", 1], "latent_image": ["5", 2], "denoise": 1.0}});
    prompt
}

/// `script`'s `custom_case`: FluxDisableGuidance, DifferentialDiffusion 0.5, CFGGuider cfg 2.
fn custom_prompt(fixture: &Fixture) -> Json {
    let checkpoint = fixture.meta["checkpoint"]["file"].as_str().unwrap();
    let mut prompt = common_nodes(fixture, checkpoint, true, 8);
    let extra = json!({
        "6": {"class_type": "DifferentialDiffusion",
              "inputs": {"model": ["1", 0], "strength": 0.5}},
        "7": {"class_type": "FluxDisableGuidance", "inputs": {"conditioning": ["5", 0]}},
        "11": {"class_type": "RandomNoise",
               "inputs": {"noise_seed": fixture.meta["settings"]["seed"]}},
        "12": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "13": {"class_type": "BasicScheduler", "inputs": {
            "model": ["6", 0], "scheduler": "simple", "steps": 4, "denoise": 1.0}},
        "14": {"class_type": "CFGGuider", "inputs": {
            "model": ["6", 0], "positive": ["7", 0], "negative": ["5", 1], "cfg": 2.0}},
        "8": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["11", 0], "guider": ["14", 0], "sampler": ["12", 0],
            "sigmas": ["13", 0], "latent_image": ["5", 2]}},
    });
    for (id, node) in extra.as_object().unwrap() {
        prompt[id] = node.clone();
    }
    prompt
}

#[test]
fn flux_fill_workflows_match_comfyui() {
    let fixture = Fixture::load();
    let base = prepare_base(&fixture);
    let mut engine = Engine::over(base.path());
    let cases = [
        (
            "ksampler_dd",
            ksampler_prompt(&fixture, true, true, "euler"),
        ),
        (
            "ksampler_concat_only",
            ksampler_prompt(&fixture, false, false, "dpmpp_2m"),
        ),
        ("custom_disable_guidance", custom_prompt(&fixture)),
    ];
    let mut failures = Vec::new();
    let mut vae = None;
    for (name, prompt) in cases {
        let run = engine.run_prompt(prompt, None, &[("samples", 8, 0), ("vae", 1, 2)]);
        vae = run.probed.vae.clone();
        let latent = &run.probed.samples.as_ref().unwrap().samples;
        let latent_diff = relative_max_diff(latent, fixture.tensor(&format!("latent.{name}")));
        let image_psnr = psnr(&run.image, &fixture.image(&format!("image.{name}")));
        println!("{name}: latent max|Δ|/max|ref| {latent_diff:.2e}, image {image_psnr:.1} dB");
        if latent_diff > LATENT_TOLERANCE || image_psnr < MIN_PSNR_DB {
            failures.push(format!(
                "{name}: latent {latent_diff:.2e}, {image_psnr:.1} dB"
            ));
        }
    }
    assert!(failures.is_empty(), "out of tolerance: {failures:?}");

    // InpaintModelConditioning alone: a 60×68 image (cropped to 56×64) and a 30×34 mask.
    let vae = vae.unwrap();
    let positive = Conditioning::single(
        Tensor::zeros((1, 4, 8), candle_core::DType::F32, &Device::Cpu).unwrap(),
        kiln_nodes::CondMeta::default(),
    );
    let inputs = NodeInputs::new()
        .with("positive", positive.clone().into_value())
        .with("negative", positive.into_value())
        .with("vae", vae.as_ref().clone().into_value())
        .with(
            "pixels",
            Image::new(fixture.tensor("odd.pixels").clone()).into_value(),
        )
        .with(
            "mask",
            Mask::new(fixture.tensor("odd.mask").clone()).into_value(),
        )
        .with("noise_mask", Value::Bool(true));
    let out = engine.run_node("InpaintModelConditioning", &inputs);
    let latent = out.values[2].downcast::<Latent>("latent").unwrap();
    let meta = &out.values[0]
        .downcast::<Conditioning>("positive")
        .unwrap()
        .entries[0]
        .meta;
    let checks = [
        ("samples", &latent.samples),
        ("noise_mask", latent.noise_mask.as_ref().unwrap()),
        (
            "concat_latent_image",
            meta.concat_latent_image.as_ref().unwrap(),
        ),
        ("concat_mask", meta.concat_mask.as_ref().unwrap()),
    ];
    for (name, got) in checks {
        let diff = relative_max_diff(got, fixture.tensor(&format!("odd.{name}")));
        assert!(diff <= 1e-5, "odd sizes: {name} differs by {diff:.2e}");
    }
}

/// ComfyUI's SD1 model ignores `concat_latent_image` / `concat_mask` (no `concat_keys`), so
/// InpaintModelConditioning there is VAEEncode + SetLatentNoiseMask.
#[test]
fn non_inpainting_models_ignore_the_inpaint_conditioning() {
    let fixture = Fixture::load();
    let base = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F32, Packaging::SingleFile);
    let written = write(&spec, &base.path().join("models").join("checkpoints")).unwrap();
    let checkpoint = written.file_name().unwrap().to_str().unwrap().to_owned();
    let input = base.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let png = fixture.meta["settings"]["input"].as_str().unwrap();
    std::fs::copy(fixture_dir().join(png), input.join(png)).unwrap();
    let mut engine = Engine::over(base.path());

    let mut inpaint = common_nodes(&fixture, &checkpoint, true, 8);
    inpaint["8"] = json!({"class_type": "KSampler", "inputs": {
        "model": ["1", 0], "seed": 3, "steps": 3, "cfg": 3.0, "sampler_name": "euler",
        "scheduler": "normal", "positive": ["5", 0], "negative": ["5", 1],
        "latent_image": ["5", 2], "denoise": 1.0}});
    let mut plain = inpaint.clone();
    plain["6"] =
        json!({"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}});
    plain["7"] = json!({"class_type": "SetLatentNoiseMask",
                        "inputs": {"samples": ["6", 0], "mask": ["4", 1]}});
    plain["8"]["inputs"]["positive"] = json!(["2", 0]);
    plain["8"]["inputs"]["negative"] = json!(["3", 0]);
    plain["8"]["inputs"]["latent_image"] = json!(["7", 0]);

    let with_concat = engine.run_prompt(inpaint, None, &[("samples", 8, 0)]);
    let without = engine.run_prompt(plain, None, &[("samples", 8, 0)]);
    let a = &with_concat.probed.samples.unwrap().samples;
    let b = &without.probed.samples.unwrap().samples;
    assert_eq!(relative_max_diff(a, b), 0.0);
    assert_eq!(with_concat.image, without.image);
}
