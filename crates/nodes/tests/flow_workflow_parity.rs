//! Flux and SD3.5 workflows as ComfyUI ships them, same image as ComfyUI: the API prompts of
//! `tests/workflows/flow/` (the `flux_schnell`, `flux_schnell_full_text_to_image` and
//! `sd3.5_simple_example` templates, and a Flux dev custom-sampling graph with FluxGuidance,
//! ModelSamplingFlux and SamplerCustomAdvanced) run in-process on the tiny 8-bit checkpoints
//! ComfyUI ran (fp8 e4m3fn Flux, scaled-fp8 SD3.5 large and T5) and are compared with
//! `kiln-models`' `flow_workflows` fixture (scripts/reference/flow_workflow_fixtures.py):
//! images ≥ 40 dB PSNR and final latents `max|Δ| ≤ 1e-3·max|ref|`.
//!
//! The latent bound is the one that matters: the tiny models move the latent away from the
//! initial noise by ~0.4 on average, so images of different Flux graphs already agree at
//! ~50 dB; a wrong model shows in the latent long before it shows in the picture.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

#[allow(dead_code)] // the shared helpers serve several test binaries
mod parity_support;

use std::path::{Path, PathBuf};

use kiln_nodes::file_sha256;
use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};
use parity_support::{report, Comparison, Engine, Fixture};
use serde_json::Value as Json;

/// Where each fixture checkpoint goes, by the fixture's key.
const CHECKPOINTS: [(&str, Family, Storage, Packaging, &str); 7] = [
    (
        "flux_schnell_fp8",
        Family::FluxSchnell,
        Storage::F8E4M3,
        Packaging::SingleFile,
        "checkpoints",
    ),
    (
        "flux_dev_fp8",
        Family::FluxDev,
        Storage::F8E4M3,
        Packaging::SingleFile,
        "checkpoints",
    ),
    (
        "sd35_large_scaled_fp8",
        Family::Sd35Large,
        Storage::ScaledF8E4M3,
        Packaging::SingleFile,
        "checkpoints",
    ),
    (
        "flux_schnell_unet_fp8",
        Family::FluxSchnell,
        Storage::F8E4M3,
        Packaging::Standalone,
        "diffusion_models",
    ),
    (
        "clip_l_fp16",
        Family::ClipL,
        Storage::F16,
        Packaging::Standalone,
        "text_encoders",
    ),
    (
        "t5xxl_scaled_fp8",
        Family::T5Xxl,
        Storage::ScaledF8E4M3,
        Packaging::Standalone,
        "text_encoders",
    ),
    (
        "ae",
        Family::Vae16,
        Storage::F32,
        Packaging::Standalone,
        "vae",
    ),
];

fn workflow_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workflows/flow")
        .join(format!("{name}.json"))
}

/// A base directory with every fixture checkpoint (checked against the recorded sha256) and
/// the tiny T5 tokenizer where users put ComfyUI's (`models/text_encoders/t5_tokenizer`).
fn prepare_base(fixture: &Fixture) -> tempfile::TempDir {
    let base = tempfile::tempdir().unwrap();
    let models = base.path().join("models");
    for (key, family, storage, packaging, folder) in CHECKPOINTS {
        let recorded = &fixture.meta["checkpoints"][key];
        let spec = CheckpointSpec::new(family, storage, packaging);
        let written = write(&spec, &models.join(folder)).unwrap();
        assert_eq!(
            written.file_name().unwrap().to_str().unwrap(),
            recorded["file"],
            "{key}"
        );
        assert_eq!(
            file_sha256(&written).unwrap(),
            recorded["sha256"].as_str().unwrap(),
            "the regenerated {key} checkpoint is not the file ComfyUI ran"
        );
    }
    let tokenizer = models.join("text_encoders").join("t5_tokenizer");
    std::fs::create_dir_all(&tokenizer).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/tests/fixtures/t5/tiny_tokenizer/tokenizer.json"),
        tokenizer.join("tokenizer.json"),
    )
    .unwrap();
    base
}

fn load_prompt(name: &str) -> Json {
    serde_json::from_slice(&std::fs::read(workflow_path(name)).unwrap()).unwrap()
}

/// The node whose final LATENT is compared: the sampler of each graph.
fn sampler_node(prompt: &Json) -> u64 {
    prompt
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, node)| {
            matches!(
                node["class_type"].as_str(),
                Some("KSampler" | "SamplerCustomAdvanced")
            )
        })
        .map(|(id, _)| id.parse().unwrap())
        .unwrap()
}

#[test]
fn flux_and_sd35_template_workflows_match_comfyui() {
    let fixture = Fixture::load("flow_workflows");
    let base = prepare_base(&fixture);
    let mut engine = Engine::over(base.path());
    // (fixture key, prompt file, sampler and scheduler replacing the prompt's)
    type Case = (
        &'static str,
        &'static str,
        Option<(&'static str, &'static str)>,
    );
    let cases: [Case; 5] = [
        ("flux_schnell", "flux_schnell", None),
        (
            "flux_schnell_dpmpp_2m_beta",
            "flux_schnell",
            Some(("dpmpp_2m", "beta")),
        ),
        ("flux_schnell_split", "flux_schnell_split", None),
        ("flux_dev_custom", "flux_dev_custom", None),
        ("sd35_large", "sd35_large", None),
    ];
    let mut comparisons = Vec::new();
    for (key, file, sampler) in cases {
        let mut prompt = load_prompt(file);
        let node = sampler_node(&prompt);
        if let Some((sampler_name, scheduler)) = sampler {
            let inputs = &mut prompt[node.to_string()]["inputs"];
            inputs["sampler_name"] = sampler_name.into();
            inputs["scheduler"] = scheduler.into();
        }
        let run = engine.run_prompt(prompt, None, &[("samples", node, 0)]);
        comparisons.push(Comparison::of(key, &run, &fixture, key));
    }
    report("Flux / SD3.5 templates", &comparisons);
}
