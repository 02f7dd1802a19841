//! [`NodesError`]: every way a built-in node can fail, naming the input, file or tensor, and its
//! mapping onto the engine's [`NodeError`] (with ComfyUI's Python exception class names).

use std::path::PathBuf;

use kiln_graph::NodeError;

/// A built-in node failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodesError {
    /// An input value cannot be used (bad shape, out of range after arithmetic, wrong combo).
    #[error("input '{input}': {reason}")]
    InvalidInput {
        /// The input name.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A file named by an input does not exist.
    #[error("input '{input}': file not found: {}", path.display())]
    FileNotFound {
        /// The input that named it.
        input: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// An image file could not be decoded.
    #[error("input '{input}': cannot decode image {}: {reason}", path.display())]
    ImageDecode {
        /// The input that named it.
        input: String,
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// A PNG could not be encoded.
    #[error("cannot write PNG {}: {reason}", path.display())]
    PngEncode {
        /// The file.
        path: PathBuf,
        /// What the encoder said.
        reason: String,
    },
    /// A `filename_prefix` would save outside its folder (ComfyUI refuses the same).
    #[error(
        "Saving image outside the output folder is not allowed. full_output_folder: {}, output_dir: {}",
        folder.display(),
        output_dir.display()
    )]
    OutsideOutputFolder {
        /// Where the image would have gone.
        folder: PathBuf,
        /// The folder it must stay in.
        output_dir: PathBuf,
    },
    /// A model folder lookup failed.
    #[error("input '{input}': {source}")]
    Folder {
        /// The input naming the model.
        input: String,
        /// The folder crate's error.
        #[source]
        source: Box<kiln_folders::FoldersError>,
    },
    /// A checkpoint could not be detected.
    #[error("{}: {source}", path.display())]
    Detect {
        /// The file.
        path: PathBuf,
        /// The detector's error.
        #[source]
        source: Box<kiln_detect::DetectError>,
    },
    /// Planning or loading weights failed.
    #[error("{}: {source}", path.display())]
    Runtime {
        /// The file.
        path: PathBuf,
        /// The runtime's error.
        #[source]
        source: Box<kiln_runtime::RuntimeError>,
    },
    /// A model failed to build or run.
    #[error("{context}: {source}")]
    Model {
        /// What was being done.
        context: String,
        /// The model crate's error.
        #[source]
        source: Box<kiln_models::ModelError>,
    },
    /// Scheduling or sampling failed.
    #[error("{context}: {source}")]
    Sampling {
        /// What was being done.
        context: String,
        /// The sampling crate's error.
        #[source]
        source: Box<kiln_sampling::SamplingError>,
    },
    /// A tensor operation failed.
    #[error("tensor operation failed in {context}: {source}")]
    Tensor {
        /// What was being done.
        context: &'static str,
        /// The candle error.
        #[source]
        source: candle_core::Error,
    },
    /// A LoRA file cannot be applied.
    #[error("{node}: LoRA {}: {reason}", file.display())]
    Lora {
        /// The node class applying it.
        node: &'static str,
        /// The LoRA file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// The checkpoint lacks a part a node needs (a VAE-only file given to CheckpointLoader).
    #[error("{}: {what}", path.display())]
    MissingComponent {
        /// The file.
        path: PathBuf,
        /// What is missing, in words.
        what: String,
    },
    /// The engine asked to stop.
    #[error("Processing interrupted")]
    Interrupted,
}

impl NodesError {
    /// An [`NodesError::InvalidInput`].
    pub fn input(input: impl Into<String>, reason: impl Into<String>) -> Self {
        NodesError::InvalidInput {
            input: input.into(),
            reason: reason.into(),
        }
    }

    /// The ComfyUI exception class a client sees for this error.
    pub fn exception_type(&self) -> &'static str {
        match self {
            NodesError::InvalidInput { .. } | NodesError::Lora { .. } => "ValueError",
            NodesError::FileNotFound { .. } | NodesError::Folder { .. } => "FileNotFoundError",
            NodesError::Io { .. } => "OSError",
            NodesError::ImageDecode { .. } => "UnidentifiedImageError",
            NodesError::Interrupted => "InterruptProcessingException",
            _ => "RuntimeError",
        }
    }
}

impl From<NodesError> for NodeError {
    fn from(error: NodesError) -> Self {
        match error {
            NodesError::Interrupted => NodeError::Interrupted,
            NodesError::Sampling { source, .. }
                if matches!(*source, kiln_sampling::SamplingError::Interrupted { .. }) =>
            {
                NodeError::Interrupted
            }
            other => NodeError::Failed {
                exception_type: other.exception_type().to_owned(),
                message: other.to_string(),
                source: Some(Box::new(other)),
            },
        }
    }
}

/// Wraps candle errors with what was being done.
pub(crate) trait TensorContext<T> {
    /// Adds `context` to a candle error.
    fn context(self, context: &'static str) -> Result<T, NodesError>;
}

impl<T> TensorContext<T> for Result<T, candle_core::Error> {
    fn context(self, context: &'static str) -> Result<T, NodesError> {
        self.map_err(|source| NodesError::Tensor { context, source })
    }
}
