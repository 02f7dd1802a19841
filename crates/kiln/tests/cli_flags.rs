//! The real `kiln` binary with ComfyUI flags: exit codes and the lines it prints about them.

// The whole crate is tests; clippy's allow-unwrap-in-tests misses the helper functions.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

const SERVER_MISSING: &str = "kiln: the server is not implemented yet (see issue: ComfyUI-compatible server); use `kiln inspect` / `kiln doctor`";

/// Runs `kiln` in an empty temp directory (it is the default base directory) with a clean
/// PYTORCH_ENABLE_MPS_FALLBACK.
fn kiln(args: &[&str], mps_fallback: Option<&str>) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.args(args).current_dir(dir.path());
    match mps_fallback {
        Some(value) => command.env("PYTORCH_ENABLE_MPS_FALLBACK", value),
        None => command.env_remove("PYTORCH_ENABLE_MPS_FALLBACK"),
    };
    command.output().unwrap()
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8(output.stderr.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn comfyui_flags_reach_the_missing_server_plainly() {
    let output = kiln(
        &["--force-fp16", "--use-split-cross-attention", "--cpu"],
        None,
    );
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr_lines(&output), [SERVER_MISSING]);
    assert!(output.stdout.is_empty());
}

#[test]
fn serve_subcommand_says_the_same() {
    let output = kiln(&["serve", "--listen"], None);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr_lines(&output), [SERVER_MISSING]);
}

#[test]
fn an_ignored_flag_gets_one_warning_line() {
    let output = kiln(&["--deterministic"], None);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr_lines(&output),
        [
            "warning: --deterministic is accepted for ComfyUI compatibility but not implemented by Kiln yet",
            SERVER_MISSING,
        ]
    );
}

#[test]
fn mps_fallback_variable_gets_a_note() {
    let output = kiln(&["--cpu"], Some("1"));
    assert_eq!(
        stderr_lines(&output),
        [
            "note: PYTORCH_ENABLE_MPS_FALLBACK is not needed: Kiln falls back per layer automatically (fp8 is widened where the device cannot compute it)",
            SERVER_MISSING,
        ]
    );
}

#[test]
fn conflicting_flags_fail_naming_both() {
    let output = kiln(&["--force-fp16", "--force-fp32"], None);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("'--force-fp32'") && stderr.contains("'--force-fp16'"),
        "{stderr}"
    );
    assert!(!stderr.contains(SERVER_MISSING));
}

#[test]
fn conflicts_across_the_subcommand_fail_too() {
    let output = kiln(&["--cpu", "doctor", "--novram"], None);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("'--cpu'") && stderr.contains("'--novram'"),
        "{stderr}"
    );
}
