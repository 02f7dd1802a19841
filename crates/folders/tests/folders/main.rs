//! Public-API tests of kiln-folders against real directory trees in temp dirs.

// The whole crate is tests; clippy's allow-unwrap-in-tests misses the helper functions.
#![allow(clippy::unwrap_used)]

mod extra_model_paths;
mod layout;
mod listing;
mod resolve;
mod util;
