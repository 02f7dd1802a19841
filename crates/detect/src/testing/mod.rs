//! Synthetic key lists with real shapes, for unit tests: every layout Kiln detects, written from
//! each layout's own structure (not by renaming another), so mapping bugs cannot cancel out.

pub(crate) mod dit;
pub(crate) mod encoders;
pub(crate) mod unet;
pub(crate) mod vae;

use std::path::Path;

use kiln_weights::{StorageDType, TensorInfo};

use crate::input::FileTensors;
use crate::{detect, DetectError, Detection};

/// A tensor of `shape` stored as f16.
pub(crate) fn tensor(name: &str, shape: &[u64]) -> TensorInfo {
    tensor_dt(name, shape, StorageDType::F16)
}

/// A tensor of `shape` stored as `dtype`.
pub(crate) fn tensor_dt(name: &str, shape: &[u64], dtype: StorageDType) -> TensorInfo {
    TensorInfo {
        name: name.to_string(),
        dtype,
        shape: shape.iter().map(|&d| d as _).collect(),
    }
}

/// Names and shapes, built up block by block.
#[derive(Debug, Clone, Default)]
pub(crate) struct Keys(pub(crate) Vec<(String, Vec<u64>)>);

impl Keys {
    pub(crate) fn add(&mut self, name: impl Into<String>, shape: &[u64]) {
        self.0.push((name.into(), shape.to_vec()));
    }

    /// `{name}.weight` `[out, inp]` and `{name}.bias` `[out]`.
    pub(crate) fn linear(&mut self, name: &str, out: u64, inp: u64) {
        self.add(format!("{name}.weight"), &[out, inp]);
        self.add(format!("{name}.bias"), &[out]);
    }

    /// `{name}.weight` `[out, inp]` only.
    pub(crate) fn linear_no_bias(&mut self, name: &str, out: u64, inp: u64) {
        self.add(format!("{name}.weight"), &[out, inp]);
    }

    /// A conv with bias.
    pub(crate) fn conv(&mut self, name: &str, out: u64, inp: u64, kernel: u64) {
        self.add(format!("{name}.weight"), &[out, inp, kernel, kernel]);
        self.add(format!("{name}.bias"), &[out]);
    }

    /// A norm with weight and bias.
    pub(crate) fn norm(&mut self, name: &str, channels: u64) {
        self.add(format!("{name}.weight"), &[channels]);
        self.add(format!("{name}.bias"), &[channels]);
    }

    /// Every key again under `prefix`.
    pub(crate) fn prefixed(&self, prefix: &str) -> Keys {
        Keys(
            self.0
                .iter()
                .map(|(n, s)| (format!("{prefix}{n}"), s.clone()))
                .collect(),
        )
    }

    pub(crate) fn extend(&mut self, other: Keys) {
        self.0.extend(other.0);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn tensors(&self) -> Vec<TensorInfo> {
        self.tensors_as(StorageDType::F16)
    }

    pub(crate) fn tensors_as(&self, dtype: StorageDType) -> Vec<TensorInfo> {
        self.0.iter().map(|(n, s)| tensor_dt(n, s, dtype)).collect()
    }
}

/// Detects one synthetic file.
pub(crate) fn detect_keys(keys: &Keys) -> Result<Detection, DetectError> {
    let tensors = keys.tensors();
    detect(&[FileTensors::new(
        Path::new("synthetic.safetensors"),
        &tensors,
    )])
}

/// Checks the invariants every detection must keep: every key-map source exists in the input,
/// no source tensor is claimed twice, and claimed + unclaimed = all tensors.
pub(crate) fn assert_consistent(detection: &Detection, files: &[&[TensorInfo]]) {
    let mut claimed = std::collections::BTreeSet::new();
    for component in &detection.components {
        for (internal, source) in &component.keys {
            for (file, name) in source.tensors() {
                let exists = files
                    .get(file)
                    .is_some_and(|f| f.iter().any(|t| t.name == name));
                assert!(exists, "{internal} → missing source {file}:{name}");
                let slice = matches!(source.transform, crate::KeyTransform::SliceRows { .. });
                let newly = claimed.insert((file, name.to_string()));
                assert!(
                    newly || slice || aliased(component, name),
                    "{name} claimed twice"
                );
            }
        }
    }
    let total: usize = files.iter().map(|f| f.len()).sum();
    assert_eq!(
        claimed.len() + detection.unclaimed_keys,
        total,
        "claimed + unclaimed != total"
    );
}

fn aliased(component: &crate::Component, name: &str) -> bool {
    component
        .keys
        .values()
        .filter(|s| s.tensors().any(|(_, n)| n == name))
        .count()
        > 1
        && component.kind == crate::ComponentKind::T5xxl
}

/// The internal names of a detection's component, sorted.
pub(crate) fn internal_names(detection: &Detection, kind: crate::ComponentKind) -> Vec<String> {
    detection
        .component(kind)
        .map(|c| c.keys.keys().cloned().collect())
        .unwrap_or_default()
}
