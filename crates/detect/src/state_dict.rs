//! A searchable view of one state dict: the tensors of one file, or of every shard of one
//! diffusers component, by name.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use kiln_weights::{StorageDType, TensorInfo};

use crate::input::{FileTensors, TensorValues};
use crate::DetectError;

/// One stored tensor as detection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Index into the checkpoint's file list.
    pub(crate) file: usize,
    pub(crate) dtype: StorageDType,
    pub(crate) shape: Vec<u64>,
}

impl Entry {
    pub(crate) fn elements(&self) -> u64 {
        elements(&self.shape)
    }
}

/// Elements of a tensor of `shape`, saturating (a header can claim anything).
pub(crate) fn elements(shape: &[u64]) -> u64 {
    shape.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
}

/// Tensors by name, sorted so prefix scans are range queries.
pub(crate) struct StateDict<'a> {
    label: PathBuf,
    entries: BTreeMap<&'a str, Entry>,
    values: BTreeMap<usize, &'a dyn TensorValues>,
    metadata: Vec<&'a BTreeMap<String, String>>,
    config: Option<&'a serde_json::Value>,
}

/// GGUF writers (city96's ComfyUI-GGUF) flatten some tensors and keep the real shape here.
const GGUF_ORIG_SHAPE: &str = "comfy.gguf.orig_shape.";

impl<'a> StateDict<'a> {
    /// The state dict made of `files[i]` for every `i` in `members` (file indices are global).
    pub(crate) fn build(
        label: &Path,
        files: &[FileTensors<'a>],
        members: &[usize],
    ) -> Result<Self, DetectError> {
        let mut entries = BTreeMap::new();
        let mut values = BTreeMap::new();
        let mut metadata = Vec::new();
        let mut config = None;
        for &index in members {
            let Some(file) = files.get(index) else {
                continue;
            };
            if let Some(v) = file.values {
                values.insert(index, v);
            }
            if let Some(m) = file.metadata {
                metadata.push(m);
            }
            config = config.or(file.config);
            for tensor in file.tensors {
                let name: &'a str = tensor.name.as_str();
                let shape = logical_shape(tensor, file.metadata);
                let entry = Entry {
                    file: index,
                    dtype: tensor.dtype,
                    shape,
                };
                if entries.insert(name, entry).is_some() {
                    return Err(DetectError::DuplicateTensor {
                        file: label.to_path_buf(),
                        tensor: name.to_string(),
                    });
                }
            }
        }
        Ok(Self {
            label: label.to_path_buf(),
            entries,
            values,
            metadata,
            config,
        })
    }

    /// The file (or component folder) this state dict came from, for messages.
    pub(crate) fn label(&self) -> &Path {
        &self.label
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub(crate) fn shape(&self, name: &str) -> Option<&[u64]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'a str, &Entry)> + '_ {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    /// Every tensor whose name starts with `prefix`, in name order.
    pub(crate) fn with_prefix<'s>(
        &'s self,
        prefix: &'s str,
    ) -> impl Iterator<Item = (&'a str, &'s Entry)> + 's {
        self.entries
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (*k, v))
    }

    pub(crate) fn any_with_prefix(&self, prefix: &str) -> bool {
        self.with_prefix(prefix).next().is_some()
    }

    /// How many consecutive numbered blocks `{prefix}0.`, `{prefix}1.`, … exist (ComfyUI's
    /// `count_blocks`).
    pub(crate) fn count_blocks(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|n| self.any_with_prefix(&format!("{prefix}{n}.")))
            .count()
    }

    /// The tensor's values as `f32`, when the caller supplied a value reader for its file.
    pub(crate) fn f32_values(&self, file: usize, name: &str) -> Option<Vec<f32>> {
        self.values.get(&file)?.f32_values(name)
    }

    /// A metadata value from any of the member files.
    pub(crate) fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find_map(|m| m.get(key))
            .map(String::as_str)
    }

    /// The diffusers `config.json` `_class_name`, when known.
    pub(crate) fn config_class(&self) -> Option<&str> {
        self.config?.get("_class_name")?.as_str()
    }
}

/// A tensor's shape as the model sees it: city96's GGUF files store some tensors flattened and
/// record the real shape in their metadata.
pub(crate) fn logical_shape(
    tensor: &TensorInfo,
    metadata: Option<&BTreeMap<String, String>>,
) -> Vec<u64> {
    metadata
        .and_then(|m| m.get(&format!("{GGUF_ORIG_SHAPE}{}", tensor.name)))
        .and_then(|text| parse_shape(text))
        .filter(|shape| elements(shape) == tensor.elements())
        .unwrap_or_else(|| tensor.shape.iter().map(|&d| d as u64).collect())
}

/// Reads a shape written as a list of integers (`[3072, 64]`, `3072,64`, `(3072, 64)`).
fn parse_shape(text: &str) -> Option<Vec<u64>> {
    let dims: Vec<u64> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    (!dims.is_empty() && dims.len() <= 8).then_some(dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tensor;

    #[test]
    fn count_blocks_stops_at_the_first_gap() {
        let tensors = vec![
            tensor("a.0.w", &[1]),
            tensor("a.1.w", &[1]),
            tensor("a.3.w", &[1]),
            tensor("a.10.w", &[1]),
        ];
        let files = [FileTensors::new(Path::new("x"), &tensors)];
        let sd = StateDict::build(Path::new("x"), &files, &[0]).unwrap();
        assert_eq!(sd.count_blocks("a."), 2);
        assert_eq!(sd.with_prefix("a.1").count(), 2);
        assert!(!sd.any_with_prefix("b."));
    }

    #[test]
    fn gguf_original_shapes_replace_flattened_ones() {
        let tensors = vec![tensor("proj_in.weight", &[320, 320])];
        let mut meta = BTreeMap::new();
        meta.insert(
            format!("{GGUF_ORIG_SHAPE}proj_in.weight"),
            "[320, 320, 1, 1]".to_string(),
        );
        let files = [FileTensors::new(Path::new("x"), &tensors).with_metadata(&meta)];
        let sd = StateDict::build(Path::new("x"), &files, &[0]).unwrap();
        assert_eq!(sd.shape("proj_in.weight"), Some(&[320, 320, 1, 1][..]));
    }

    #[test]
    fn duplicate_names_across_shards_are_an_error() {
        let a = vec![tensor("w", &[1])];
        let b = vec![tensor("w", &[1])];
        let files = [
            FileTensors::new(Path::new("a"), &a),
            FileTensors::new(Path::new("b"), &b),
        ];
        let err = StateDict::build(Path::new("dir"), &files, &[0, 1])
            .err()
            .unwrap();
        assert!(matches!(err, DetectError::DuplicateTensor { ref tensor, .. } if tensor == "w"));
    }
}
