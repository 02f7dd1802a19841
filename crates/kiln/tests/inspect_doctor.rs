//! End to end through the real `kiln` binary: `testgen` writes every test checkpoint, `inspect`
//! recognises each of them, and `doctor` plans them — including the seed scenario (fp8 SD1.5 and
//! Flux on Apple GPUs) — and bad files get clear errors and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_test_checkpoints::{all_specs, write, CheckpointSpec, Family, Packaging, Storage};
use serde_json::Value;

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("PYTORCH_ENABLE_MPS_FALLBACK")
        .output()
        .expect("kiln runs")
}

fn stdout_json(output: &Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{text}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn expected_architecture(family: Family) -> &'static str {
    match family {
        Family::Sd1 => "sd1",
        Family::Sd2 | Family::Sd2V => "sd2",
        Family::Sdxl => "sdxl",
        Family::SdxlRefiner => "sdxl_refiner",
        Family::Sd3Medium | Family::Sd35Medium | Family::Sd35Large => "sd3",
        Family::FluxDev | Family::FluxSchnell | Family::FluxFill => "flux",
        Family::ClipL | Family::ClipLWithProjection => "clip_l",
        Family::ClipG => "clip_g",
        Family::OpenClipH => "openclip_h",
        Family::T5Xxl => "t5xxl",
        Family::Vae4 | Family::Vae16 => "vae",
    }
}

/// The file or folder `kiln inspect` should be given for what `write` returned.
fn inspect_target(written: &Path, spec: &CheckpointSpec) -> PathBuf {
    // A diffusers VAE is written as its safetensors inside its folder; inspect the folder.
    if spec.packaging == Packaging::Diffusers && written.is_file() {
        return written.parent().unwrap_or(written).to_path_buf();
    }
    written.to_path_buf()
}

