//! The typed values of ComfyUI's flags: its choice lists (`--preview-method`, `--verbose`,
//! `--fast`, `--default-hashing-function`) and the parsers that validate a value as it is typed.

use std::fs;
use std::io;
use std::path::PathBuf;

use clap::ValueEnum;
use serde::Serialize;

/// `--preview-method` (ComfyUI's `LatentPreviewMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PreviewMethod {
    /// `none`, the default: no previews.
    #[default]
    #[value(name = "none")]
    NoPreviews,
    /// `auto`: ComfyUI picks latent2rgb (taesd when its decoder is present).
    Auto,
    /// `latent2rgb`: a linear projection of the latent, very cheap.
    Latent2rgb,
    /// `taesd`: the tiny autoencoder.
    Taesd,
}

/// `--verbose [LEVEL]`: Python's logging level names, upper case as ComfyUI spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, ValueEnum, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// `DEBUG`, what a bare `--verbose` means.
    #[value(name = "DEBUG")]
    Debug,
    /// `INFO`, the default.
    #[default]
    #[value(name = "INFO")]
    Info,
    /// `WARNING`.
    #[value(name = "WARNING")]
    Warning,
    /// `ERROR`.
    #[value(name = "ERROR")]
    Error,
    /// `CRITICAL` (tracing has no such level; shown as errors).
    #[value(name = "CRITICAL")]
    Critical,
}

impl LogLevel {
    /// The tracing filter with the same meaning.
    pub fn level_filter(self) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        match self {
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warning => LevelFilter::WARN,
            LogLevel::Error | LogLevel::Critical => LevelFilter::ERROR,
        }
    }
}

/// One `--fast` feature (ComfyUI's `PerformanceFeature`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FastFeature {
    /// `fp16_accumulation`.
    #[value(name = "fp16_accumulation")]
    Fp16Accumulation,
    /// `fp8_matrix_mult`.
    #[value(name = "fp8_matrix_mult")]
    Fp8MatrixMult,
    /// `cublas_ops`.
    #[value(name = "cublas_ops")]
    CublasOps,
    /// `autotune`.
    #[value(name = "autotune")]
    Autotune,
}

/// `--default-hashing-function`: how uploads are compared with existing files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HashingFunction {
    /// `md5`.
    Md5,
    /// `sha1`.
    Sha1,
    /// `sha256`, the default.
    #[default]
    Sha256,
    /// `sha512`.
    Sha512,
}

/// ComfyUI's `is_valid_directory` (used by `--user-directory` and `--front-end-root`): the
/// path must exist, be a directory and be readable, with ComfyUI's messages.
pub(crate) fn existing_directory(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if !path.exists() {
        return Err(format!("The path '{text}' does not exist."));
    }
    if !path.is_dir() {
        return Err(format!("'{text}' is not a directory."));
    }
    match fs::read_dir(&path) {
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
            Err(format!("You do not have read permissions for '{text}'."))
        }
        Err(error) => Err(format!("cannot read '{text}': {error}")),
        Ok(_) => Ok(path),
    }
}

/// A size or amount typed as a Python float (`--reserve-vram 1.5`, `--max-upload-size 100`):
/// finite and not negative.
pub(crate) fn non_negative_number(text: &str) -> Result<f64, String> {
    let number: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number"))?;
    if !number.is_finite() || number < 0.0 {
        return Err(format!("'{text}' must be a finite number of at least 0"));
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_directory_uses_comfyui_messages() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file.txt");
        fs::write(&file, b"x").unwrap();
        let missing = dir.path().join("missing");
        let dir_text = dir.path().to_str().unwrap();
        assert_eq!(existing_directory(dir_text).unwrap(), dir.path());
        assert_eq!(
            existing_directory(missing.to_str().unwrap()).unwrap_err(),
            format!("The path '{}' does not exist.", missing.display())
        );
        assert_eq!(
            existing_directory(file.to_str().unwrap()).unwrap_err(),
            format!("'{}' is not a directory.", file.display())
        );
    }

    #[test]
    fn numbers_must_be_finite_and_not_negative() {
        assert_eq!(non_negative_number("1.5").unwrap(), 1.5);
        assert_eq!(non_negative_number("0").unwrap(), 0.0);
        assert_eq!(non_negative_number("100").unwrap(), 100.0);
        assert!(non_negative_number("-1").is_err());
        assert!(non_negative_number("nan").is_err());
        assert!(non_negative_number("inf").is_err());
        assert!(non_negative_number("lots").is_err());
    }

    #[test]
    fn log_levels_map_to_tracing() {
        use tracing::level_filters::LevelFilter;
        assert_eq!(LogLevel::Debug.level_filter(), LevelFilter::DEBUG);
        assert_eq!(LogLevel::Warning.level_filter(), LevelFilter::WARN);
        assert_eq!(LogLevel::Critical.level_filter(), LevelFilter::ERROR);
        assert_eq!(LogLevel::default(), LogLevel::Info);
    }
}
