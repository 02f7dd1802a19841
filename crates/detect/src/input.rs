//! What detection reads from one file: its tensor list, metadata, diffusers config and, optionally,
//! a way to read a few tensor values.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use kiln_weights::TensorInfo;

/// Reads the values of one tensor of a file as `f32`.
///
/// Detection needs values in exactly one place (ComfyUI's SD2 v-prediction guess reads the
/// standard deviation of one small bias), so this is optional: without it such guesses fall back
/// to their default and say so in [`Detection::notes`](crate::Detection::notes).
pub trait TensorValues {
    /// The tensor's elements widened to `f32`, or `None` when it is absent or cannot be decoded.
    fn f32_values(&self, name: &str) -> Option<Vec<f32>>;
}

/// One file's tensor list and context, the input of [`detect`](crate::detect).
///
/// Build it with [`FileTensors::new`] and the `with_*` methods. Files that share a
/// [`group`](FileTensors::with_group) are shards of one state dict (a diffusers `unet/` folder
/// split into several files) and are detected together; every other file is detected on its own.
#[derive(Clone, Copy)]
pub struct FileTensors<'a> {
    pub(crate) path: &'a Path,
    pub(crate) tensors: &'a [TensorInfo],
    pub(crate) metadata: Option<&'a BTreeMap<String, String>>,
    pub(crate) group: Option<&'a Path>,
    pub(crate) config: Option<&'a serde_json::Value>,
    pub(crate) values: Option<&'a dyn TensorValues>,
}

impl<'a> FileTensors<'a> {
    /// A file at `path` (used in messages only) holding `tensors`.
    pub fn new(path: &'a Path, tensors: &'a [TensorInfo]) -> Self {
        Self {
            path,
            tensors,
            metadata: None,
            group: None,
            config: None,
            values: None,
        }
    }

    /// The file's string metadata (safetensors `__metadata__`, GGUF key/values).
    pub fn with_metadata(mut self, metadata: &'a BTreeMap<String, String>) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Marks the file as one shard of the state dict named `group` (usually its folder).
    pub fn with_group(mut self, group: &'a Path) -> Self {
        self.group = Some(group);
        self
    }

    /// The diffusers `config.json` of the component this file belongs to.
    pub fn with_config(mut self, config: &'a serde_json::Value) -> Self {
        self.config = Some(config);
        self
    }

    /// A reader for tensor values, for the few rules that need them.
    pub fn with_values(mut self, values: &'a dyn TensorValues) -> Self {
        self.values = Some(values);
        self
    }

    /// The file's path.
    pub fn path(&self) -> &'a Path {
        self.path
    }
}

impl fmt::Debug for FileTensors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileTensors")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .field("group", &self.group)
            .field("has_config", &self.config.is_some())
            .field("has_values", &self.values.is_some())
            .finish()
    }
}
