//! Kiln's subcommands, one file each. Each takes the parsed flags and returns the process exit
//! code; errors that are the user's input are printed by the command itself, per file.

mod bench;
mod doctor;
mod human;
mod inspect;
mod resolve;
mod run;
mod serve;
mod services;
mod testgen;

pub use bench::bench;
pub use doctor::doctor;
pub use inspect::inspect;
pub use run::run;
pub use serve::serve;
pub use testgen::testgen;
