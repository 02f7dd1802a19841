//! Textual-inversion embeddings (`embedding:name` in a prompt): the [`EmbeddingSource`] the
//! tokenizer asks, and [`EmbeddingFolder`], which finds and reads files as ComfyUI's
//! `comfy/sd1_clip.py: load_embed` does.
//!
//! Key choice per file, in ComfyUI's order: a `string_to_param` entry (A1111 `.pt`), the text
//! encoder's own key (`clip_l`, `clip_g`, `clip_h`: SDXL embeddings carry one per encoder),
//! `bundle_emb.*.string_to_param.*` or `bundle_emb.*.<key>` (embeddings bundled in a LoRA), else
//! the first tensor (`emb_params` of safetensors embeddings).

use std::path::{Component, Path, PathBuf};

use kiln_weights::WeightFile;

use crate::error::{ModelError, Result};

/// The vectors of one embedding: `rows` token vectors of `width` values.
#[derive(Debug, Clone, PartialEq)]
pub struct TextualInversion {
    /// Values, row after row.
    pub values: Vec<f32>,
    /// Values per row (the text encoder's width when it fits).
    pub width: usize,
}

impl TextualInversion {
    /// Number of token vectors.
    pub fn rows(&self) -> usize {
        self.values.len().checked_div(self.width).unwrap_or(0)
    }

    /// Row `index`.
    pub fn row(&self, index: usize) -> Option<&[f32]> {
        let start = index.checked_mul(self.width)?;
        self.values.get(start..start.checked_add(self.width)?)
    }
}

/// Where the tokenizer gets `embedding:name` vectors from.
pub trait EmbeddingSource {
    /// The embedding `name` for the text encoder whose embedding key is `key` (`clip_l`,
    /// `clip_g`, `clip_h`) and whose width is `width`; `Ok(None)` when there is no such
    /// embedding. An `Err` is reported as a warning and the embedding skipped, as ComfyUI does.
    fn load(&self, name: &str, key: &str, width: usize) -> Result<Option<TextualInversion>>;
}

/// Embedding files under one or more folders (ComfyUI's `embeddings` folder key), searched with
/// their subfolders.
#[derive(Debug, Clone)]
pub struct EmbeddingFolder {
    roots: Vec<PathBuf>,
}

/// Extensions tried after the bare name, in ComfyUI's order.
const EXTENSIONS: [&str; 3] = [".safetensors", ".pt", ".bin"];

impl EmbeddingFolder {
    /// The folders to search (each with its subfolders).
    pub fn new(roots: impl IntoIterator<Item = PathBuf>) -> Self {
        EmbeddingFolder {
            roots: roots.into_iter().collect(),
        }
    }

    /// Every folder searched: the roots and all folders below them, sorted (ComfyUI walks them in
    /// hash order; sorted is the deterministic choice).
    fn folders(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        // Canonical paths already walked: a symlink back up the tree must not loop forever.
        let mut visited = std::collections::BTreeSet::new();
        let mut pending: Vec<PathBuf> = self.roots.clone();
        while let Some(dir) = pending.pop() {
            let canonical = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
            if !visited.insert(canonical) {
                continue;
            }
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    // `is_dir` follows symlinks, as ComfyUI's `os.walk(followlinks=True)`.
                    if path.is_dir() {
                        pending.push(path);
                    }
                }
            }
            found.push(dir);
        }
        found.sort();
        found
    }

    /// The file `name` refers to: `name` itself or `name` plus an extension, inside a searched
    /// folder (names that climb out of the folder with `..` are ignored).
    pub fn resolve(&self, name: &str) -> Option<PathBuf> {
        for dir in self.folders() {
            let dir = lexical_absolute(&dir);
            let candidate = lexical_absolute(&dir.join(name));
            if !candidate.starts_with(&dir) {
                continue;
            }
            if candidate.is_file() {
                return Some(candidate);
            }
            for extension in EXTENSIONS {
                let mut with_extension = candidate.clone().into_os_string();
                with_extension.push(extension);
                let path = PathBuf::from(with_extension);
                if path.is_file() {
                    return Some(path);
                }
            }
        }
        None
    }
}

