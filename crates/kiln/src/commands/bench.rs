//! `kiln bench`: the real-size SD1.5 (or with `sdxl` SDXL base) architecture with random weights
//! (generated locally once, then reused from the page cache) run through the same workflow engine
//! and nodes as `kiln run` — default txt2img at the model's native size, euler, CFG 7 — on the
//! device the planner picks (the CPU, or the GPU in a `cuda`/`metal` build), timing every stage.
//! Prints s/step, peak RSS, process start → first sampling step and per-stage times, and the
//! same as JSON, so later work can compare runs; also the FLOPs of a UNet step (on the CPU
//! against its nominal peak), and with `--compare-torch` PyTorch's timings on the same checkpoint
//! and device (`bench_torch`). `kiln bench flux-schnell` runs the Flux storage comparison instead
//! (`bench_flux`). A benchmark, not a test: nothing here asserts a speed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use kiln_folders::FolderPaths;
use kiln_graph::{ExecutionEvent, ExecutionObserver, ExecutionRequest, Executor, Validator};
use kiln_nodes::{builtin_registry, NodeServices};
use kiln_runtime::{
    detect_device, detect_host, simulated_profile, BackendKind, CapabilityProfile, PlanOptions,
    Planner,
};
use kiln_test_checkpoints::{
    write, CheckpointSpec, Family, Packaging, Size, Storage, UnetConfig, UnetVariant,
};
use serde::Serialize;
use serde_json::json;

use crate::flags::{BenchArgs, BenchStorage, ComfyArgs};

#[path = "bench_flops.rs"]
mod bench_flops;
#[path = "bench_flux.rs"]
mod bench_flux;
#[path = "bench_torch.rs"]
mod bench_torch;

/// Node ids of the benchmark workflow, named for the stages they time.
const STAGES: [(&str, &str); 6] = [
    ("4", "load_checkpoint"),
    ("6", "encode_positive"),
    ("7", "encode_negative"),
    ("5", "empty_latent"),
    ("3", "sampling"),
    ("8", "vae_decode"),
];

/// What one benchmark run measured; also the `--json` output.
#[derive(Debug, Serialize)]
struct BenchReport {
    benchmark: &'static str,
    kiln_version: &'static str,
    machine: Machine,
    settings: serde_json::Value,
    /// Writing the random-weight checkpoint (first run only; not part of any other figure).
    checkpoint_generation_s: Option<f64>,
    /// From process start to the sampler starting: the checkpoint loaded and both prompts
    /// encoded, the point from which only sampling work remains (the sampler node's own setup
    /// counts in the first step).
    start_to_sampling_s: f64,
    /// From process start to the end of the first sampler step.
    start_to_first_step_s: f64,
    /// Mean seconds per sampler step (a step is one CFG-batched UNet evaluation for euler).
    s_per_step: f64,
    /// Median of the steps after the first (which also maps the weights in and grows the
    /// kernels' buffers): the steady state, measured as the PyTorch comparison measures its
    /// steps (median after a warm-up). The mean of all steps when there is only one.
    s_per_step_steady: f64,
    /// Each step's seconds.
    step_s: Vec<f64>,
    /// Seconds per workflow stage.
    stages_s: BTreeMap<String, f64>,
    /// Peak resident memory of the process (VmHWM).
    peak_rss_bytes: Option<u64>,
    total_s: f64,
    /// FLOPs of one sampler step (one CFG-batched UNet evaluation; convolutions, linear layers
    /// and attention products).
    unet_flops_per_step: f64,
    /// `unet_flops_per_step / s_per_step_steady`.
    achieved_flops: f64,
    /// The CPU's nominal f32 FLOP/s and how it was derived (CPU runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_flops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_flops_basis: Option<String>,
    /// `achieved_flops / peak_flops` (CPU runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    fraction_of_peak: Option<f64>,
    /// PyTorch on the same checkpoint (`--compare-torch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    torch_comparison: Option<bench_torch::TorchComparison>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    logical_cores: usize,
    cpu_features: Vec<String>,
    ram_bytes: u64,
    profile: String,
}

