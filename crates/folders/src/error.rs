//! The crate's one error type, [`FoldersError`].

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while building a folder layout or looking a model up in it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FoldersError {
    /// No `--base-directory` was given and the current directory cannot be read.
    #[error("cannot use the current directory as the base directory: {source}")]
    CurrentDirectory {
        /// What the operating system said.
        source: io::Error,
    },

    /// An `extra_model_paths.yaml` file could not be read.
    #[error("cannot read extra model paths file {}: {source}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },

    /// An `extra_model_paths.yaml` file is not valid YAML or does not have ComfyUI's shape
    /// (sections of `base_path`, `is_default` and `folder_key: path` entries).
    #[error("invalid extra model paths file {}: {reason}", path.display())]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending text, where the YAML parser knows it.
        line: Option<usize>,
        /// 1-based column of the offending text, where the YAML parser knows it.
        column: Option<usize>,
        /// What is wrong, with its position.
        reason: String,
    },

    /// The folder key is neither one of ComfyUI's nor one added by an extra model paths file.
    #[error("unknown model folder `{key}`")]
    UnknownFolderKey {
        /// The key as asked for.
        key: String,
    },

    /// A model name that would leave its folder: absolute, or containing `..`.
    #[error("model name `{name}` for folder `{key}` must be a relative path inside the folder")]
    UnsafeModelName {
        /// The folder key.
        key: String,
        /// The name as asked for.
        name: String,
    },

    /// No search path of the folder holds the model.
    #[error(
        "model `{name}` not found in folder `{key}` (searched {})",
        display_paths(searched)
    )]
    ModelNotFound {
        /// The folder key.
        key: String,
        /// The name as asked for.
        name: String,
        /// Every search path of the folder, in search order.
        searched: Vec<PathBuf>,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "no paths".to_owned();
    }
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FoldersError {
    /// Wraps a YAML error of `path`, keeping its line and column.
    pub(crate) fn invalid_config(path: PathBuf, error: &serde_yaml_ng::Error) -> FoldersError {
        let location = error.location();
        let mut reason = error.to_string();
        // serde_yaml_ng leaves the position out of its message when it is the very first
        // character; the user still needs it.
        if let Some(location) = &location {
            if !reason.contains(" at line ") {
                reason.push_str(&format!(
                    " at line {} column {}",
                    location.line(),
                    location.column()
                ));
            }
        }
        FoldersError::InvalidConfig {
            path,
            line: location.as_ref().map(|location| location.line()),
            column: location.as_ref().map(|location| location.column()),
            reason,
        }
    }
}