/// `os.path.abspath`: absolute and with `.`/`..` resolved lexically (no symlinks followed).
fn lexical_absolute(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl EmbeddingSource for EmbeddingFolder {
    fn load(&self, name: &str, key: &str, width: usize) -> Result<Option<TextualInversion>> {
        let Some(path) = self.resolve(name) else {
            return Ok(None);
        };
        let file = WeightFile::open(&path).map_err(|source| embedding_error(name, source))?;
        read_embedding(&file, name, key, width).map(Some)
    }
}

/// A broken embedding file, named.
fn embedding_error(name: &str, reason: impl std::fmt::Display) -> ModelError {
    ModelError::Input {
        model: "textual inversion",
        input: "embedding",
        problem: format!("`{name}`: {reason}"),
    }
}

/// The embedding vectors in an opened file (see the module docs for the key order).
pub fn read_embedding(
    file: &WeightFile,
    name: &str,
    key: &str,
    width: usize,
) -> Result<TextualInversion> {
    let names: Vec<&str> = file.tensors().iter().map(|t| t.name.as_str()).collect();
    let bundled = |suffix: &str| -> Vec<&str> {
        names
            .iter()
            .copied()
            .filter(|n| n.starts_with("bundle_emb.") && n.ends_with(suffix))
            .collect()
    };
    let chosen: Vec<&str> = if let Some(first) = names
        .iter()
        .copied()
        .find(|n| n.starts_with("string_to_param."))
    {
        vec![first]
    } else if names.contains(&key) {
        vec![key]
    } else {
        let by_param = bundled(".string_to_param.*");
        if !by_param.is_empty() {
            by_param
        } else {
            let by_key = bundled(&format!(".{key}"));
            if !by_key.is_empty() {
                by_key
            } else {
                names.first().copied().into_iter().collect()
            }
        }
    };
    let error = |reason: String| embedding_error(name, reason);
    if chosen.is_empty() {
        return Err(error(format!(
            "{} holds no tensors (a nested `.pt` dict is not readable yet)",
            file.path().display()
        )));
    }
    let mut values = Vec::new();
    let mut row_width = None;
    for tensor in chosen {
        let info = file
            .get(tensor)
            .ok_or_else(|| error(format!("tensor `{tensor}` vanished")))?;
        let last = info.shape.last().copied().unwrap_or(1);
        if last == 0 {
            return Err(error(format!("tensor `{tensor}` is empty")));
        }
        if row_width.is_some_and(|w| w != last) {
            return Err(error(format!(
                "bundled tensors have different widths ({last} vs {row_width:?})"
            )));
        }
        row_width = Some(last);
        let data = file
            .to_f32_vec(tensor)
            .map_err(|source| error(source.to_string()))?;
        values.extend(data);
    }
    let width_found = row_width.unwrap_or(width);
    Ok(TextualInversion {
        values,
        width: width_found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
        let data: HashMap<String, candle_core::Tensor> = tensors
            .iter()
            .map(|(name, shape, values)| {
                (
                    name.to_string(),
                    candle_core::Tensor::from_vec(
                        values.clone(),
                        shape.as_slice(),
                        &candle_core::Device::Cpu,
                    )
                    .unwrap(),
                )
            })
            .collect();
        candle_core::safetensors::save(&data, path).unwrap();
    }

    #[test]
    fn finds_files_with_extensions_in_subfolders_and_picks_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        write_safetensors(
            &dir.path().join("sub/sdxl_style.safetensors"),
            &[
                ("clip_g", vec![2, 4], vec![1.0; 8]),
                ("clip_l", vec![2, 3], vec![2.0; 6]),
            ],
        );
        write_safetensors(
            &dir.path().join("plain.safetensors"),
            &[("emb_params", vec![1, 3], vec![0.5, 0.25, 0.125])],
        );
        let folder = EmbeddingFolder::new([dir.path().to_path_buf()]);
        let g = folder.load("sdxl_style", "clip_g", 4).unwrap().unwrap();
        assert_eq!((g.rows(), g.width), (2, 4));
        let l = folder.load("sdxl_style", "clip_l", 3).unwrap().unwrap();
        assert_eq!(l.row(1), Some(&[2.0f32, 2.0, 2.0][..]));
        let plain = folder.load("plain", "clip_l", 3).unwrap().unwrap();
        assert_eq!(plain.values, vec![0.5, 0.25, 0.125]);
        assert!(folder.load("missing", "clip_l", 3).unwrap().is_none());
        assert!(folder.resolve("../plain").is_none());
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_end() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("a/up")).unwrap();
        let folder = EmbeddingFolder::new([dir.path().to_path_buf()]);
        assert!(folder.resolve("nothing").is_none());
        assert_eq!(folder.folders().len(), 2);
    }
}
