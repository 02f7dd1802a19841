//! Browser end-to-end tests: the real `kiln` binary on a tiny SD1 checkpoint, driven by headless
//! Chromium (Debian's `chromium` through `playwright-core`, scripts in `tests/e2e/`). One test
//! boots the official ComfyUI frontend (`comfyui-frontend-package`, `--front-end-root`), loads
//! the classic SD1 graph at 64×64 and 2 steps, presses Run and waits for the image on the
//! SaveImage node; the other fills Kiln's built-in page and waits for the gallery image.
//! Screenshots land in `target/e2e-screenshots/<test>/`.
//!
//! Prerequisites come from `.ci/run` (`scripts/ci/install-e2e.sh`: Chromium, `npm ci --prefix
//! tests/e2e`, a venv with the frontend package) and are found through `KILN_FRONTEND_ROOT`,
//! `KILN_E2E_PYTHON` (asked for the frontend when that is unset), `KILN_E2E_CHROMIUM` and
//! `KILN_E2E_NODE_MODULES` (the folder checked for playwright-core; the scripts import from
//! `tests/e2e/node_modules` or a parent folder), falling back to the places `.ci/run` uses. When
//! one is missing the test fails under `CI` and is skipped (with the reason printed) otherwise.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};
use support::Server;

/// How long the server may take to print its URL.
/// How long one browser script may run (boot, one 64×64 2-step prompt, screenshots).
const SCRIPT_LIMIT: Duration = Duration::from_secs(420);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// What the browser scripts need, found on this machine.
struct Tools {
    node: PathBuf,
    scripts: PathBuf,
}

/// Fails under CI (where `.ci/run` must have installed everything), skips otherwise.
fn missing(why: &str) -> Option<Tools> {
    if std::env::var_os("CI").is_some() {
        panic!("prerequisite missing under CI: {why} (.ci/run installs it; see scripts/ci/)");
    }
    eprintln!("skipped: {why}");
    None
}

/// Node.js, the scripts' `node_modules` (playwright-core) and Chromium.
fn browser_tools() -> Option<Tools> {
    let node =
        std::env::var_os("KILN_E2E_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from);
    let runs = Command::new(&node)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !runs {
        return missing(&format!("Node.js ({}) does not run", node.display()));
    }
    let scripts = workspace_root().join("tests/e2e");
    let modules = std::env::var_os("KILN_E2E_NODE_MODULES")
        .map_or_else(|| scripts.join("node_modules"), PathBuf::from);
    if !modules.join("playwright-core/package.json").is_file() {
        return missing(&format!(
            "playwright-core is not installed in {} (npm ci --prefix tests/e2e)",
            modules.display()
        ));
    }
    let chromium = std::env::var_os("KILN_E2E_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.is_file() {
        return missing(&format!(
            "Chromium is not at {} (apt-get install chromium)",
            chromium.display()
        ));
    }
    Some(Tools { node, scripts })
}

/// The official frontend's `static` folder: `KILN_FRONTEND_ROOT`, else asked of the e2e venv's
/// Python (`KILN_E2E_PYTHON`, default `target/e2e-venv/bin/python`).
fn frontend_root() -> Result<PathBuf, String> {
    if let Some(root) = std::env::var_os("KILN_FRONTEND_ROOT") {
        let root = PathBuf::from(root);
        return if root.join("index.html").is_file() {
            Ok(root)
        } else {
            Err(format!(
                "KILN_FRONTEND_ROOT={} has no index.html",
                root.display()
            ))
        };
    }
    let python = std::env::var_os("KILN_E2E_PYTHON").map_or_else(
        || workspace_root().join("target/e2e-venv/bin/python"),
        PathBuf::from,
    );
    let asked = Command::new(&python)
        .args([
            "-c",
            "import comfyui_frontend_package, os; \
             print(os.path.join(os.path.dirname(comfyui_frontend_package.__file__), 'static'))",
        ])
        .output()
        .map_err(|error| format!("cannot run {}: {error}", python.display()))?;
    if !asked.status.success() {
        return Err(format!(
            "comfyui-frontend-package is not installed for {} (set KILN_FRONTEND_ROOT or run .ci/run)",
            python.display()
        ));
    }
    let root = PathBuf::from(String::from_utf8_lossy(&asked.stdout).trim());
    if root.join("index.html").is_file() {
        Ok(root)
    } else {
        Err(format!("{} has no index.html", root.display()))
    }
}

/// A temporary base directory holding the tiny SD1 checkpoint.
fn base_with_checkpoint() -> tempfile::TempDir {
    let base = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F16, Packaging::SingleFile);
    write(&spec, &base.path().join("models").join("checkpoints")).unwrap();
    base
}

/// An empty `target/e2e-screenshots/<name>` (kept after the run, for CI artifacts).
fn screenshot_dir(name: &str) -> PathBuf {
    let dir = workspace_root().join("target/e2e-screenshots").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `node <script> <args...>` in `tests/e2e`, printing everything it wrote; true on exit 0.
fn run_script(tools: &Tools, script: &str, args: &[&str], log_dir: &Path) -> bool {
    let out_path = log_dir.join(format!("{script}.log"));
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(&tools.node)
        .arg(script)
        .args(args)
        .current_dir(&tools.scripts)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let printed = std::fs::read_to_string(&out_path).unwrap_or_default();
    println!(
        "---- node {script} ({:.1} s) ----\n{printed}",
        started.elapsed().as_secs_f64()
    );
    match status {
        Some(status) => status.success(),
        None => {
            println!("node {script} ran past {SCRIPT_LIMIT:?} and was killed");
            false
        }
    }
}

#[test]
fn official_frontend_runs_the_sd1_graph_and_shows_the_image() {
    let Some(tools) = browser_tools() else { return };
    let frontend = match frontend_root() {
        Ok(root) => root,
        Err(why) => {
            missing(&why);
            return;
        }
    };
    let base = base_with_checkpoint();
    let server = Server::start(
        base.path(),
        &[
            "--front-end-root",
            frontend.to_str().unwrap(),
            "--preview-method",
            "latent2rgb",
        ],
        "kiln-serve.log",
    );
    let shots = screenshot_dir("official-frontend");
    let passed = run_script(
        &tools,
        "official_frontend.mjs",
        &[&server.url, shots.to_str().unwrap()],
        &shots,
    );
    assert!(
        passed,
        "the official frontend test failed (screenshots in {}); kiln's log:\n{}",
        shots.display(),
        std::fs::read_to_string(&server.log).unwrap_or_default()
    );
}

#[test]
fn builtin_page_generates_an_image_into_the_gallery() {
    let Some(tools) = browser_tools() else { return };
    let base = base_with_checkpoint();
    let server = Server::start(
        base.path(),
        &["--preview-method", "latent2rgb"],
        "kiln-serve.log",
    );
    let shots = screenshot_dir("builtin-page");
    let passed = run_script(
        &tools,
        "builtin_page.mjs",
        &[&server.url, shots.to_str().unwrap()],
        &shots,
    );
    assert!(
        passed,
        "the built-in page test failed (screenshots in {}); kiln's log:\n{}",
        shots.display(),
        std::fs::read_to_string(&server.log).unwrap_or_default()
    );
}