/// Runs `kiln bench`: the SD1.5 or SDXL workflow, or with `flux-schnell` the Flux case
/// (`bench_flux`).
pub fn bench(
    args: &BenchArgs,
    global: &ComfyArgs,
    simulate: Option<&str>,
    process_start: Instant,
) -> anyhow::Result<ExitCode> {
    if args.is_flux_schnell() {
        return bench_flux::bench_flux(args, global, simulate);
    }
    let size = args.size();
    if args.steps() == 0 || size == 0 || !size.is_multiple_of(8) {
        bail!("--steps must be ≥ 1 and --size a positive multiple of 8");
    }
    let (family, variant) = if args.is_sdxl() {
        (Family::Sdxl, UnetVariant::Sdxl)
    } else {
        (Family::Sd1, UnetVariant::Sd1)
    };
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("kiln-bench"));
    let storage = match args.storage {
        BenchStorage::F16 => Storage::F16,
        BenchStorage::F32 => Storage::F32,
    };
    let spec = CheckpointSpec::new(family, storage, Packaging::SingleFile).with_size(Size::Real);
    let checkpoints = dir.join("models").join("checkpoints");
    let relative = spec.relative_path();
    let generation = if checkpoints.join(&relative).is_file() {
        None
    } else {
        eprintln!(
            "writing a real-size {} checkpoint with random weights to {} (once)…",
            args.case,
            checkpoints.display()
        );
        let started = Instant::now();
        write(&spec, &checkpoints).context("cannot write the benchmark checkpoint")?;
        Some(started.elapsed().as_secs_f64())
    };

    let options = global.plan_options();
    let profile = bench_profile(&options, simulate)?;
    let machine = machine(&profile.name);
    let backend = profile.backend;
    if args.compare_torch {
        // Before minutes of benchmarking, not after.
        bench_torch::device_args(backend)?;
    }
    let folders = FolderPaths::new(&dir).context("cannot set up the benchmark folders")?;
    let services = Arc::new(
        NodeServices::builder(folders, Planner::new(options, profile))
            .simulated(simulate.is_some())
            .build(),
    );
    let registry = Arc::new(builtin_registry());
    let prompt = workflow(&relative, size, args.steps());
    let resolve = |key: &str| services.combo_options(key);
    let validated = Validator::new(&registry, &resolve)
        .validate(&prompt)
        .map_err(|failure| anyhow::anyhow!("benchmark workflow invalid: {}", failure.to_json()))?;
    let mut executor = Executor::new(registry, services);
    let mut timer = Timer::default();
    let run_start = Instant::now();
    executor
        .execute(&ExecutionRequest::new("kiln-bench", validated), &mut timer)
        .map_err(|failure| anyhow::anyhow!("benchmark run failed: {}", failure.error))?;
    let finished = Instant::now();

    let mut report = timer.report(
        Clock {
            process_start,
            run_start,
            finished,
            generation,
        },
        args,
        &UnetConfig::real(variant),
        backend,
        machine,
    )?;
    if args.compare_torch {
        let decode = report.stages_s.get("vae_decode").copied();
        report.torch_comparison = Some(bench_torch::compare(
            args,
            backend,
            &checkpoints.join(&relative),
            report.s_per_step_steady,
            decode,
        )?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The device profile every benchmark case plans for: the simulated one named, or this
/// machine's.
fn bench_profile(
    options: &PlanOptions,
    simulate: Option<&str>,
) -> anyhow::Result<CapabilityProfile> {
    let (profile, _) = match simulate {
        Some(name) => (simulated_profile(name)?, None),
        None => detect_device(options),
    };
    Ok(profile)
}

/// ComfyUI's default txt2img graph on the benchmark checkpoint, previewed (not saved).
fn workflow(checkpoint: &Path, size: u32, steps: u32) -> serde_json::Value {
    let name = checkpoint.to_string_lossy();
    json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": name}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    })
}

/// Timestamps of the engine's events.
#[derive(Default)]
struct Timer {
    node_starts: Vec<(String, Instant)>,
    steps: Vec<Instant>,
    end: Option<Instant>,
}

impl ExecutionObserver for Timer {
    fn on_event(&mut self, event: ExecutionEvent) {
        let now = Instant::now();
        match event {
            ExecutionEvent::Executing {
                node: Some(node), ..
            } => self.node_starts.push((node, now)),
            ExecutionEvent::Executing { node: None, .. } => self.end = Some(now),
            ExecutionEvent::Progress { .. } => self.steps.push(now),
            _ => {}
        }
    }
}

/// When the process and the benchmark run started and ended, and how long writing the
/// checkpoint took (excluded from the figures).
struct Clock {
    process_start: Instant,
    run_start: Instant,
    finished: Instant,
    generation: Option<f64>,
}

impl Timer {
    fn report(
        &self,
        clock: Clock,
        args: &BenchArgs,
        unet: &UnetConfig,
        backend: BackendKind,
        machine: Machine,
    ) -> anyhow::Result<BenchReport> {
        let Clock {
            process_start,
            run_start,
            finished,
            generation,
        } = clock;
        let end = self.end.unwrap_or(finished);
        let mut stages = BTreeMap::new();
        for (i, (node, start)) in self.node_starts.iter().enumerate() {
            let stop = self.node_starts.get(i + 1).map_or(end, |(_, next)| *next);
            let stage = STAGES
                .iter()
                .find(|(id, _)| id == node)
                .map_or("output", |(_, name)| *name);
            *stages.entry(stage.to_string()).or_insert(0.0) += (stop - *start).as_secs_f64();
        }
        let sampling_start = self
            .node_starts
            .iter()
            .find(|(node, _)| node == "3")
            .map(|(_, at)| *at)
            .context("the sampler never ran")?;
        let first_step = *self
            .steps
            .first()
            .context("the sampler reported no steps")?;
        let mut previous = sampling_start;
        let step_s: Vec<f64> = self
            .steps
            .iter()
            .map(|at| {
                let seconds = (*at - previous).as_secs_f64();
                previous = *at;
                seconds
            })
            .collect();
        let s_per_step = step_s.iter().sum::<f64>() / step_s.len() as f64;
        let s_per_step_steady = match step_s.get(1..) {
            Some(after_first) if !after_first.is_empty() => median(after_first),
            _ => s_per_step,
        };
        // Euler with CFG evaluates cond and uncond as one batch of two.
        let unet_flops_per_step = bench_flops::unet_flops(unet, args.size() as usize / 8, 2);
        let achieved_flops = unet_flops_per_step / s_per_step_steady;
        // The nominal peak is the CPU's; a GPU run reports the achieved rate alone.
        let (peak_flops, peak_flops_basis) = if backend == BackendKind::Cpu {
            let (peak, basis) = bench_flops::nominal_peak_flops(
                bench_flops::physical_cores(),
                &machine.cpu_features,
            );
            (Some(peak), Some(basis))
        } else {
            (None, None)
        };
        Ok(BenchReport {
            benchmark: if args.is_sdxl() {
                "sdxl-txt2img-random-weights"
            } else {
                "sd15-txt2img-random-weights"
            },
            kiln_version: env!("CARGO_PKG_VERSION"),
            machine,
            settings: json!({
                "size": args.size(), "steps": args.steps(), "cfg": 7.0, "sampler": "euler",
                "scheduler": "normal", "storage": format!("{:?}", args.storage).to_lowercase(),
            }),
            checkpoint_generation_s: generation,
            start_to_sampling_s: (sampling_start - process_start).as_secs_f64()
                - generation.unwrap_or(0.0),
            start_to_first_step_s: (first_step - process_start).as_secs_f64()
                - generation.unwrap_or(0.0),
            s_per_step,
            s_per_step_steady,
            step_s,
            stages_s: stages,
            peak_rss_bytes: peak_rss_bytes(),
            total_s: (end - run_start).as_secs_f64(),
            unet_flops_per_step,
            achieved_flops,
            peak_flops,
            peak_flops_basis,
            fraction_of_peak: peak_flops.map(|peak| achieved_flops / peak),
            torch_comparison: None,
        })
    }
}

/// The median of `values` (not empty).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

fn machine(profile: &str) -> Machine {
    let host = detect_host();
    Machine {
        cpu: cpu_model().unwrap_or_else(|| std::env::consts::ARCH.to_string()),
        logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_features: host.cpu_features,
        ram_bytes: host.total_memory,
        profile: profile.to_string(),
    }
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, name)| name.trim().to_string())
}

