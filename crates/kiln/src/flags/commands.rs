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
    /// start-to-first-step and per-stage times; or `bench flux-schnell`: Flux's real widths at a
    /// reduced depth in bf16, fp8 e4m3fn and GGUF Q8_0, resident weights and s/step side by side.
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

/// `kiln bench [sd15|sdxl|flux-schnell] [--steps N] [--size PX] [--storage f16|f32]
/// [--flux-blocks D,S] [--dir DIR] [--json] [--out FILE]`.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct BenchArgs {
    /// Which benchmark: `sd15` or `sdxl` (the txt2img workflow on a real-size checkpoint) or
    /// `flux-schnell` (the Flux transformer at real widths and `--flux-blocks` depth in bf16, fp8
    /// e4m3fn and GGUF Q8_0).
    #[arg(
        value_name = "CASE",
        default_value = BENCH_CASE_SD15,
        value_parser = [BENCH_CASE_SD15, BENCH_CASE_SDXL, BENCH_CASE_FLUX_SCHNELL]
    )]
    pub case: String,
    /// Sampler steps (default: 3 for sd15, 4 for flux-schnell).
    #[arg(long)]
    pub steps: Option<u32>,
    /// Image width and height in pixels, a multiple of 8 (default: 1024 for sdxl, else 512).
    #[arg(long)]
    pub size: Option<u32>,
    /// Storage dtype of the generated checkpoint (sd15; flux-schnell always runs all three).
    #[arg(long, value_enum, default_value_t = BenchStorage::F16)]
    pub storage: BenchStorage,
    /// flux-schnell: double-stream and single-stream blocks to build and time (the full model
    /// has 19 and 38; full-depth figures are extrapolated from these).
    #[arg(
        long,
        value_name = "DOUBLE,SINGLE",
        default_value = "1,1",
        value_parser = parse_flux_blocks
    )]
    pub flux_blocks: [usize; 2],
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

/// `kiln bench sd15`: the SD1.5 txt2img workflow (the default).
const BENCH_CASE_SD15: &str = "sd15";
/// `kiln bench sdxl`: the same workflow on SDXL base at its native 1024².
const BENCH_CASE_SDXL: &str = "sdxl";
/// `kiln bench flux-schnell`: the Flux transformer at real widths, reduced depth.
const BENCH_CASE_FLUX_SCHNELL: &str = "flux-schnell";
/// Sampler steps when `--steps` is not given: SD1.5's short timing run, Flux schnell's 4.
const SD15_DEFAULT_STEPS: u32 = 3;
/// Image sizes when `--size` is not given: what each model was trained at.
const SD15_SIZE: u32 = 512;
const SDXL_SIZE: u32 = 1024;
const FLUX_SCHNELL_DEFAULT_STEPS: u32 = 4;

impl BenchArgs {
    /// Whether the Flux schnell case was asked for (otherwise a UNet workflow).
    pub fn is_flux_schnell(&self) -> bool {
        self.case == BENCH_CASE_FLUX_SCHNELL
    }

    /// Whether the SDXL case was asked for.
    pub fn is_sdxl(&self) -> bool {
        self.case == BENCH_CASE_SDXL
    }

    /// `--size`, or the case's native size.
    pub fn size(&self) -> u32 {
        self.size
            .unwrap_or(if self.is_sdxl() { SDXL_SIZE } else { SD15_SIZE })
    }

    /// `--steps`, or the case's default.
    pub fn steps(&self) -> u32 {
        self.steps.unwrap_or(if self.is_flux_schnell() {
            FLUX_SCHNELL_DEFAULT_STEPS
        } else {
            SD15_DEFAULT_STEPS
        })
    }
}

/// `DOUBLE,SINGLE` block counts, each at least 1 (per-block figures need one of each).
fn parse_flux_blocks(text: &str) -> Result<[usize; 2], String> {
    let counts: Vec<usize> = text
        .split(',')
        .map(|part| part.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|error| format!("'{text}' is not DOUBLE,SINGLE block counts: {error}"))?;
    match counts[..] {
        [double, single] if double >= 1 && single >= 1 => Ok([double, single]),
        _ => Err(format!(
            "'{text}' is not DOUBLE,SINGLE: two block counts, each at least 1"
        )),
    }
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

    #[test]
    fn flux_blocks_are_two_positive_counts() {
        assert_eq!(parse_flux_blocks("1,2"), Ok([1, 2]));
        assert_eq!(parse_flux_blocks(" 19, 38"), Ok([19, 38]));
        assert!(parse_flux_blocks("1").is_err());
        assert!(parse_flux_blocks("1,2,3").is_err());
        assert!(parse_flux_blocks("0,2").is_err());
        assert!(parse_flux_blocks("a,2").is_err());
    }
}
