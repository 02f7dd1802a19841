//! `kiln bench --compare-torch`: runs `scripts/bench/compare_torch.py` (ComfyUI's UNet and VAE
//! under PyTorch: on the CPU in f32 and bf16, on a CUDA GPU in f16, bf16 and f32) on the
//! checkpoint and device the benchmark just used, and turns its timings into Kiln/PyTorch ratios
//! (below 1 means Kiln is faster).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde::Serialize;

use kiln_runtime::BackendKind;

use crate::flags::BenchArgs;

/// Where the script lies in a Kiln source tree.
const SCRIPT: &str = "scripts/bench/compare_torch.py";

/// The script: in the source tree kiln is run from (a binary copied to another machine with its
/// tree), else beside the sources this binary was built from.
fn script() -> PathBuf {
    let here = PathBuf::from(SCRIPT);
    if here.is_file() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(SCRIPT)
}

/// PyTorch's timings and Kiln's ratios to them.
#[derive(Debug, Serialize)]
pub(crate) struct TorchComparison {
    /// The script's own JSON (timings per dtype, torch version, threads, attention).
    pub(crate) torch: serde_json::Value,
    /// Kiln s/step ÷ PyTorch s/step, per PyTorch dtype.
    pub(crate) step_ratio: std::collections::BTreeMap<String, f64>,
    /// Kiln VAE decode ÷ PyTorch VAE decode, per PyTorch dtype.
    pub(crate) vae_decode_ratio: std::collections::BTreeMap<String, f64>,
}

/// The script's arguments for a run on `backend`, or why PyTorch cannot be compared there.
pub(crate) fn device_args(backend: BackendKind) -> anyhow::Result<&'static [&'static str]> {
    match backend {
        // The script's defaults: ComfyUI's CPU path, f32 and bf16.
        BackendKind::Cpu => Ok(&[]),
        // ComfyUI's defaults on an NVIDIA GPU: PyTorch's SDPA attention, half precision; f32
        // for scale. GPU steps are short, so more of them are timed.
        BackendKind::Cuda => Ok(&[
            "--device",
            "cuda",
            "--attention",
            "pytorch",
            "--dtypes",
            "float16,bfloat16,float32",
            "--runs",
            "10",
        ]),
        other => bail!("--compare-torch has no PyTorch setup for the {other} backend"),
    }
}

/// Runs the PyTorch reference on `checkpoint` and compares it with Kiln's steady `s_per_step` and
/// `vae_decode_s`, measured on `backend`.
pub(crate) fn compare(
    args: &BenchArgs,
    backend: BackendKind,
    checkpoint: &Path,
    s_per_step: f64,
    vae_decode_s: Option<f64>,
) -> anyhow::Result<TorchComparison> {
    let Some(comfyui) = &args.comfyui else {
        bail!("--compare-torch needs the ComfyUI source tree: --comfyui DIR or KILN_COMFYUI_SRC");
    };
    let script = script();
    if !script.is_file() {
        bail!(
            "{} is missing (run kiln from its source tree)",
            script.display()
        );
    }
    let out = tempfile_path("kiln-bench-torch.json");
    eprintln!(
        "timing PyTorch with {} (this takes minutes)…",
        args.torch_python.display()
    );
    let mut command = Command::new(&args.torch_python);
    command
        .arg(&script)
        .arg("--comfyui")
        .arg(comfyui)
        .arg("--checkpoint")
        .arg(checkpoint)
        .arg("--size")
        .arg(args.size().to_string())
        .arg("--json-out")
        .arg(&out);
    command.args(device_args(backend)?);
    let status = command
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", args.torch_python.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("cannot read {}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    let torch: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} wrote invalid JSON", script.display()))?;
    let ratios = |field: &str, kiln: Option<f64>| {
        let mut out = std::collections::BTreeMap::new();
        if let (Some(kiln), Some(map)) = (kiln, torch[field].as_object()) {
            for (dtype, seconds) in map {
                if let Some(seconds) = seconds.as_f64().filter(|s| *s > 0.0) {
                    out.insert(dtype.clone(), kiln / seconds);
                }
            }
        }
        out
    };
    Ok(TorchComparison {
        step_ratio: ratios("unet_step_s", Some(s_per_step)),
        vae_decode_ratio: ratios("vae_decode_s", vae_decode_s),
        torch,
    })
}

fn tempfile_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{}-{name}", std::process::id()))
}

/// The comparison as lines for humans.
pub(crate) fn print(comparison: &TorchComparison) {
    let torch = &comparison.torch;
    println!(
        "  PyTorch {} ({} threads, {} attention)",
        torch["torch_version"].as_str().unwrap_or("?"),
        torch["threads"],
        torch["attention"].as_str().unwrap_or("?")
    );
    for (dtype, ratio) in &comparison.step_ratio {
        println!(
            "  s/step vs torch {dtype:<9} {ratio:.2}× (torch {:.2} s)",
            torch["unet_step_s"][dtype].as_f64().unwrap_or(f64::NAN)
        );
    }
    for (dtype, ratio) in &comparison.vae_decode_ratio {
        println!(
            "  VAE decode vs torch {dtype:<5} {ratio:.2}× (torch {:.2} s)",
            torch["vae_decode_s"][dtype].as_f64().unwrap_or(f64::NAN)
        );
    }
}
