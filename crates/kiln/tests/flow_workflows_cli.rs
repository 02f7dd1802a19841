//! The seed's failure, end to end: ComfyUI's `flux_schnell` template on an fp8 e4m3fn Flux
//! checkpoint and its `sd3.5_simple_example` on a scaled-fp8 SD3.5 large, run as
//! `kiln [--simulate-device metal-m1|metal-m3] run <prompt.json> --base-directory <tmp>` —
//! where ComfyUI on an Apple GPU dies converting Float8_e4m3fn to MPS. Kiln plans the Apple
//! GPU (fp8 held as u8 bytes, widened per layer by lookup table), samples on the CPU
//! underneath, and writes the image ComfyUI wrote for the same files (`kiln-models`'
//! `flow_workflows` fixture, PSNR ≥ 40 dB), with no dtype error anywhere in its output. The
//! same prompts POSTed to a `kiln` server's `/prompt`, as any ComfyUI client sends them,
//! finish in `/history` with ComfyUI's images.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod parity;
mod support;

use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};
use parity::{psnr, read_png, safetensors_u8};
use serde_json::{json, Value};
use support::Server;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// A base directory with the two 8-bit checkpoints ComfyUI ran and the tiny T5 tokenizer.
fn prepare_base(meta: &Value) -> tempfile::TempDir {
    let base = tempfile::tempdir().unwrap();
    let checkpoints = base.path().join("models").join("checkpoints");
    for (key, family, storage) in [
        ("flux_schnell_fp8", Family::FluxSchnell, Storage::F8E4M3),
        (
            "sd35_large_scaled_fp8",
            Family::Sd35Large,
            Storage::ScaledF8E4M3,
        ),
    ] {
        let spec = CheckpointSpec::new(family, storage, Packaging::SingleFile);
        let written = write(&spec, &checkpoints).unwrap();
        let recorded = &meta["checkpoints"][key];
        assert_eq!(
            written.file_name().unwrap().to_str().unwrap(),
            recorded["file"]
        );
        assert_eq!(
            kiln_nodes::file_sha256(&written).unwrap(),
            recorded["sha256"].as_str().unwrap(),
            "the regenerated {key} checkpoint is not the file ComfyUI ran"
        );
    }
    let tokenizer = base
        .path()
        .join("models")
        .join("text_encoders")
        .join("t5_tokenizer");
    std::fs::create_dir_all(&tokenizer).unwrap();
    std::fs::copy(
        repo_path("models/tests/fixtures/t5/tiny_tokenizer/tokenizer.json"),
        tokenizer.join("tokenizer.json"),
    )
    .unwrap();
    base
}

/// Runs `kiln [--simulate-device PROFILE] run WORKFLOW` and returns the PNG's pixels.
fn run(base: &Path, workflow: &str, profile: Option<&str>, output_name: &str) -> Vec<u8> {
    let output_dir = base.join(output_name);
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    if let Some(profile) = profile {
        command.args(["--simulate-device", profile]);
    }
    let output = command
        .arg("run")
        .arg(repo_path(&format!(
            "nodes/tests/workflows/flow/{workflow}.json"
        )))
        .arg("--base-directory")
        .arg(base)
        .arg("--output-directory")
        .arg(&output_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{workflow} on {profile:?} failed:\n{stderr}"
    );
    for text in [&stdout, &stderr] {
        let lower = text.to_lowercase();
        assert!(
            !lower.contains("does not have support for that dtype")
                && !lower.contains("unsupported dtype"),
            "{workflow} on {profile:?}: {text}"
        );
    }
    let (pixels, _) = read_png(&output_dir.join("ComfyUI_00001_.png"));
    pixels
}

#[test]
fn fp8_flux_and_scaled_fp8_sd35_templates_run_on_simulated_apple_gpus_as_comfyui() {
    let fixture = repo_path("models/tests/fixtures/flow_workflows");
    let meta: Value =
        serde_json::from_slice(&std::fs::read(fixture.with_extension("json")).unwrap()).unwrap();
    let reference_file = fixture.with_extension("safetensors");
    let base = prepare_base(&meta);
    let runs = [
        ("flux_schnell", None),
        ("flux_schnell", Some("metal-m1")),
        ("flux_schnell", Some("metal-m3")),
        ("sd35_large", Some("metal-m1")),
    ];
    for (index, (workflow, profile)) in runs.into_iter().enumerate() {
        let pixels = run(base.path(), workflow, profile, &format!("out{index}"));
        let reference = safetensors_u8(&reference_file, &format!("image.{workflow}"));
        let psnr = psnr(&pixels, &reference);
        println!("kiln run {workflow} on {profile:?}: PSNR {psnr:.2} dB against ComfyUI");
        assert!(
            psnr >= 40.0,
            "{workflow} on {profile:?}: PSNR {psnr:.2} dB against ComfyUI's image"
        );
    }
}

#[test]
fn flux_and_sd35_prompts_posted_to_the_server_give_comfyuis_images() {
    let fixture = repo_path("models/tests/fixtures/flow_workflows");
    let meta: Value =
        serde_json::from_slice(&std::fs::read(fixture.with_extension("json")).unwrap()).unwrap();
    let reference_file = fixture.with_extension("safetensors");
    let base = prepare_base(&meta);
    let server = Server::start(base.path(), &[], "server.log");
    let mut submitted = Vec::new();
    for workflow in ["flux_schnell", "sd35_large"] {
        let prompt: Value = serde_json::from_slice(
            &std::fs::read(repo_path(&format!(
                "nodes/tests/workflows/flow/{workflow}.json"
            )))
            .unwrap(),
        )
        .unwrap();
        let (status, answer) = server.request(
            "POST",
            "/prompt",
            Some(&json!({"prompt": prompt, "client_id": "flow-test"})),
        );
        assert_eq!(status, 200, "{workflow}: {answer}");
        submitted.push((workflow, answer["prompt_id"].as_str().unwrap().to_owned()));
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    for (workflow, id) in submitted {
        let entry = loop {
            let (_, history) = server.request("GET", &format!("/history/{id}"), None);
            if let Some(entry) = history.get(id.as_str()) {
                if entry["status"]["completed"] == true || entry["status"]["status_str"] == "error"
                {
                    break entry.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{workflow} did not finish; log:\n{}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        };
        assert_eq!(
            entry["status"]["status_str"], "success",
            "{workflow}: {entry}"
        );
        let image = &entry["outputs"]["9"]["images"][0];
        let file = base
            .path()
            .join("output")
            .join(image["subfolder"].as_str().unwrap_or(""))
            .join(image["filename"].as_str().unwrap());
        let (pixels, _) = read_png(&file);
        let reference = safetensors_u8(&reference_file, &format!("image.{workflow}"));
        let psnr = psnr(&pixels, &reference);
        println!("POST /prompt {workflow}: PSNR {psnr:.2} dB against ComfyUI");
        assert!(psnr >= 40.0, "{workflow}: PSNR {psnr:.2} dB");
    }
    server.kill();
}
