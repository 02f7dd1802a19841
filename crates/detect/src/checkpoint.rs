//! [`Checkpoint`]: a checkpoint file or diffusers folder opened and detected, and [`detect_file`]
//! for a file that is already open.

use std::path::{Path, PathBuf};

use kiln_weights::WeightFile;

use crate::diffusers_folder::component_folders;
use crate::input::{FileTensors, TensorValues};
use crate::state_dict::logical_shape;
use crate::{detect, ComponentKind, DetectError, Detection};

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
        if path.is_dir() {
            return open_folder(path);
        }
        let file = open_weights(path)?;
        let detection = detect_file(&file)?;
        Ok(Checkpoint {
            path: path.to_path_buf(),
            files: vec![file],
            detection,
        })
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

    /// Reads the internal tensor `internal` of component `kind` on the host as f32, through its
    /// key-map transform: its shape and row-major values. A reference for device loaders, and a
    /// check of a key map against the stored tensors.
    pub fn read_f32(
        &self,
        kind: ComponentKind,
        internal: &str,
    ) -> Result<(Vec<u64>, Vec<f32>), DetectError> {
        let missing = || DetectError::NotInKeyMap {
            kind,
            internal: internal.to_string(),
        };
        let source = self
            .detection
            .component(kind)
            .and_then(|c| c.keys.get(internal))
            .ok_or_else(missing)?;
        let mut parts = Vec::new();
        for (index, name) in source.tensors() {
            let file = self.files.get(index).ok_or_else(missing)?;
            let info = file.get(name).ok_or_else(missing)?;
            let values = file
                .to_f32_vec(name)
                .map_err(|source| DetectError::Weights {
                    path: file.path().to_path_buf(),
                    source,
                })?;
            parts.push((logical_shape(info, Some(file.metadata())), values));
        }
        let views: Vec<(&[u64], &[f32])> = parts
            .iter()
            .map(|(s, v)| (s.as_slice(), v.as_slice()))
            .collect();
        let shapes: Vec<&[u64]> = views.iter().map(|(s, _)| *s).collect();
        let mismatch = || DetectError::TransformMismatch {
            file: self
                .files
                .get(source.file)
                .map(|f| f.path().to_path_buf())
                .unwrap_or_default(),
            tensor: source.name.clone(),
            transform: source.transform,
            shapes: parts.iter().map(|(s, _)| s.clone()).collect(),
        };
        let shape = source
            .transform
            .apply_to_shape(&shapes)
            .ok_or_else(mismatch)?;
        let values = source
            .transform
            .apply_to_values(&views)
            .ok_or_else(mismatch)?;
        Ok((shape, values))
    }

    /// The files and the detection, for callers that keep them apart.
    pub fn into_parts(self) -> (Vec<WeightFile>, Detection) {
        (self.files, self.detection)
    }
}

/// Detects one opened weight file on its own.
pub fn detect_file(file: &WeightFile) -> Result<Detection, DetectError> {
    detect(&[FileTensors::new(file.path(), file.tensors())
        .with_metadata(file.metadata())
        .with_values(file)])
}

impl TensorValues for WeightFile {
    fn f32_values(&self, name: &str) -> Option<Vec<f32>> {
        self.to_f32_vec(name).ok()
    }
}

fn open_weights(path: &Path) -> Result<WeightFile, DetectError> {
    WeightFile::open(path).map_err(|source| DetectError::Weights {
        path: path.to_path_buf(),
        source,
    })
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
    Ok(Checkpoint {
        path: path.to_path_buf(),
        files,
        detection,
    })
}
