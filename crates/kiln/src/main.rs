//! The `kiln` binary: parses ComfyUI's flags, says which of them Kiln ignores, and dispatches
//! to a subcommand (the server when there is none).

use std::process::ExitCode;

use kiln::commands;
use kiln::flags::{mps_fallback_note, Cli, ComfyArgs, Command};
use kiln_folders::FolderPaths;
use kiln_server::LogBuffer;

/// Sets up glibc's allocator for tensors.
///
/// One arena: with one per thread (its default), the kernel pool's workers each keep the
/// high-water mark of the tensors they allocated; with one, freed activations are reused across
/// threads: SD1.5's peak RSS drops by ~70 MB, no slower (measured with `kiln bench`).
///
/// Freed memory kept for reuse: large blocks come from the heap instead of a fresh `mmap` each
/// (threshold 1 GiB), and the heap's free top is not trimmed on every `free`. A VAE decode and
/// every UNet step reallocate the same 100+ MB activations; served from fresh mappings each time
/// they cost a page fault and a zeroed page per 4 KiB. Kept, SD1.5's VAE decode at 512² takes
/// 20–25 % less time and a UNet step ~10 % less (`kiln bench`, both precision modes). The
/// memory is given back when each model component goes idle (`kiln_runtime::return_free_heap`),
/// so the peak RSS stays that of the largest phase.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_malloc() {
    // SAFETY: `mallopt` only sets allocator parameters; it is called first thing in `main`,
    // before any other thread exists or anything is allocated through another arena. A refusal
    // (return value 0) leaves glibc's default, which is also correct, only slower.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

fn main() -> ExitCode {
    let process_start = std::time::Instant::now();
    tune_malloc();
    let cli = Cli::parse_checked();
    let logs = LogBuffer::new();
    init_logging(&cli.global, &logs);
    for warning in cli.global.compatibility_warnings() {
        eprintln!("{warning}");
    }
    if let Some(note) = mps_fallback_note() {
        eprintln!("{note}");
    }
    match run(&cli, process_start, logs) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("kiln: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli, process_start: std::time::Instant, logs: LogBuffer) -> anyhow::Result<ExitCode> {
    match &cli.command {
        None | Some(Command::Serve) => {
            commands::serve(&cli.global, cli.simulate_device.as_deref(), logs)
        }
        Some(Command::Inspect(args)) => Ok(commands::inspect(args, folders(cli).as_ref())),
        Some(Command::Doctor(args)) => commands::doctor(
            args,
            &cli.global.plan_options(),
            cli.simulate_device.as_deref(),
            folders(cli).as_ref(),
        ),
        Some(Command::Run(args)) => {
            commands::run(args, &cli.global, cli.simulate_device.as_deref())
        }
        Some(Command::Testgen(args)) => commands::testgen(args),
        Some(Command::Bench(args)) => commands::bench(
            args,
            &cli.global,
            cli.simulate_device.as_deref(),
            process_start,
        ),
    }
}

/// `--verbose` sets the level; logs go to stderr unless `--log-stdout`, as in ComfyUI, and are
/// also kept in `logs` for the server's `/internal/logs`.
fn init_logging(args: &ComfyArgs, logs: &LogBuffer) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(args.log_level().level_filter())
        .with_ansi(false);
    let logs = logs.clone();
    if args.log_stdout {
        builder.with_writer(move || logs.stdout_writer()).init();
    } else {
        builder.with_writer(move || logs.writer()).init();
    }
}

/// The model folders, for resolving bare model names. A broken `extra_model_paths.yaml` is
/// reported and otherwise ignored here: commands given explicit paths still work.
fn folders(cli: &Cli) -> Option<FolderPaths> {
    match cli.global.folder_paths() {
        Ok(folders) => Some(folders),
        Err(error) => {
            eprintln!("kiln: warning: model folders unavailable: {error}");
            None
        }
    }
}
