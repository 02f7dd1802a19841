//! The `kiln` command line: ComfyUI's flags ([`ComfyArgs`]), Kiln's own global flag
//! `--simulate-device`, and the subcommands ([`Command`]).
//!
//! Configuration happens in two stages. Stage one is [`Cli::try_parse_from`]: every ComfyUI
//! flag with its exact name, value syntax and mutually exclusive group, validated and nothing
//! more. Stage two turns the flags into what the rest of Kiln takes:
//! [`ComfyArgs::plan_options`] for the planner, [`ComfyArgs::folder_paths`] for the model
//! folders, and [`ComfyArgs::compatibility_warnings`] for flags that Kiln accepts but ignores
//! (the table in [`COMFY_FLAGS`]).
//!
//! ```
//! use kiln::flags::{Cli, Command};
//!
//! let cli = Cli::try_parse_checked_from(["kiln", "--force-fp16", "--cpu", "doctor", "--json"])?;
//! assert!(matches!(cli.command, Some(Command::Doctor(_))));
//! assert!(cli.global.plan_options().cpu);
//! assert!(cli.global.unimplemented_flags().is_empty());
//! assert!(Cli::try_parse_checked_from(["kiln", "--cpu", "doctor", "--lowvram"]).is_err());
//! # Ok::<(), clap::Error>(())
//! ```

mod comfy_args;
mod commands;
mod groups;
mod notes;
mod plan;
mod support;
mod values;

#[cfg(test)]
mod tests;

pub use comfy_args::{
    ComfyArgs, DEFAULT_COMFY_API_BASE, DEFAULT_FRONT_END_VERSION, DEFAULT_LISTEN,
    DEFAULT_MAX_UPLOAD_SIZE_MB, DEFAULT_PORT, DEFAULT_PREVIEW_SIZE, LISTEN_ALL,
};
pub use commands::{
    BenchArgs, BenchStorage, Command, DoctorArgs, InputOverride, InspectArgs, RunArgs, TestgenArgs,
};
pub use groups::{ExclusiveGroup, EXCLUSIVE_GROUPS};
pub use notes::{mps_fallback_note, MPS_FALLBACK_VARIABLE};
pub use support::{flag_entry, FlagEntry, FlagSupport, COMFY_FLAGS};
pub use values::{FastFeature, HashingFunction, LogLevel, PreviewMethod};

use std::ffi::OsString;

use clap::builder::PossibleValuesParser;
use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser};

/// The whole command line. ComfyUI's flags and `--simulate-device` are global: they may come
/// before or after the subcommand. Like argparse, a flag may be repeated (the last one wins)
/// and long flags may be abbreviated to any unambiguous prefix.
///
/// Parse with [`Cli::parse_checked`] / [`Cli::try_parse_checked_from`]: clap's own
/// `Parser::try_parse_from` rejects two flags of one exclusive group on the same side of the
/// subcommand, but not `kiln --cpu doctor --lowvram`.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Kiln: a diffusion image-generation engine and ComfyUI-compatible server",
    args_override_self = true,
    infer_long_args = true
)]
pub struct Cli {
    /// Every ComfyUI flag.
    #[command(flatten)]
    pub global: ComfyArgs,

    /// Plan as if running on this device instead of the real one (Kiln only, not a ComfyUI
    /// flag).
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        value_parser = PossibleValuesParser::new(kiln_runtime::profile_names()),
        help_heading = "Kiln"
    )]
    pub simulate_device: Option<String>,

    /// What to do; the server when absent.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// Parses the process arguments; on error prints clap's message and exits (code 2, like
    /// argparse).
    pub fn parse_checked() -> Cli {
        Cli::try_parse_checked_from(std::env::args_os()).unwrap_or_else(|error| error.exit())
    }

    /// Parses `args` (the first is the program name), with ComfyUI's exclusive groups checked
    /// across the subcommand boundary too.
    pub fn try_parse_checked_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut command = Cli::command();
        let matches = command.try_get_matches_from_mut(args)?;
        if let Some((first, second)) = groups::first_conflict(&command, &matches) {
            return Err(command.error(
                ErrorKind::ArgumentConflict,
                format!("the argument '{first}' cannot be used with '{second}'"),
            ));
        }
        Cli::from_arg_matches(&matches).map_err(|error| error.format(&mut command))
    }
}
