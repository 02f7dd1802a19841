//! `kiln run` end to end through the real binary on a tiny SD1 checkpoint in a temporary
//! `--base-directory`: the default txt2img UI workflow writes a PNG carrying `prompt` and
//! `workflow` text chunks; that PNG run again gives the same pixels; bad workflows fail with
//! the node and input named, a non-zero exit and nothing written.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod parity;

use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};
use parity::read_png;
use serde_json::{json, Value};

/// A base directory with the tiny SD1 checkpoint in `models/checkpoints`.
struct Base {
    dir: tempfile::TempDir,
    ckpt: String,
}

impl Base {
    fn new() -> Base {
        let dir = tempfile::tempdir().unwrap();
        let spec = CheckpointSpec::new(Family::Sd1, Storage::F16, Packaging::SingleFile);
        let written = write(&spec, &dir.path().join("models").join("checkpoints")).unwrap();
        let ckpt = written.file_name().unwrap().to_str().unwrap().to_owned();
        Base { dir, ckpt }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn output(&self) -> PathBuf {
        self.path().join("output")
    }

    fn kiln(&self, args: &[&str]) -> Output {
        let base = self.path().to_str().unwrap().to_owned();
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["--base-directory", &base, "--cpu"])
            .args(args)
            .env_remove("PYTORCH_ENABLE_MPS_FALLBACK")
            .output()
            .expect("kiln runs")
    }

    fn write_json(&self, name: &str, value: &Value) -> String {
        let path = self.path().join(name);
        std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// Files in the output folder (recursively), sorted.
    fn outputs(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut pending = vec![self.output()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    found.push(path);
                }
            }
        }
        found.sort();
        found
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// ComfyUI's default SD1 graph (UI format) at 64×64 and 2 steps.
fn default_workflow(ckpt: &str) -> Value {
    let link = |name: &str, ty: &str, link: u32| json!({"name": name, "type": ty, "link": link});
    let out = |name: &str, ty: &str, links: &[u32], slot: u32| json!({"name": name, "type": ty, "links": links, "slot_index": slot});
    json!({
        "last_node_id": 9,
        "last_link_id": 9,
        "nodes": [
            {"id": 4, "type": "CheckpointLoaderSimple", "mode": 0, "inputs": [],
             "outputs": [out("MODEL", "MODEL", &[1], 0), out("CLIP", "CLIP", &[3, 5], 1),
                         out("VAE", "VAE", &[8], 2)],
             "properties": {"Node name for S&R": "CheckpointLoaderSimple"},
             "widgets_values": [ckpt]},
            {"id": 5, "type": "EmptyLatentImage", "mode": 0, "inputs": [],
             "outputs": [out("LATENT", "LATENT", &[2], 0)], "properties": {},
             "widgets_values": [64, 64, 1]},
            {"id": 6, "type": "CLIPTextEncode", "mode": 0, "inputs": [link("clip", "CLIP", 3)],
             "outputs": [out("CONDITIONING", "CONDITIONING", &[4], 0)], "properties": {},
             "widgets_values": ["beautiful scenery nature glass bottle landscape, , purple galaxy bottle,"]},
            {"id": 7, "type": "CLIPTextEncode", "mode": 0, "inputs": [link("clip", "CLIP", 5)],
             "outputs": [out("CONDITIONING", "CONDITIONING", &[6], 0)], "properties": {},
             "widgets_values": ["text, watermark"]},
            {"id": 3, "type": "KSampler", "mode": 0,
             "inputs": [link("model", "MODEL", 1), link("positive", "CONDITIONING", 4),
                        link("negative", "CONDITIONING", 6), link("latent_image", "LATENT", 2)],
             "outputs": [out("LATENT", "LATENT", &[7], 0)], "properties": {},
             "widgets_values": [156680208700286_u64, "randomize", 2, 8, "euler", "normal", 1]},
            {"id": 8, "type": "VAEDecode", "mode": 0,
             "inputs": [link("samples", "LATENT", 7), link("vae", "VAE", 8)],
             "outputs": [out("IMAGE", "IMAGE", &[9], 0)], "properties": {}},
            {"id": 9, "type": "SaveImage", "mode": 0, "inputs": [link("images", "IMAGE", 9)],
             "outputs": [], "properties": {}, "widgets_values": ["ComfyUI"]}
        ],
        "links": [
            [1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"],
            [4, 6, 0, 3, 1, "CONDITIONING"], [5, 4, 1, 7, 0, "CLIP"],
            [6, 7, 0, 3, 2, "CONDITIONING"], [7, 3, 0, 8, 0, "LATENT"], [8, 4, 2, 8, 1, "VAE"],
            [9, 8, 0, 9, 0, "IMAGE"]
        ],
        "groups": [], "config": {}, "extra": {}, "version": 0.4
    })
}

/// The same graph in API format.
fn api_prompt(ckpt: &str) -> Value {
    json!({
        "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 2, "cfg": 8.0,
              "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
              "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
    })
}

#[test]
fn default_workflow_saves_a_png_that_reproduces_itself() {
    let base = Base::new();
    let workflow = base.write_json("workflow.json", &default_workflow(&base.ckpt));
    let first = base.kiln(&["run", &workflow]);
    assert!(first.status.success(), "{}", stderr(&first));
    let saved = base.output().join("ComfyUI_00001_.png");
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains(saved.to_str().unwrap()), "{stdout}");

    let (pixels, chunks) = read_png(&saved);
    let keys: Vec<&str> = chunks.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["prompt", "workflow"]);
    let prompt: Value = serde_json::from_str(&chunks[0].1).unwrap();
    assert_eq!(prompt["3"]["inputs"]["seed"], json!(156680208700286_u64));
    assert_eq!(prompt["3"]["inputs"]["steps"], json!(2));
    let workflow_chunk: Value = serde_json::from_str(&chunks[1].1).unwrap();
    assert_eq!(workflow_chunk, default_workflow(&base.ckpt));
    // Python json.dumps separators.
    assert!(
        chunks[0].1.contains("\"class_type\": \"KSampler\""),
        "{}",
        chunks[0].1
    );

