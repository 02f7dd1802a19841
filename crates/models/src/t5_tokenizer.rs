//! The T5 tokenizer as ComfyUI runs it for Flux and SD3 (`T5XXLTokenizer`, an `SDTokenizer` over
//! `transformers`' `T5TokenizerFast`): a Hugging Face `tokenizer.json` (Unigram vocabulary) read
//! with the `tokenizers` crate, ComfyUI's prompt weights, no start token, `</s>` (1) at the end,
//! `<pad>` (0) up to the minimum length (256 for Flux, 77 for SD3) and no window limit.
//!
//! Users do not have T5's `tokenizer.json` (ComfyUI ships it inside its source), so
//! [`T5Tokenizer::locate`] searches the folders a caller names, and [`t5_tokenizer_search_dirs`]
//! adds the Hugging Face cache snapshots of the Flux and SD3 repositories.

use std::path::{Path, PathBuf};

use crate::clip_tokenizer::split_embeddings;
use crate::error::ModelError;
use crate::prompt_weights::parse_prompt_weights;
use crate::t5::{T5Token, T5_END_TOKEN, T5_PAD_TOKEN};

/// ComfyUI's `FluxTokenizer` T5 minimum length.
pub const FLUX_T5_MIN_LENGTH: usize = 256;
/// ComfyUI's `SD3Tokenizer` T5 minimum length.
pub const SD3_T5_MIN_LENGTH: usize = 77;
/// Rows of T5-XXL's token table: a vocabulary id must be below this.
pub const T5_VOCAB_ROWS: usize = 32128;
/// The folder ComfyUI keeps the tokenizer in (`comfy/text_encoders/t5_tokenizer`).
pub const T5_TOKENIZER_FOLDER: &str = "t5_tokenizer";

/// Hugging Face cache repositories whose snapshots carry T5's `tokenizer.json`, and the
/// subfolder it is in.
const HF_REPOS: [(&str, &str); 7] = [
    ("models--black-forest-labs--FLUX.1-schnell", "tokenizer_2"),
    ("models--black-forest-labs--FLUX.1-dev", "tokenizer_2"),
    (
        "models--stabilityai--stable-diffusion-3-medium-diffusers",
        "tokenizer_3",
    ),
    (
        "models--stabilityai--stable-diffusion-3.5-medium",
        "tokenizer_3",
    ),
    (
        "models--stabilityai--stable-diffusion-3.5-large",
        "tokenizer_3",
    ),
    (
        "models--stabilityai--stable-diffusion-3.5-large-turbo",
        "tokenizer_3",
    ),
    (
        "models--stabilityai--stable-diffusion-3-medium",
        "tokenizer_3",
    ),
];

/// What went wrong finding, reading or using a T5 tokenizer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum T5TokenizerError {
    /// No T5 `tokenizer.json` in any searched place.
    #[error(
        "no T5 tokenizer.json found; looked at:\n{}{}\nPut ComfyUI's \
         comfy/text_encoders/t5_tokenizer/tokenizer.json (or tokenizer_2/tokenizer.json of the \
         FLUX.1 repository) at {}",
        list_paths(searched),
        list_rejected(rejected),
        suggestion.display()
    )]
    NotFound {
        /// Every path looked at, in order.
        searched: Vec<PathBuf>,
        /// Files that exist but are not T5 tokenizers, with the reason.
        rejected: Vec<(PathBuf, String)>,
        /// Where the file would be found.
        suggestion: PathBuf,
    },
    /// The file could not be read.
    #[error("cannot read T5 tokenizer {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a tokenizer the `tokenizers` library can load.
    #[error("{path} is not a valid tokenizer.json: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// The file is a tokenizer, but not T5's Unigram vocabulary.
    #[error("{path} is not a T5 tokenizer: {reason}")]
    NotT5 {
        /// The file.
        path: PathBuf,
        /// What differs from T5.
        reason: String,
    },
    /// Text could not be encoded.
    #[error("T5 tokenizer {path}: cannot encode text: {reason}")]
    Encode {
        /// The tokenizer file.
        path: PathBuf,
        /// The library's message.
        reason: String,
    },
    /// The prompt's weight syntax could not be parsed.
    #[error(transparent)]
    Prompt(Box<ModelError>),
}

