//! A ComfyUI API client that no Kiln code wrote — `@saintno/comfyui-sdk` from npm, installed by
//! `.ci/run` into `tests/e2e/node_modules` — drives the real `kiln` binary: it connects over
//! HTTP and the WebSocket, submits ComfyUI's txt2img prompt (64×64, 2 steps) on the tiny SD1
//! checkpoint, follows it through its own event handling and downloads the image with `/view`.
//! The test checks the download is the PNG the server saved, 64×64.
//!
//! Prerequisites: Node.js and `npm ci --prefix tests/e2e`. `KILN_E2E_NODE_MODULES` names the
//! folder checked for the package (default `tests/e2e/node_modules`; Node resolves the script's
//! imports from there or a parent folder). Missing ones fail the test under `CI` and skip it
//! otherwise, with the reason printed.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};
use support::Server;

/// How long the server may take to print its URL.
/// How long the client script may run.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);
/// The client package, as pinned in `tests/e2e/package.json`.
const CLIENT_PACKAGE: &str = "@saintno/comfyui-sdk";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Node.js when it and the client package are installed; fails under CI, skips otherwise.
fn node_with_client() -> Option<PathBuf> {
    let why = || -> Result<PathBuf, String> {
        let node =
            std::env::var_os("KILN_E2E_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from);
        let runs = Command::new(&node)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success());
        if !runs {
            return Err(format!("Node.js ({}) does not run", node.display()));
        }
        let modules = std::env::var_os("KILN_E2E_NODE_MODULES").map_or_else(
            || workspace_root().join("tests/e2e/node_modules"),
            PathBuf::from,
        );
        if !modules.join(CLIENT_PACKAGE).join("package.json").is_file() {
            return Err(format!(
                "{CLIENT_PACKAGE} is not installed in {} (npm ci --prefix tests/e2e)",
                modules.display()
            ));
        }
        Ok(node)
    };
    match why() {
        Ok(node) => Some(node),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("prerequisite missing under CI: {why} (.ci/run installs it)")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// Runs the client script; answers its exit status and everything it printed.
fn run_client(node: &Path, url: &str, downloads: &Path) -> (bool, String) {
    let started = Instant::now();
    let mut child = Command::new(node)
        .arg("api_client.mjs")
        .arg(url)
        .arg(downloads)
        .current_dir(workspace_root().join("tests/e2e"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read_out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let read_err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = format!(
        "{}{}{}",
        read_out.join().unwrap(),
        read_err.join().unwrap(),
        if status.is_none() {
            format!("killed after {SCRIPT_LIMIT:?}\n")
        } else {
            String::new()
        }
    );
    println!(
        "---- node api_client.mjs ({:.1} s) ----\n{printed}",
        started.elapsed().as_secs_f64()
    );
    (status.is_some_and(|status| status.success()), printed)
}

#[test]
fn third_party_sdk_submits_a_prompt_and_downloads_the_png() {
    let Some(node) = node_with_client() else {
        return;
    };
    let base = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F16, Packaging::SingleFile);
    write(&spec, &base.path().join("models").join("checkpoints")).unwrap();
    let server = Server::start(
        base.path(),
        &["--preview-method", "latent2rgb"],
        "kiln-serve.log",
    );
    let downloads = base.path().join("downloads");

    let (passed, printed) = run_client(&node, &server.url, &downloads);
    assert!(
        passed,
        "the client failed; kiln's log:\n{}",
        std::fs::read_to_string(&server.log).unwrap_or_default()
    );

    let downloaded: Vec<PathBuf> = printed
        .lines()
        .filter_map(|line| line.strip_prefix("downloaded: "))
        .map(|rest| PathBuf::from(rest.split(" (").next().unwrap()))
        .collect();
    assert_eq!(downloaded.len(), 1, "{printed}");
    let file = &downloaded[0];
    let bytes = std::fs::read(file).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {}",
        file.display()
    );
    let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
    let reader = decoder.read_info().unwrap();
    assert_eq!((reader.info().width, reader.info().height), (64, 64));

    // The very file the server saved, carrying the prompt the client sent.
    let name = file.file_name().unwrap();
    assert!(
        name.to_str().unwrap().starts_with("sdk-client_"),
        "{name:?}"
    );
    let saved = std::fs::read(base.path().join("output").join(name)).unwrap();
    assert_eq!(saved, bytes);
    let prompt = reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .find(|chunk| chunk.keyword == "prompt")
        .map(|chunk| chunk.text.clone())
        .unwrap_or_default();
    let prompt: serde_json::Value = serde_json::from_str(&prompt).unwrap();
    assert_eq!(prompt["6"]["inputs"]["text"], "a red fox in the snow");
    assert_eq!(prompt["3"]["inputs"]["steps"], 2);
}