#[test]
fn inspect_recognises_every_generated_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let specs = all_specs();
    let targets: Vec<(CheckpointSpec, PathBuf)> = specs
        .iter()
        .map(|spec| {
            let written = write(spec, dir.path()).unwrap();
            (*spec, inspect_target(&written, spec))
        })
        .collect();
    let mut args = vec!["inspect".to_string(), "--json".to_string()];
    args.extend(targets.iter().map(|(_, p)| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = kiln(&args);
    let json = stdout_json(&output);
    let reports = json.as_array().expect("several files give an array");
    assert_eq!(reports.len(), targets.len());
    let mut failures = Vec::new();
    for ((spec, path), report) in targets.iter().zip(reports) {
        let want = expected_architecture(spec.family);
        let got = report["architecture"].as_str().unwrap_or("<none>");
        if got != want || report.get("error").is_some() {
            failures.push(format!(
                "{spec} ({}): expected {want}, got {got} {}",
                path.display(),
                report
                    .get("error")
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            ));
        }
        for key in ["file", "format", "variant", "components", "dtypes"] {
            assert!(report.get(key).is_some(), "{spec}: no `{key}` in {report}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(output.status.success());
}

#[test]
fn inspect_reports_storage_dtypes_and_components() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F8E5M2, Packaging::SingleFile);
    let path = write(&spec, dir.path()).unwrap();
    let output = kiln(&["inspect", "--json", path.to_str().unwrap()]);
    assert!(output.status.success());
    let report = stdout_json(&output);
    assert_eq!(report["architecture"], "sd1");
    assert_eq!(report["format"], "safetensors");
    assert!(report["dtypes"]["fp8_e5m2"].as_u64().unwrap() > 0);
    let kinds: Vec<&str> = report["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["diffusion_model", "clip_l", "vae"]);
    let unet = &report["components"][0];
    assert_eq!(unet["dominant_dtype"], "fp8_e5m2");
    assert!(unet["params"].as_u64().unwrap() > 0);

    let text = kiln(&["inspect", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("architecture  sd1"), "{text}");
    assert!(text.contains("diffusion_model"), "{text}");
}

/// The seed scenario: fp8 SD1.5 and Flux on Apple GPUs (and CPU, and an Ampere card) plan without
/// error, keep 8-bit storage, compute in a dtype the profile computes in, and say why.
#[test]
fn doctor_plans_fp8_checkpoints_on_every_seed_profile() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(PathBuf, &str)> = [
        (
            Family::Sd1,
            Storage::F8E4M3,
            Packaging::SingleFile,
            "fp8_e4m3fn",
        ),
        (
            Family::Sd1,
            Storage::F8E5M2,
            Packaging::SingleFile,
            "fp8_e5m2",
        ),
        (
            Family::FluxDev,
            Storage::F8E4M3,
            Packaging::Standalone,
            "fp8_e4m3fn",
        ),
        (
            Family::FluxDev,
            Storage::F8E5M2,
            Packaging::Standalone,
            "fp8_e5m2",
        ),
    ]
    .into_iter()
    .map(|(family, storage, packaging, dtype)| {
        let spec = CheckpointSpec::new(family, storage, packaging);
        (write(&spec, dir.path()).unwrap(), dtype)
    })
    .collect();
    for (path, dtype) in &files {
        for profile in ["metal-m1", "metal-m3", "cpu", "cuda-sm86"] {
            let output = kiln(&[
                "doctor",
                "--simulate-device",
                profile,
                "--json",
                path.to_str().unwrap(),
            ]);
            assert!(
                output.status.success(),
                "{profile} {}: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            let json = stdout_json(&output);
            let unet = &json["plan"]["diffusion_model"];
            assert_eq!(
                unet["storage_dtype"],
                *dtype,
                "{profile} {}",
                path.display()
            );
            let compute = unet["compute_dtype"].as_str().unwrap();
            let computes = &json["profile"]["computes"]["matmul"];
            assert!(
                computes.as_array().unwrap().iter().any(|d| d == compute),
                "{profile}: compute {compute} not in {computes}"
            );
            if profile == "metal-m1" {
                assert_eq!(compute, "f16", "macOS 13 has no bf16");
            }
            if profile.starts_with("metal") {
                // Metal cannot hold fp8 tensors: the bytes stay 8-bit as u8.
                assert_eq!(unet["held_as"], "u8", "{profile}: {unet}");
            }
            let reason = unet["reason"].as_str().unwrap();
            assert!(reason.contains(dtype), "{profile}: reason {reason:?}");
            for key in ["device", "attention", "load_mode"] {
                assert!(unet.get(key).is_some(), "no {key} in {unet}");
            }
        }
    }
}

/// `doctor` prints each plan's peak memory: per part, and in total; fp8 storage peaks below bf16.
#[test]
fn doctor_prints_peak_memory_that_scales_with_storage() {
    let dir = tempfile::tempdir().unwrap();
    let peak = |storage: Storage, profile: &str| {
        let spec = CheckpointSpec::new(Family::FluxDev, storage, Packaging::Standalone);
        let path = write(&spec, dir.path()).unwrap();
        let path = path.to_str().unwrap();
        let args = ["doctor", "--simulate-device", profile, "--json", path];
        let json = stdout_json(&kiln(&args));
        let memory = &json["memory"];
        assert_eq!(memory["resolution"], serde_json::json!([1024, 1024]));
        assert_eq!(memory["parts"][0]["component"], "diffusion_model");
        assert!(memory["parts"][0]["activation_bytes"].as_u64().unwrap() > 0);
        assert_eq!(json["text_encoders"], "keep");
        let output = kiln(&["doctor", "--simulate-device", profile, path]);
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("peak memory"), "{text}");
        assert!(text.contains("activations"), "{text}");
        memory["device_peak_bytes"].as_u64().unwrap()
    };
    for profile in ["metal-m1", "metal-m3", "cuda-sm86", "cpu"] {
        let fp8 = peak(Storage::F8E4M3, profile);
        let bf16 = peak(Storage::BF16, profile);
        assert!(fp8 < bf16, "{profile}: fp8 {fp8} vs bf16 {bf16}");
    }
}

#[test]
fn doctor_without_a_file_prints_the_capability_table() {
    let output = kiln(&["doctor", "--simulate-device", "metal-m1"]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("metal-m1 (simulated)"), "{text}");
    assert!(text.contains("computes"), "{text}");
    let json = stdout_json(&kiln(&["doctor", "--json"]));
    assert_eq!(json["backends"][0]["backend"], "cpu");
    assert_eq!(json["backends"][0]["available"], true);
}

#[test]
fn bad_files_get_clear_errors_and_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, [0x10, 0, 0, 0, 0, 0, 0, 0, b'{']).unwrap();
    let output = kiln(&["inspect", truncated.to_str().unwrap()]);
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("truncated.safetensors"), "{text}");
    assert!(text.contains("error"), "{text}");

    let empty_dir = dir.path().join("not-a-model");
    std::fs::create_dir(&empty_dir).unwrap();
    let output = kiln(&["inspect", "--json", empty_dir.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(stdout_json(&output)["error"].is_string());

    let output = kiln(&["doctor", "--json", truncated.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("truncated.safetensors"), "{stderr}");

    let output = kiln(&["doctor", "--simulate-device", "metal-m9"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("metal-m1"),
        "valid names are listed: {stderr}"
    );
}

#[test]
fn testgen_writes_a_comfyui_model_tree() {
    let dir = tempfile::tempdir().unwrap();
    let output = kiln(&["testgen", dir.path().to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(listed.lines().count() >= all_specs().len());
    for folder in [
        "checkpoints",
        "diffusion_models",
        "text_encoders",
        "vae",
        "diffusers",
    ] {
        assert!(dir.path().join("models").join(folder).is_dir(), "{folder}");
    }
    // A bare model name resolves through the folders.
    let first_checkpoint = listed
        .lines()
        .find_map(|line| line.strip_prefix("models/checkpoints/"))
        .expect("a checkpoint was written");
    let output = kiln(&[
        "--base-directory",
        dir.path().to_str().unwrap(),
        "inspect",
        first_checkpoint,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
