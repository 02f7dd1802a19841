//! The HTTP handlers, one file per area of ComfyUI's API. Each handler is short: extract,
//! call the engine or a store, answer. [`crate::app`] lists them all.

pub(crate) mod files;
pub(crate) mod history;
pub(crate) mod info;
pub(crate) mod internal;
pub(crate) mod jobs;
pub(crate) mod models;
pub(crate) mod prompt;
pub(crate) mod static_files;
pub(crate) mod userdata;
pub(crate) mod users;
pub(crate) mod wire;
