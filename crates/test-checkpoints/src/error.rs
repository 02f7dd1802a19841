//! The crate's error type.

use std::path::PathBuf;

use crate::CheckpointSpec;

/// Everything that can go wrong while writing a test checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The family/storage/packaging/size combination is not one this crate writes.
    #[error("unsupported checkpoint combination: {spec}")]
    UnsupportedCombination {
        /// The rejected spec.
        spec: CheckpointSpec,
    },
    /// Creating a directory or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The `safetensors` serializer failed.
    #[error("safetensors error writing {path}: {source}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: safetensors::SafeTensorError,
    },
    /// The zip writer failed while writing a `.ckpt`.
    #[error("zip error writing {path}: {source}")]
    Zip {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: zip::result::ZipError,
    },
    /// candle failed to quantise a tensor or to write the GGUF file.
    #[error("GGUF error writing {path} (tensor {tensor:?}): {source}")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// The tensor being quantised (empty while writing the file).
        tensor: String,
        /// The underlying error (boxed: candle's error is large).
        source: Box<candle_core::Error>,
    },
    /// A JSON side file could not be serialised.
    #[error("JSON error writing {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
}
