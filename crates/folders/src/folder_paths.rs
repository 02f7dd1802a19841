//! [`FolderPaths`]: the built, immutable folder layout, its listings and its name lookups.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::builder::FolderPathsBuilder;
use crate::error::FoldersError;
use crate::extensions::Extensions;
use crate::listing::list_root;
use crate::table::{canonical_folder_key, FOLDER_VIEWS};

/// ComfyUI's folder layout: where each kind of model is searched for, plus the input, output,
/// temp and user directories. Built once by [`FolderPathsBuilder`] from the flags and the
/// extra model paths files; read-only afterwards.
#[derive(Debug, Clone, Serialize)]
pub struct FolderPaths {
    pub(crate) base_directory: PathBuf,
    pub(crate) output_directory: PathBuf,
    pub(crate) input_directory: PathBuf,
    pub(crate) temp_directory: PathBuf,
    pub(crate) user_directory: PathBuf,
    pub(crate) folders: Vec<Folder>,
    pub(crate) extra_model_paths_configs: Vec<PathBuf>,
}

/// One folder key with its search paths in search order.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Folder {
    pub(crate) key: String,
    pub(crate) paths: Vec<PathBuf>,
    pub(crate) extensions: Extensions,
}

impl FolderPaths {
    /// A builder with ComfyUI's defaults: the current directory as base directory and its
    /// `extra_model_paths.yaml`, if there is one.
    pub fn builder() -> FolderPathsBuilder {
        FolderPathsBuilder::default()
    }

    /// The layout under `base_directory` with no overrides (its `extra_model_paths.yaml`
    /// included, if there is one).
    pub fn new(base_directory: impl Into<PathBuf>) -> Result<FolderPaths, FoldersError> {
        FolderPathsBuilder::default()
            .base_directory(base_directory)
            .build()
    }

    /// The absolute base directory (`--base-directory`, or the current directory).
    pub fn base_directory(&self) -> &Path {
        &self.base_directory
    }

    /// `<base>/models`, the parent of the default model folders.
    pub fn models_directory(&self) -> PathBuf {
        self.base_directory.join("models")
    }

    /// Where outputs are saved (`--output-directory`, or `<base>/output`).
    pub fn output_directory(&self) -> &Path {
        &self.output_directory
    }

    /// Where uploads and input images live (`--input-directory`, or `<base>/input`).
    pub fn input_directory(&self) -> &Path {
        &self.input_directory
    }

    /// Where previews go (`<--temp-directory>/temp`, or `<base>/temp`).
    pub fn temp_directory(&self) -> &Path {
        &self.temp_directory
    }

    /// Where per-user settings and workflows live (`--user-directory`, or `<base>/user`).
    pub fn user_directory(&self) -> &Path {
        &self.user_directory
    }

    /// The directory for an HTTP `type` parameter (`output`, `input`, `temp`), as ComfyUI's
    /// `get_directory_by_type`; `None` for anything else, so no other folder is reachable.
    pub fn directory_by_type(&self, type_name: &str) -> Option<&Path> {
        match type_name {
            "output" => Some(&self.output_directory),
            "input" => Some(&self.input_directory),
            "temp" => Some(&self.temp_directory),
            _ => None,
        }
    }

    /// The extra model paths files that were read, in the order they were applied.
    pub fn extra_model_paths_configs(&self) -> &[PathBuf] {
        &self.extra_model_paths_configs
    }

    /// Every folder key, in ComfyUI's order, then keys added by extra model paths files, then
    /// the GGUF views (`unet_gguf`, `clip_gguf`). Legacy names (`clip`, `unet`) are not listed
    /// but are accepted everywhere a key is.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.folders
            .iter()
            .map(|folder| folder.key.as_str())
            .chain(FOLDER_VIEWS.iter().map(|view| view.key))
    }

    /// The search paths of `key` in search order (the first is where downloads go), or `None`
    /// for an unknown key.
    pub fn folder_paths(&self, key: &str) -> Option<&[PathBuf]> {
        self.lookup(key).map(|(paths, _)| paths)
    }

    /// What a listing of `key` returns, or `None` for an unknown key.
    pub fn extensions(&self, key: &str) -> Option<Extensions> {
        self.lookup(key).map(|(_, extensions)| extensions)
    }

    /// Every model name under `key`: paths relative to their search path with the OS
    /// separator, from all search paths, recursive (symlinks followed, `.git` skipped),
    /// filtered by extension, sorted, each name once. Missing folders list nothing.
    pub fn list(&self, key: &str) -> Result<Vec<String>, FoldersError> {
        let (paths, extensions) =
            self.lookup(key)
                .ok_or_else(|| FoldersError::UnknownFolderKey {
                    key: key.to_owned(),
                })?;
        let mut found = Vec::new();
        for root in paths {
            list_root(root, extensions, &mut found);
        }
        let unique: BTreeSet<String> = found.into_iter().collect();
        Ok(unique.into_iter().collect())
    }

    /// The file (or, for `diffusers`, the folder) `name` stands for under `key`: the first
    /// search path that holds it wins. `None` when the key is unknown, the name would leave its
    /// folder (absolute, or containing `..`), or nothing is found. See [`Self::try_resolve`]
    /// for the reason.
    pub fn resolve(&self, key: &str, name: &str) -> Option<PathBuf> {
        self.try_resolve(key, name).ok()
    }

    /// [`Self::resolve`], saying why nothing was found. Symlinks inside a folder may point
    /// anywhere: model folders are commonly links to other disks.
    pub fn try_resolve(&self, key: &str, name: &str) -> Result<PathBuf, FoldersError> {
        let (paths, extensions) =
            self.lookup(key)
                .ok_or_else(|| FoldersError::UnknownFolderKey {
                    key: key.to_owned(),
                })?;
        if !is_contained_name(name) {
            return Err(FoldersError::UnsafeModelName {
                key: key.to_owned(),
                name: name.to_owned(),
            });
        }
        let wants_folder = extensions == Extensions::DiffusersFolders;
        paths
            .iter()
            .map(|root| root.join(name))
            .find(|candidate| {
                if wants_folder {
                    candidate.is_dir()
                } else {
                    candidate.is_file()
                }
            })
            .ok_or_else(|| FoldersError::ModelNotFound {
                key: key.to_owned(),
                name: name.to_owned(),
                searched: paths.to_vec(),
            })
    }

    fn lookup(&self, key: &str) -> Option<(&[PathBuf], Extensions)> {
        let key = canonical_folder_key(key);
        if let Some(folder) = self.folders.iter().find(|folder| folder.key == key) {
            return Some((&folder.paths, folder.extensions));
        }
        let view = FOLDER_VIEWS.iter().find(|view| view.key == key)?;
        let target = self
            .folders
            .iter()
            .find(|folder| folder.key == view.target)?;
        Some((&target.paths, view.extensions))
    }
}

/// Whether `name` stays inside whatever folder it is joined to: relative, no `..`, no drive
/// prefix, not empty, no NUL.
fn is_contained_name(name: &str) -> bool {
    if name.is_empty() || name.contains('\0') {
        return false;
    }
    Path::new(name)
        .components()
        .all(|component| matches!(component, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contained_names() {
        assert!(is_contained_name("model.safetensors"));
        assert!(is_contained_name("sub/dir/model.safetensors"));
        assert!(is_contained_name("./model.safetensors"));
        assert!(!is_contained_name("../model.safetensors"));
        assert!(!is_contained_name("sub/../../model.safetensors"));
        assert!(!is_contained_name("/etc/passwd"));
        assert!(!is_contained_name(""));
        assert!(!is_contained_name("a\0b"));
    }
}
