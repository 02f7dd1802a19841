//! [`Checkpoint`]: a checkpoint file or diffusers folder opened and detected, and [`detect_file`]
//! for a file that is already open.

use std::path::{Path, PathBuf};

use kiln_weights::WeightFile;

use crate::diffusers_folder::{component_folders, is_diffusers_folder};
use crate::input::{FileTensors, TensorValues};
use crate::{detect, DetectError, Detection};

/// An opened checkpoint: its weight files (memory-mapped) and what detection found in them.
///
/// Key-map sources ([`KeySource::file`](crate::KeySource::file)) index [`Checkpoint::files`].
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    files: Vec<WeightFile>,
    detection: Detection,
}

impl Checkpoint {
    /// Opens and detects a checkpoint file (safetensors, PyTorch, GGUF) or a diffusers folder
    /// (a pipeline with `model_index.json`, or one component with `config.json`).
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint, DetectError> {
        let path = path.as_ref();
        if path.is_dir() && is_diffusers_folder(path) {
            return open_folder(path);
        }
        let file = open_weights(path)?;
        let detection = detect_file(&file)?;
        Ok(Checkpoint { path: path.to_path_buf(), files: vec![file], detection })
    }

    /// The file or folder that was opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The weight files, in the order key-map sources index them.
    pub fn files(&self) -> &[WeightFile] {
        &self.files
    }

    /// What detection found.
    pub fn detection(&self) -> &Detection {
        &self.detection
    }

    /// The files and the detection, for callers that keep them apart.
    pub fn into_parts(self) -> (Vec<WeightFile>, Detection) {
        (self.files, self.detection)
    }
}

/// Detects one opened weight file on its own.
pub fn detect_file(file: &WeightFile) -> Result<Detection, DetectError> {
    detect(&[FileTensors::new(file.path(), file.tensors()).with_metadata(file.metadata()).with_values(file)])
}

impl TensorValues for WeightFile {
    fn f32_values(&self, name: &str) -> Option<Vec<f32>> {
        self.to_f32_vec(name).ok()
    }
}

fn open_weights(path: &Path) -> Result<WeightFile, DetectError> {
    WeightFile::open(path).map_err(|source| DetectError::Weights { path: path.to_path_buf(), source })
}

fn open_folder(path: &Path) -> Result<Checkpoint, DetectError> {
    let folders = component_folders(path)?;
    let mut files = Vec::new();
    let mut owners = Vec::new();
    for (index, folder) in folders.iter().enumerate() {
        for weights in &folder.weights {
            files.push(open_weights(weights)?);
            owners.push(index);
        }
    }
    let inputs: Vec<FileTensors<'_>> = files
        .iter()
        .zip(&owners)
        .map(|(file, &owner)| {
            let folder = &folders[owner];
            let input = FileTensors::new(file.path(), file.tensors())
                .with_metadata(file.metadata())
                .with_group(&folder.dir)
                .with_values(file);
            match &folder.config {
                Some(config) => input.with_config(config),
                None => input,
            }
        })
        .collect();
    let detection = detect(&inputs)?;
    drop(inputs);
    Ok(Checkpoint { path: path.to_path_buf(), files, detection })
}
