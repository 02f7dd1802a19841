//! Turning a key map into a [`Component`]: which source tensors it claims, its parameter count,
//! storage-dtype histogram, dominant dtype and scaled-fp8 marker.

use std::collections::BTreeMap;

use kiln_weights::StorageDType;

use crate::state_dict::StateDict;
use crate::{Component, ComponentKind, KeyMap, KeySource, KeyTransform, Layout};

/// The internal (and stored) name of ComfyUI's scaled-fp8 marker tensor, one per component.
pub(crate) const SCALED_FP8_MARKER: &str = "scaled_fp8";

/// Internal name = stored name minus `prefix`, for every tensor under `prefix` whose remainder
/// starts with one of `modules` (`"input_blocks."`) or equals one (`"pos_embed"`), plus the
/// component's scaled-fp8 marker.
pub(crate) fn identity_map(sd: &StateDict<'_>, prefix: &str, modules: &[&str]) -> KeyMap {
    let mut keys = KeyMap::new();
    for (name, entry) in sd.with_prefix(prefix) {
        let rest = &name[prefix.len()..];
        let wanted = rest == SCALED_FP8_MARKER
            || modules.iter().any(|m| {
                if m.ends_with('.') {
                    rest.starts_with(m)
                } else {
                    rest == *m
                }
            });
        if wanted {
            keys.insert(rest.to_string(), KeySource::identity(entry.file, name));
        }
    }
    keys
}

/// Adds the component's scaled-fp8 marker (`{prefix}scaled_fp8`) to a translated key map.
pub(crate) fn add_scaled_fp8_marker(keys: &mut KeyMap, sd: &StateDict<'_>, prefix: &str) {
    let marker = format!("{prefix}{SCALED_FP8_MARKER}");
    if let Some(entry) = sd.get(&marker) {
        keys.insert(
            SCALED_FP8_MARKER.to_string(),
            KeySource::identity(entry.file, marker),
        );
    }
}

/// Assembles a component from its key map, computing its statistics from the stored tensors.
pub(crate) fn build(
    kind: ComponentKind,
    layout: Layout,
    prefix: &str,
    keys: KeyMap,
    facts: BTreeMap<String, u64>,
    sd: &StateDict<'_>,
) -> Component {
    let mut dtypes: BTreeMap<StorageDType, u64> = BTreeMap::new();
    for source in keys.values() {
        for (_, name) in source.tensors() {
            let Some(entry) = sd.get(name) else { continue };
            let share = match source.transform {
                KeyTransform::SliceRows { parts, .. } => entry.elements() / (parts.max(1) as u64),
                _ => entry.elements(),
            };
            *dtypes.entry(entry.dtype).or_default() += share;
        }
    }
    let params = dtypes.values().fold(0u64, |acc, &n| acc.saturating_add(n));
    let dominant_dtype = dominant(&dtypes);
    // The fp8 type the weights are stored in; the marker's own dtype (ComfyUI's source) when the
    // marker is the only fp8 tensor, e4m3fn when even that is not fp8 (ComfyUI's f32 fallback).
    let scaled_fp8 = keys
        .get(SCALED_FP8_MARKER)
        .and_then(|marker| sd.get(&marker.name))
        .map(|marker| {
            let weights = dtypes
                .iter()
                .filter(|(d, n)| d.is_fp8() && **n > 0)
                .max_by_key(|(_, n)| **n);
            match weights {
                Some((dtype, _)) => *dtype,
                None if marker.dtype.is_fp8() => marker.dtype,
                None => StorageDType::F8E4M3,
            }
        });
    Component {
        kind,
        layout,
        prefix: prefix.to_string(),
        params,
        dtypes,
        dominant_dtype,
        scaled_fp8,
        facts,
        keys,
    }
}

/// ComfyUI's `weight_dtype`: the float dtype holding the most elements (the first in dtype
/// order on a tie); the most common dtype of any kind when there is no float.
fn dominant(dtypes: &BTreeMap<StorageDType, u64>) -> StorageDType {
    let most = |float_only: bool| {
        dtypes
            .iter()
            .filter(|(d, _)| !float_only || d.is_float())
            .fold(None::<(StorageDType, u64)>, |best, (&d, &n)| match best {
                Some((_, m)) if m >= n => best,
                _ => Some((d, n)),
            })
            .map(|(d, _)| d)
    };
    most(true)
        .or_else(|| most(false))
        .unwrap_or(StorageDType::F32)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::input::FileTensors;
    use crate::testing::tensor_dt;

    #[test]
    fn histogram_counts_slices_once_and_finds_scaled_fp8() {
        let tensors = vec![
            tensor_dt("p.a.weight", &[6, 4], StorageDType::F8E4M3),
            tensor_dt("p.a.scale_weight", &[], StorageDType::F32),
            tensor_dt("p.b.bias", &[4], StorageDType::BF16),
            tensor_dt("p.scaled_fp8", &[0], StorageDType::F8E4M3),
            tensor_dt("other.weight", &[100], StorageDType::F32),
        ];
        let files = [FileTensors::new(Path::new("f"), &tensors)];
        let sd = StateDict::build(Path::new("f"), &files, &[0]).unwrap();
        let mut keys = identity_map(&sd, "p.", &["a.", "b."]);
        assert_eq!(keys.len(), 4);
        keys.remove("a.weight");
        for part in 0..3 {
            keys.insert(
                format!("q{part}"),
                KeySource::new(0, "p.a.weight", KeyTransform::SliceRows { part, parts: 3 }),
            );
        }
        let c = build(
            ComponentKind::ClipL,
            Layout::OpenClip,
            "p.",
            keys,
            BTreeMap::new(),
            &sd,
        );
        assert_eq!(c.params, 24 + 1 + 4);
        assert_eq!(c.dtypes[&StorageDType::F8E4M3], 24);
        assert_eq!(c.dominant_dtype, StorageDType::F8E4M3);
        assert_eq!(c.scaled_fp8, Some(StorageDType::F8E4M3));
    }

    #[test]
    fn dominant_prefers_floats_over_more_integers() {
        let mut h = BTreeMap::new();
        h.insert(StorageDType::I64, 1000);
        h.insert(StorageDType::F16, 10);
        h.insert(StorageDType::BF16, 10);
        assert_eq!(dominant(&h), StorageDType::F16);
    }
}
