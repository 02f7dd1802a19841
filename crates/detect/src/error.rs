//! The one error type of `kiln-detect`: what could not be opened, recognised or supported, and where.

use std::path::PathBuf;

use kiln_weights::WeightsError;

use crate::{ComponentKind, KeyTransform};

/// Why a checkpoint could not be opened or detected.
///
/// `file` fields name the file, or for a sharded diffusers component its folder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// A weight file could not be opened or parsed (the reader's message names the file).
    #[error("{source}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        #[source]
        source: WeightsError,
    },
    /// A file or folder could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A diffusers JSON file (`model_index.json`, `config.json`, a shard index) is not valid JSON.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A folder is not a diffusers pipeline or component folder Kiln can read.
    #[error("{}: not a usable diffusers folder: {reason}", path.display())]
    DiffusersFolder {
        /// The folder.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is a LoRA (or another adapter), not a checkpoint.
    #[error(
        "{}: this is a LoRA ({style}: {lora_keys} of {total_keys} tensors), not a checkpoint; \
         load it with a LoRA loader on top of a checkpoint",
        file.display()
    )]
    Lora {
        /// The file.
        file: PathBuf,
        /// Which LoRA key style was seen (`kohya lora_unet_/lora_te_`, `PEFT lora_A/lora_B`, …).
        style: String,
        /// How many tensors look like LoRA tensors.
        lora_keys: usize,
        /// How many tensors the file holds.
        total_keys: usize,
    },
    /// No supported model could be recognised.
    #[error(
        "{}: unrecognised model; recognised: {}; not recognised: {unrecognised_summary}",
        file.display(),
        if recognised.is_empty() { "nothing".to_string() } else { recognised.join("; ") }
    )]
    Unrecognised {
        /// The file (or folder).
        file: PathBuf,
        /// What was recognised, each as a short sentence.
        recognised: Vec<String>,
        /// A summary of the keys that were not recognised (count and top prefixes).
        unrecognised_summary: String,
    },
    /// The model was recognised but Kiln does not support it.
    #[error("{}: {model} is not supported: {reason}", file.display())]
    Unsupported {
        /// The file.
        file: PathBuf,
        /// The recognised model.
        model: String,
        /// Why it is not supported.
        reason: String,
    },
    /// A tensor that the recognised layout requires is absent.
    #[error("{}: {component} is missing tensor `{tensor}`", file.display())]
    MissingTensor {
        /// The file.
        file: PathBuf,
        /// The recognised layout (`LDM UNet`, `BFL Flux`, …).
        component: &'static str,
        /// The tensor's name in the file.
        tensor: String,
    },
    /// A tensor has a shape that the recognised layout cannot use.
    #[error("{}: tensor `{tensor}` of {component} has shape {shape:?}: {expected}", file.display())]
    BadShape {
        /// The file.
        file: PathBuf,
        /// The recognised layout.
        component: &'static str,
        /// The tensor's name in the file.
        tensor: String,
        /// Its stored shape.
        shape: Vec<u64>,
        /// What was expected instead.
        expected: &'static str,
    },
    /// Two parts of one checkpoint hold the same component.
    #[error("two {kind} components: {first} and {second}")]
    DuplicateComponent {
        /// The component kind found twice.
        kind: ComponentKind,
        /// Where the first was found (file and prefix).
        first: String,
        /// Where the second was found.
        second: String,
    },
    /// Two shards of one component hold a tensor of the same name.
    #[error("{}: tensor `{tensor}` is stored in more than one shard", file.display())]
    DuplicateTensor {
        /// The component folder.
        file: PathBuf,
        /// The tensor name.
        tensor: String,
    },
    /// A component or internal tensor was asked for that the detection does not have.
    #[error("no `{internal}` in the {kind} key map")]
    NotInKeyMap {
        /// The component asked for.
        kind: ComponentKind,
        /// The internal name asked for.
        internal: String,
    },
    /// A key-map source's stored shapes or values do not fit its transform.
    #[error("{}: `{tensor}` cannot be read through {transform:?} from stored shapes {shapes:?}", file.display())]
    TransformMismatch {
        /// The (first) file read.
        file: PathBuf,
        /// The (first) stored tensor.
        tensor: String,
        /// The transform.
        transform: KeyTransform,
        /// The stored shapes of every source.
        shapes: Vec<Vec<u64>>,
    },
    /// `detect` was called with no files.
    #[error("no files to detect")]
    NoFiles,
}
