//! Kiln's own subcommands and their arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// What to do. Without a subcommand Kiln behaves like ComfyUI's `main.py`: it serves.
#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum Command {
    /// Start the ComfyUI-compatible server (what Kiln does without a subcommand).
    Serve,
    /// Show what checkpoint files hold: format, storage dtypes, architecture, components.
    Inspect(InspectArgs),
    /// Check this machine (and optionally a checkpoint): device capabilities and the plan the
    /// flags lead to.
    Doctor(DoctorArgs),
    /// Run an API-format workflow once, without the server.
    Run(RunArgs),
    /// Write small deterministic test checkpoints in every supported layout and dtype.
    Testgen(TestgenArgs),
    /// Time real-size SD1.5 (random weights) through the workflow engine: s/step, peak RSS,
    /// start-to-first-step and per-stage times.
    Bench(BenchArgs),
}

/// `kiln inspect FILE... [--json]`.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct InspectArgs {
    /// Checkpoint files or diffusers folders.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `kiln doctor [FILE] [--json]`.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct DoctorArgs {
    /// A checkpoint to plan for.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `kiln run WORKFLOW [--set NODE.INPUT=VALUE]...`.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct RunArgs {
    /// The workflow, in ComfyUI's API format (JSON).
    #[arg(value_name = "WORKFLOW")]
    pub workflow: PathBuf,
    /// Override one node input, e.g. `--set 3.seed=42` (repeatable).
    #[arg(long = "set", value_name = "NODE.INPUT=VALUE", value_parser = parse_input_override)]
    pub overrides: Vec<InputOverride>,
}

/// `kiln bench [--steps N] [--size PX] [--storage f16|f32] [--dir DIR] [--json] [--out FILE]`.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct BenchArgs {
    /// Sampler steps.
    #[arg(long, default_value_t = 3)]
    pub steps: u32,
    /// Image width and height in pixels (a multiple of 8).
    #[arg(long, default_value_t = 512)]
    pub size: u32,
    /// Storage dtype of the generated checkpoint.
    #[arg(long, value_enum, default_value_t = BenchStorage::F16)]
    pub storage: BenchStorage,
    /// Where the random-weight checkpoint is written once and reused (default: a temp dir).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Afterwards time PyTorch (ComfyUI's UNet and VAE, f32 and bf16) on the same checkpoint with
    /// scripts/bench/compare_torch.py and print Kiln/PyTorch ratios.
    #[arg(long)]
    pub compare_torch: bool,
    /// The Python that runs the PyTorch comparison (a venv with torch).
    #[arg(
        long,
        value_name = "PYTHON",
        env = "KILN_TORCH_PYTHON",
        default_value = "python3"
    )]
    pub torch_python: PathBuf,
    /// ComfyUI source tree the PyTorch comparison imports its UNet and VAE from.
    #[arg(long, value_name = "DIR", env = "KILN_COMFYUI_SRC")]
    pub comfyui: Option<PathBuf>,
}

/// Storage dtype of the benchmark checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchStorage {
    /// Half precision, as released SD1.5 files.
    F16,
    /// Single precision.
    F32,
}

/// `kiln testgen DIR`.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct TestgenArgs {
    /// Where to write the checkpoints.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// One `--set NODE.INPUT=VALUE`. The value is kept as typed; the workflow code decides how to
/// read it against the input's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputOverride {
    /// The node id, as a key of the API-format workflow (`"3"`).
    pub node: String,
    /// The input name (`seed`).
    pub input: String,
    /// The value text (`42`).
    pub value: String,
}

/// Splits `NODE.INPUT=VALUE` at the first `=` and the first `.` before it.
fn parse_input_override(text: &str) -> Result<InputOverride, String> {
    let (target, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NODE.INPUT=VALUE (no '=')"))?;
    let (node, input) = target.split_once('.').ok_or_else(|| {
        format!("'{text}' is not NODE.INPUT=VALUE (no '.' between node and input)")
    })?;
    if node.is_empty() || input.is_empty() {
        return Err(format!(
            "'{text}' is not NODE.INPUT=VALUE (empty node or input)"
        ));
    }
    Ok(InputOverride {
        node: node.to_owned(),
        input: input.to_owned(),
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_override_splits_at_first_separators() {
        assert_eq!(
            parse_input_override("3.text=a.b=c").unwrap(),
            InputOverride {
                node: "3".into(),
                input: "text".into(),
                value: "a.b=c".into(),
            }
        );
        assert_eq!(parse_input_override("3.seed=").unwrap().value, "");
        assert!(parse_input_override("3.seed").is_err());
        assert!(parse_input_override("seed=4").is_err());
        assert!(parse_input_override(".seed=4").is_err());
        assert!(parse_input_override("3.=4").is_err());
    }
}
