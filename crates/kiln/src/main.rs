//! The `kiln` binary: parses ComfyUI's flags, says which of them Kiln ignores, and dispatches
//! to a subcommand (the server when there is none).

use std::io;
use std::process::ExitCode;

use kiln::commands;
use kiln::flags::{mps_fallback_note, Cli, ComfyArgs, Command};
use kiln_folders::FolderPaths;

/// Exit code for "this part of Kiln does not exist yet".
const NOT_AVAILABLE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse_checked();
    init_logging(&cli.global);
    for warning in cli.global.compatibility_warnings() {
        eprintln!("{warning}");
    }
    if let Some(note) = mps_fallback_note() {
        eprintln!("{note}");
    }
    match run(&cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("kiln: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        None | Some(Command::Serve) => {
            eprintln!(
                "kiln: the server is not implemented yet (see issue: ComfyUI-compatible server); use `kiln inspect` / `kiln doctor`"
            );
            Ok(ExitCode::from(NOT_AVAILABLE))
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
    }
}

/// `--verbose` sets the level; logs go to stderr unless `--log-stdout`, as in ComfyUI.
fn init_logging(args: &ComfyArgs) {
    let builder = tracing_subscriber::fmt().with_max_level(args.log_level().level_filter());
    if args.log_stdout {
        builder.with_writer(io::stdout).init();
    } else {
        builder.with_writer(io::stderr).init();
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
