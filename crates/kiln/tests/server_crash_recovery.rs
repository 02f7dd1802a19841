//! The server's queue survives a crash: 20 prompts submitted, the process killed with SIGKILL
//! while they are pending, a new process started on the same folders → all 20 finish and are
//! in history with their images. ComfyUI loses them.

mod support;

use std::time::{Duration, Instant};

use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};
use serde_json::{json, Value};
use support::Server;

const PROMPTS: usize = 20;

fn tiny_txt2img(checkpoint: &str, seed: u64) -> Value {
    json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a kiln", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": 2, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "crash", "images": ["8", 0]}},
    })
}

#[test]
fn pending_prompts_survive_kill_9_and_finish_after_restart() {
    let base = tempfile::tempdir().unwrap();
    let checkpoints = base.path().join("models").join("checkpoints");
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F16, Packaging::SingleFile);
    let written = write(&spec, &checkpoints).unwrap();
    let name = written.file_name().unwrap().to_str().unwrap().to_owned();

    let first = Server::start(base.path(), &[], "first.log");
    let mut ids = Vec::new();
    for seed in 0..PROMPTS as u64 {
        let (status, answer) = first.request(
            "POST",
            "/prompt",
            Some(&json!({"prompt": tiny_txt2img(&name, seed)})),
        );
        assert_eq!(status, 200, "{answer}");
        ids.push(answer["prompt_id"].as_str().unwrap().to_owned());
    }
    let (_, queue) = first.request("GET", "/queue", None);
    let waiting = queue["queue_pending"].as_array().map_or(0, Vec::len)
        + queue["queue_running"].as_array().map_or(0, Vec::len);
    assert!(
        waiting >= PROMPTS / 2,
        "most prompts should still wait: {queue}"
    );
    first.kill();

    let second = Server::start(base.path(), &[], "second.log");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, history) = second.request("GET", "/history", None);
        let done = ids
            .iter()
            .filter(|id| history.get(id.as_str()).is_some())
            .count();
        if done == PROMPTS {
            for id in &ids {
                let entry = &history[id.as_str()];
                assert_eq!(entry["status"]["status_str"], "success", "{entry}");
                let image = &entry["outputs"]["9"]["images"][0];
                let file = base
                    .path()
                    .join("output")
                    .join(image["filename"].as_str().unwrap());
                assert!(file.is_file(), "{}", file.display());
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {PROMPTS} finished after the restart; log:\n{}",
            std::fs::read_to_string(&second.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
