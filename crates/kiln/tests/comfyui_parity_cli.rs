//! ComfyUI parity through the real binary: ComfyUI's default SD1.5 txt2img graph, saved in UI
//! format (`crates/nodes/tests/workflows/sd15_txt2img.json`: seed 42, 4 steps, cfg 7.5, euler,
//! normal, 64×64), run as `kiln run <workflow.json> --base-directory <tmp>` on the tiny SD1
//! checkpoint ComfyUI ran, writes the image ComfyUI wrote (`kiln-models`' `ksampler_sd1`
//! fixture, PSNR ≥ 40 dB) with the workflow embedded in the PNG.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::Command;

mod parity;

use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};
use parity::{psnr, read_png, safetensors_u8};
use serde_json::Value;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

#[test]
fn kiln_run_on_the_saved_default_graph_gives_comfyuis_image() {
    let fixtures = repo_path("models/tests/fixtures");
    let meta: Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("ksampler_sd1.json")).unwrap())
            .unwrap();
    let recorded = &meta["model"]["checkpoint"];
    let base = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F32, Packaging::SingleFile);
    let written = write(&spec, &base.path().join("models").join("checkpoints")).unwrap();
    assert_eq!(
        written.file_name().unwrap().to_str().unwrap(),
        recorded["file"]
    );
    assert_eq!(
        kiln_nodes::file_sha256(&written).unwrap(),
        recorded["sha256"].as_str().unwrap(),
        "the regenerated tiny SD1 checkpoint is not the file ComfyUI ran"
    );

    let workflow_path = repo_path("nodes/tests/workflows/sd15_txt2img.json");
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("run")
        .arg(&workflow_path)
        .arg("--base-directory")
        .arg(base.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kiln run failed:\n{stderr}");
    let saved = base.path().join("output").join("ComfyUI_00001_.png");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(saved.to_str().unwrap()),
        "stdout: {stdout}\nstderr: {stderr}"
    );

    let (pixels, chunks) = read_png(&saved);
    let reference = safetensors_u8(
        &fixtures.join("ksampler_sd1.safetensors"),
        "image.euler.normal",
    );
    let psnr = psnr(&pixels, &reference);
    println!("kiln run sd15_txt2img.json (euler, normal): PSNR {psnr:.2} dB against ComfyUI");
    assert!(psnr >= 40.0, "PSNR {psnr:.2} dB against ComfyUI's image");

    let keys: Vec<&str> = chunks.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["prompt", "workflow"]);
    let prompt: Value = serde_json::from_str(&chunks[0].1).unwrap();
    assert_eq!(prompt["3"]["class_type"], "KSampler");
    assert_eq!(prompt["3"]["inputs"]["seed"], 42);
    let embedded: Value = serde_json::from_str(&chunks[1].1).unwrap();
    let original: Value = serde_json::from_slice(&std::fs::read(&workflow_path).unwrap()).unwrap();
    assert_eq!(embedded, original);
}
