//! The real `kiln` binary with ComfyUI flags: exit codes and the lines it prints about them.

// The whole crate is tests; clippy's allow-unwrap-in-tests misses the helper functions.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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

/// Starts the server (no subcommand, as ComfyUI's `main.py`) on a free port, waits for the URL
/// line, checks that it answers `/system_stats`, stops it and returns its stderr lines.
fn serve_and_stop(args: &[&str], mps_fallback: Option<&str>) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(args)
        .args(["--port", "0"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match mps_fallback {
        Some(value) => command.env("PYTORCH_ENABLE_MPS_FALLBACK", value),
        None => command.env_remove("PYTORCH_ENABLE_MPS_FALLBACK"),
    };
    let mut child = command.spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (found, url) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if let Some(url) = line.split("http://").nth(1) {
                let _ = found.send(url.trim().to_string());
                break;
            }
        }
    });
    let address = url.recv_timeout(Duration::from_secs(60));
    let answered = address.as_ref().ok().map(|address| {
        let mut stream = TcpStream::connect(address.trim_end_matches('/')).unwrap();
        write!(
            stream,
            "GET /system_stats HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    });
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let stderr: Vec<String> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect();
    let response = answered.unwrap_or_else(|| panic!("no URL printed; stderr: {stderr:#?}"));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"ram_total\""), "{response}");
    stderr
}

#[test]
fn comfyui_flags_start_the_server() {
    let stderr = serve_and_stop(
        &["--force-fp16", "--use-split-cross-attention", "--cpu"],
        None,
    );
    assert!(
        !stderr.iter().any(|l| l.starts_with("warning:")),
        "{stderr:#?}"
    );
}

#[test]
fn serve_subcommand_starts_the_server_too() {
    serve_and_stop(&["serve", "--listen", "127.0.0.1"], None);
}

#[test]
fn an_ignored_flag_gets_one_warning_line() {
    let stderr = serve_and_stop(&["--deterministic"], None);
    let warnings: Vec<&String> = stderr
        .iter()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(
        warnings,
        ["warning: --deterministic is accepted for ComfyUI compatibility but not implemented by Kiln yet"]
    );
}

#[test]
fn mps_fallback_variable_gets_a_note() {
    let output = kiln(&["--cpu", "doctor"], Some("1"));
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).lines().next(),
        Some("note: PYTORCH_ENABLE_MPS_FALLBACK is not needed: Kiln falls back per layer automatically (fp8 is widened where the device cannot compute it)")
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
