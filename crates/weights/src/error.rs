//! `WeightsError`: every way opening or reading a checkpoint file can fail, each naming the file
//! (and the tensor where one is involved).

use std::path::PathBuf;

use crate::StorageDType;

/// An error from opening or reading a weight file.
///
/// Every variant names the file; variants about one tensor also name the tensor. Messages are one
/// line. Callers decide by matching variants, never by message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// The operating system failed to open, stat or map the file.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The path is a directory (a diffusers folder is opened by `kiln-detect`, not here).
    #[error("{}: is a directory, not a weight file", file.display())]
    IsADirectory {
        /// The directory.
        file: PathBuf,
    },

    /// The file has no bytes at all.
    #[error("{}: file is empty", file.display())]
    EmptyFile {
        /// The file.
        file: PathBuf,
    },

    /// The file ends before a structure it declares.
    #[error("{}: truncated: {what} needs {needed} bytes but only {available} are there", file.display())]
    Truncated {
        /// The file.
        file: PathBuf,
        /// What was being read (`"safetensors header"`, `"storage data/3"`, …).
        what: String,
        /// Bytes the structure needs.
        needed: u64,
        /// Bytes actually available.
        available: u64,
    },

    /// The content matches none of the supported formats.
    #[error(
        "{}: unknown format: not safetensors, a PyTorch checkpoint or GGUF (first bytes {first_bytes:02x?})",
        file.display()
    )]
    UnknownFormat {
        /// The file.
        file: PathBuf,
        /// Up to the first 8 bytes, for diagnosis.
        first_bytes: Vec<u8>,
    },

    /// A safetensors header length beyond any sane header.
    #[error("{}: safetensors header claims {header_len} bytes, more than the {limit}-byte limit", file.display())]
    HeaderTooLarge {
        /// The file.
        file: PathBuf,
        /// The length the file claims.
        header_len: u64,
        /// The largest header accepted.
        limit: u64,
    },

    /// The safetensors header is not UTF-8 JSON of the expected shape.
    #[error("{}: safetensors header is not valid: {reason}", file.display())]
    HeaderNotJson {
        /// The file.
        file: PathBuf,
        /// What the JSON parser said.
        reason: String,
    },

    /// Two tensors share one name.
    #[error("{}: tensor `{tensor}` appears more than once", file.display())]
    DuplicateTensor {
        /// The file.
        file: PathBuf,
        /// The repeated name.
        tensor: String,
    },

    /// A dtype string or storage type that Kiln does not know.
    #[error("{}: tensor `{tensor}` has unknown dtype `{dtype}`", file.display())]
    UnknownDType {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// The dtype as written in the file.
        dtype: String,
    },

    /// The product of a tensor's dimensions (or its byte size) does not fit in 64 bits.
    #[error("{}: tensor `{tensor}` has a shape {shape:?} whose size overflows", file.display())]
    ShapeOverflow {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// The shape as written.
        shape: Vec<u64>,
    },

    /// A tensor's byte range is reversed or reaches past the data it indexes.
    #[error(
        "{}: tensor `{tensor}` has byte range [{begin}, {end}) outside the {available} bytes of data",
        file.display()
    )]
    OffsetsOutOfRange {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// First byte, relative to the data section or storage.
        begin: u64,
        /// One past the last byte.
        end: u64,
        /// Bytes in the data section or storage.
        available: u64,
    },

    /// Two tensors' byte ranges overlap.
    #[error("{}: tensors `{tensor}` and `{other}` overlap in the data section", file.display())]
    OverlappingTensors {
        /// The file.
        file: PathBuf,
        /// One tensor.
        tensor: String,
        /// The tensor it overlaps.
        other: String,
    },

    /// A tensor's byte range does not match its element count times element size.
    #[error(
        "{}: tensor `{tensor}` has {actual} bytes but its dtype and shape need {expected}",
        file.display()
    )]
    ByteLengthMismatch {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// Bytes dtype × shape require.
        expected: u64,
        /// Bytes the file gives it.
        actual: u64,
    },

    /// A pickle names a global outside the allow-list; nothing was called.
    #[error("{}: refused to load: pickle references `{global}`, which is not on the allow-list", file.display())]
    PickleRefused {
        /// The file.
        file: PathBuf,
        /// `module.name` of the refused global.
        global: String,
    },

    /// A pickle is malformed, or uses something the reader does not interpret.
    #[error("{}: bad pickle: {reason}", file.display())]
    Pickle {
        /// The file.
        file: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The zip container of a PyTorch checkpoint is malformed.
    #[error("{}: bad PyTorch zip archive: {reason}", file.display())]
    Zip {
        /// The file.
        file: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// A GGUF file is malformed.
    #[error("{}: bad GGUF file: {reason}", file.display())]
    Gguf {
        /// The file.
        file: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// No tensor of that name in the file.
    #[error("{}: no tensor named `{tensor}`", file.display())]
    TensorMissing {
        /// The file.
        file: PathBuf,
        /// The name asked for.
        tensor: String,
    },

    /// The operation cannot produce or read this storage dtype.
    #[error("{}: tensor `{tensor}` is stored as {dtype}, which this operation does not support", file.display())]
    UnsupportedDType {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its storage dtype.
        dtype: StorageDType,
    },

    /// A candle operation failed while building a tensor.
    #[error("{}: tensor `{tensor}`: {source}", file.display())]
    Candle {
        /// The file.
        file: PathBuf,
        /// The tensor.
        tensor: String,
        /// candle's error (boxed: it is large and this variant is rare).
        #[source]
        source: Box<candle_core::Error>,
    },
}
