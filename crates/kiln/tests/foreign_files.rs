//! The real `kiln` binary on checkpoints written by PyTorch and the Python `safetensors` package
//! (`scripts/reference/foreign_files.py`, fixtures in `tests/fixtures/foreign/`): an SD1.5
//! single file as a `torch.save` `.ckpt` and as `.safetensors` with modelspec metadata, and a
//! Flux.1-dev transformer in fp8 e4m3fn, all with every key of the released files.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/foreign")
        .join(name)
}

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("PYTORCH_ENABLE_MPS_FALLBACK")
        .output()
        .expect("kiln runs")
}

/// Runs kiln, requires success, and parses its stdout as JSON.
fn kiln_json(args: &[&str]) -> Value {
    let output = kiln(args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kiln {args:?} failed:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

fn component_kinds(report: &Value) -> Vec<&str> {
    let mut kinds: Vec<&str> = report["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| c["kind"].as_str().expect("kind"))
        .collect();
    kinds.sort_unstable();
    kinds
}

#[test]
fn inspect_recognises_torch_and_python_written_sd15_single_files() {
    let ckpt = fixture("sd15_tiny.ckpt");
    let safetensors = fixture("sd15_tiny.safetensors");
    let json = kiln_json(&[
        "inspect",
        "--json",
        ckpt.to_str().expect("utf-8 path"),
        safetensors.to_str().expect("utf-8 path"),
    ]);
    let reports = json.as_array().expect("two files give an array");
    assert_eq!(reports.len(), 2);
    for (report, format) in reports.iter().zip(["pytorch-zip", "safetensors"]) {
        let file = report["file"].as_str().unwrap_or("?");
        assert!(report.get("error").is_none(), "{file}: {}", report["error"]);
        assert_eq!(report["format"], format, "{file}");
        assert_eq!(report["architecture"], "sd1", "{file}");
        assert_eq!(report["prediction"], "eps", "{file}");
        // Every key of a released SD1.5 file, including the junk Kiln must leave unclaimed:
        // 12 DDPM schedule buffers, model_ema.decay/num_updates and CLIP's position_ids.
        assert_eq!(report["tensors"], 1145, "{file}");
        assert_eq!(report["unclaimed_keys"], 15, "{file}");
        assert_eq!(
            component_kinds(report),
            ["clip_l", "diffusion_model", "vae"],
            "{file}"
        );
        for component in report["components"].as_array().expect("components") {
            assert_eq!(component["dominant_dtype"], "f16", "{file}: {component}");
        }
        let clip = report["components"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["kind"] == "clip_l"))
            .expect("clip_l");
        assert_eq!(clip["facts"]["layers"], 12, "{file}");
    }
    assert_eq!(reports[0]["metadata"]["global_step"], "840000");
    assert_eq!(
        reports[1]["metadata"]["modelspec.architecture"],
        "stable-diffusion-v1"
    );
}

#[test]
fn inspect_and_doctor_on_a_python_written_fp8_flux_transformer() {
    let flux = fixture("flux1_dev_tiny_fp8_e4m3fn.safetensors");
    let path = flux.to_str().expect("utf-8 path");
    let report = kiln_json(&["inspect", "--json", path]);
    assert!(report.get("error").is_none(), "{}", report["error"]);
    assert_eq!(report["format"], "safetensors");
    assert_eq!(report["architecture"], "flux");
    assert_eq!(report["tensors"], 780);
    assert_eq!(component_kinds(&report), ["diffusion_model"]);
    let unet = &report["components"][0];
    assert_eq!(unet["dominant_dtype"], "fp8_e4m3fn");
    assert_eq!(unet["facts"]["depth"], 19);
    assert_eq!(unet["facts"]["depth_single"], 38);
    assert_eq!(unet["facts"]["guidance_embed"], 1);

    let plan = kiln_json(&["doctor", "--simulate-device", "metal-m1", "--json", path]);
    assert_eq!(plan["architecture"], "flux");
    let diffusion = &plan["plan"]["diffusion_model"];
    assert_eq!(diffusion["storage_dtype"], "fp8_e4m3fn", "{diffusion}");
    assert_eq!(diffusion["held_as"], "u8", "{diffusion}");
}