    let again = base.kiln(&["run", saved.to_str().unwrap()]);
    assert!(again.status.success(), "{}", stderr(&again));
    let (pixels2, chunks2) = read_png(&base.output().join("ComfyUI_00002_.png"));
    assert_eq!(pixels, pixels2);
    assert_eq!(chunks, chunks2);
}

#[test]
fn set_overrides_change_the_result_and_disable_metadata_drops_chunks() {
    let base = Base::new();
    let prompt = base.write_json("api.json", &api_prompt(&base.ckpt));
    let out = base.kiln(&[
        "--disable-metadata",
        "run",
        &prompt,
        "--set",
        "3.seed=6",
        "--set",
        "9.filename_prefix=sub/x",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let saved = base.output().join("sub").join("x_00001_.png");
    let (_, chunks) = read_png(&saved);
    assert!(chunks.is_empty());
    let unknown = base.kiln(&["run", &prompt, "--set", "3.sed=6"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no input 'sed'"),
        "{}",
        stderr(&unknown)
    );
    let bad_node = base.kiln(&["run", &prompt, "--set", "42.seed=6"]);
    assert!(!bad_node.status.success());
    assert!(
        stderr(&bad_node).contains("no node '42'"),
        "{}",
        stderr(&bad_node)
    );
    let bad_value = base.kiln(&["run", &prompt, "--set", "3.steps=many"]);
    assert!(!bad_value.status.success());
    assert!(
        stderr(&bad_value).contains("not an integer"),
        "{}",
        stderr(&bad_value)
    );
}

#[test]
fn bad_workflows_fail_clearly_and_write_nothing() {
    let base = Base::new();
    let prompt = base.write_json("api.json", &api_prompt(&base.ckpt));
    let malformed = base.path().join("broken.json");
    std::fs::write(&malformed, b"{\"3\": {\"class_type\": ").unwrap();
    std::fs::create_dir_all(base.path().join("input")).unwrap();
    std::fs::write(
        base.path().join("input").join("fake.png"),
        b"this is not a png",
    )
    .unwrap();
    let load_image = base.write_json(
        "load.json",
        &json!({
            "1": {"class_type": "LoadImage", "inputs": {"image": "fake.png"}},
            "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["1", 0]}}
        }),
    );

    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["run", malformed.to_str().unwrap()],
            vec!["not valid JSON"],
        ),
        (
            vec!["run", &prompt, "--set", "4.ckpt_name=missing.safetensors"],
            vec![
                "node 4 (CheckpointLoaderSimple)",
                "ckpt_name",
                "missing.safetensors",
            ],
        ),
        (
            vec![
                "run",
                &prompt,
                "--set",
                "5.width=100000",
                "--set",
                "5.height=100000",
            ],
            vec!["node 5 (EmptyLatentImage)", "'width'", "100000"],
        ),
        (
            vec!["run", &prompt, "--set", "3.steps=-3"],
            vec!["node 3 (KSampler)", "'steps'"],
        ),
        (
            vec!["run", &load_image],
            vec!["node 1 (LoadImage)", "'image'"],
        ),
    ];
    for (args, needles) in cases {
        let out = base.kiln(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded:\n{err}");
        for needle in needles {
            assert!(err.contains(needle), "{args:?}: `{needle}` not in:\n{err}");
        }
        assert!(
            base.outputs().is_empty(),
            "{args:?} wrote {:?}",
            base.outputs()
        );
    }
}
