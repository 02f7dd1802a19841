//! The library half of the `kiln` binary, so that its command line can be tested and reused:
//! [`commands`] holds the subcommands (`inspect`, `doctor`, `testgen`); [`flags`] holds ComfyUI's flags, Kiln's subcommands and the conversion of both into what
//! the runtime and the folder layout take.
#![deny(missing_docs)]

pub mod commands;
pub mod flags;