impl From<ModelError> for T5TokenizerError {
    fn from(error: ModelError) -> Self {
        T5TokenizerError::Prompt(Box::new(error))
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| format!("  {}", p.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn list_rejected(rejected: &[(PathBuf, String)]) -> String {
    rejected
        .iter()
        .map(|(p, why)| format!("\n  rejected {}: {why}", p.display()))
        .collect()
}

/// A loaded T5 tokenizer.
#[derive(Debug, Clone)]
pub struct T5Tokenizer {
    tokenizer: tokenizers::Tokenizer,
    path: PathBuf,
}

impl T5Tokenizer {
    /// Loads and checks the `tokenizer.json` at `path`: a Unigram model with `<pad>` = 0,
    /// `</s>` = 1, `<unk>` = 2, every id below 32128, and `""` encoding to `[</s>]`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, T5TokenizerError> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| T5TokenizerError::Read {
            path: path.clone(),
            source,
        })?;
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| T5TokenizerError::Parse {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let not_t5 = |path: &Path, reason: String| T5TokenizerError::NotT5 {
            path: path.to_path_buf(),
            reason,
        };
        let model_type = json
            .get("model")
            .and_then(|m| m.get("type"))
            .and_then(|t| t.as_str())
            .unwrap_or("none");
        if model_type != "Unigram" {
            return Err(not_t5(
                &path,
                format!("its model is {model_type}, T5 uses a Unigram vocabulary"),
            ));
        }
        let tokenizer =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| T5TokenizerError::Parse {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        for (token, id) in [
            ("<pad>", T5_PAD_TOKEN),
            ("</s>", T5_END_TOKEN),
            ("<unk>", 2),
        ] {
            let found = tokenizer.token_to_id(token);
            if found != Some(id) {
                return Err(not_t5(
                    &path,
                    format!("`{token}` has id {found:?}, T5's is {id}"),
                ));
            }
        }
        let size = tokenizer.get_vocab_size(true);
        if size > T5_VOCAB_ROWS {
            return Err(not_t5(
                &path,
                format!("{size} tokens, more than T5's {T5_VOCAB_ROWS}-row table"),
            ));
        }
        let checked = T5Tokenizer { tokenizer, path };
        let empty = checked.encode_with_end("")?;
        if empty != [T5_END_TOKEN] {
            return Err(not_t5(
                &checked.path,
                format!("the empty text encodes to {empty:?}, T5's is [1] (`</s>` appended)"),
            ));
        }
        Ok(checked)
    }

    /// The first T5 tokenizer in `search_dirs`: for each folder in order,
    /// `<dir>/t5_tokenizer/tokenizer.json`, then `<dir>/tokenizer.json` when it is a T5
    /// tokenizer (other tokenizers there, such as CLIP's, are passed over).
    pub fn locate(search_dirs: &[PathBuf]) -> Result<PathBuf, T5TokenizerError> {
        let mut searched = Vec::new();
        let mut rejected = Vec::new();
        for dir in search_dirs {
            for candidate in [
                dir.join(T5_TOKENIZER_FOLDER).join("tokenizer.json"),
                dir.join("tokenizer.json"),
            ] {
                searched.push(candidate.clone());
                if !candidate.is_file() {
                    continue;
                }
                match T5Tokenizer::from_file(&candidate) {
                    Ok(_) => return Ok(candidate),
                    Err(error) => rejected.push((candidate, error.to_string())),
                }
            }
        }
        let suggestion = search_dirs
            .first()
            .map(|d| d.join(T5_TOKENIZER_FOLDER).join("tokenizer.json"))
            .unwrap_or_else(|| PathBuf::from("models/text_encoders/t5_tokenizer/tokenizer.json"));
        Err(T5TokenizerError::NotFound {
            searched,
            rejected,
            suggestion,
        })
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `text` as ComfyUI's `T5XXLTokenizer.tokenize_with_weights` returns it (one window):
    /// each weighted segment (split again before ` embedding:`, embeddings being disabled)
    /// encoded on its own without its `</s>`, then `</s>`, then `<pad>` up to `min_length`
    /// ([`FLUX_T5_MIN_LENGTH`] or [`SD3_T5_MIN_LENGTH`]). Longer prompts are not cut.
    pub fn tokenize(
        &self,
        text: &str,
        min_length: usize,
    ) -> Result<Vec<T5Token>, T5TokenizerError> {
        let mut tokens = Vec::new();
        for (segment, weight) in parse_prompt_weights(text)? {
            for word in split_embeddings(&segment) {
                let ids = self.encode_with_end(&word)?;
                // ComfyUI drops the last id (the `</s>` the template appends).
                let without_end = &ids[..ids.len().saturating_sub(1)];
                tokens.extend(without_end.iter().map(|&id| T5Token { id, weight }));
            }
        }
        tokens.push(T5Token {
            id: T5_END_TOKEN,
            weight: 1.0,
        });
        if tokens.len() < min_length {
            tokens.resize(
                min_length,
                T5Token {
                    id: T5_PAD_TOKEN,
                    weight: 1.0,
                },
            );
        }
        Ok(tokens)
    }

    /// `transformers` `tokenizer(text)["input_ids"]`: the ids with the template's `</s>`.
    fn encode_with_end(&self, text: &str) -> Result<Vec<u32>, T5TokenizerError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| T5TokenizerError::Encode {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        Ok(encoding.get_ids().to_vec())
    }
}

/// `extra` followed by the T5 tokenizer folders of the Hugging Face cache (`$HF_HUB_CACHE`, else
/// `$HF_HOME/hub`, else `~/.cache/huggingface/hub`): every snapshot of FLUX.1-schnell/-dev
/// (`tokenizer_2`) and of the SD3/SD3.5 repositories (`tokenizer_3`) that exists.
pub fn t5_tokenizer_search_dirs(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = extra.to_vec();
    let Some(hub) = hf_hub_cache() else {
        return dirs;
    };
    for (repo, subfolder) in HF_REPOS {
        let Ok(entries) = std::fs::read_dir(hub.join(repo).join("snapshots")) else {
            continue;
        };
        let mut snapshots: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path().join(subfolder)))
            .filter(|dir| dir.is_dir())
            .collect();
        snapshots.sort();
        dirs.extend(snapshots);
    }
    dirs
}

fn hf_hub_cache() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(cache) = non_empty("HF_HUB_CACHE") {
        return Some(PathBuf::from(cache));
    }
    if let Some(home) = non_empty("HF_HOME") {
        return Some(PathBuf::from(home).join("hub"));
    }
    non_empty("HOME")
        .or_else(|| non_empty("USERPROFILE"))
        .map(|home| PathBuf::from(home).join(".cache/huggingface/hub"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_words_split_like_python() {
        assert_eq!(split_embeddings("a embedding:x b"), ["a", "embedding:x b"]);
        assert_eq!(split_embeddings("embedding:x"), ["embedding:x"]);
        assert_eq!(
            split_embeddings(" embedding:x\nembedding:y"),
            ["embedding:x", "embedding:y"]
        );
        assert!(split_embeddings("").is_empty());
    }
}