/// Peak resident set size (Linux `VmHWM`), when the platform reports it.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn print_report(report: &BenchReport) {
    println!(
        "kiln bench: {} on {} ({} threads, {})",
        report.benchmark, report.machine.cpu, report.machine.logical_cores, report.machine.profile
    );
    println!("  settings                {}", report.settings);
    if let Some(seconds) = report.checkpoint_generation_s {
        println!("  checkpoint generation   {seconds:.1} s (first run only, excluded below)");
    }
    println!(
        "  start → sampling        {:.2} s (checkpoint loaded, prompts encoded)",
        report.start_to_sampling_s
    );
    println!(
        "  start → first step done {:.2} s",
        report.start_to_first_step_s
    );
    println!(
        "  s/step                  {:.2} (steady: {:.2}, median after the first)",
        report.s_per_step, report.s_per_step_steady
    );
    for (stage, seconds) in &report.stages_s {
        println!("  {stage:<23} {seconds:.2} s");
    }
    if let Some(bytes) = report.peak_rss_bytes {
        println!(
            "  peak RSS                {:.2} GiB",
            bytes as f64 / (1u64 << 30) as f64
        );
    }
    println!("  total                   {:.2} s", report.total_s);
    print!(
        "  UNet step (steady)      {:.0} GFLOP, {:.1} GFLOP/s",
        report.unet_flops_per_step / 1e9,
        report.achieved_flops / 1e9,
    );
    match (
        report.fraction_of_peak,
        report.peak_flops,
        &report.peak_flops_basis,
    ) {
        (Some(fraction), Some(peak), Some(basis)) => println!(
            " = {:.0}% of peak ({:.0} GFLOP/s: {basis})",
            fraction * 100.0,
            peak / 1e9
        ),
        _ => println!(),
    }
    if let Some(comparison) = &report.torch_comparison {
        bench_torch::print(comparison);
    }
}
