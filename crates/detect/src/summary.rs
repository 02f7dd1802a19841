//! Describing what a file holds when nothing usable was recognised: tensor count, the most
//! common key prefixes and any architecture hints in the metadata.

use std::collections::BTreeMap;

use crate::state_dict::StateDict;

/// How many prefixes a summary names.
const TOP_PREFIXES: usize = 3;

/// Metadata keys that name an architecture (GGUF, safetensors modelspec, diffusers config).
const METADATA_HINTS: &[&str] = &["general.architecture", "modelspec.architecture"];

/// `N tensors; top prefixes: `a.` (n), …` plus any metadata hints.
pub(crate) fn summarise(sd: &StateDict<'_>) -> String {
    let mut by_first: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, _) in sd.iter() {
        *by_first.entry(first_segments(name, 1)).or_default() += 1;
    }
    // One top-level name for everything (`model.`) says little: look one level deeper.
    let depth = if by_first.len() == 1 { 2 } else { 1 };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, _) in sd.iter() {
        *counts.entry(first_segments(name, depth)).or_default() += 1;
    }
    let mut top: Vec<(&str, usize)> = counts.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let listed: Vec<String> = top
        .iter()
        .take(TOP_PREFIXES)
        .map(|(prefix, n)| format!("`{prefix}` ({n})"))
        .collect();
    let mut summary = format!("{} tensors; top prefixes: {}", sd.len(), listed.join(", "));
    for key in METADATA_HINTS {
        if let Some(value) = sd.metadata(key) {
            summary.push_str(&format!("; metadata {key} = {value:?}"));
        }
    }
    if let Some(class) = sd.config_class() {
        summary.push_str(&format!("; diffusers class {class}"));
    }
    summary
}

/// The first `n` dot-separated segments of `name`, with their trailing dot.
fn first_segments(name: &str, n: usize) -> &str {
    let mut end = 0;
    for _ in 0..n {
        match name[end..].find('.') {
            Some(dot) => end += dot + 1,
            None => return name,
        }
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_segments_keep_their_dot() {
        assert_eq!(first_segments("a.b.c", 1), "a.");
        assert_eq!(first_segments("a.b.c", 2), "a.b.");
        assert_eq!(first_segments("abc", 2), "abc");
    }
}
