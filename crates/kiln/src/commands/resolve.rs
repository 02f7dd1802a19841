//! Finds the file a user named: a path as given, or a model name relative to one of ComfyUI's
//! model folders (`kiln doctor flux1-dev-fp8.safetensors` finds `models/diffusion_models/…`).

use std::path::{Path, PathBuf};

use kiln_folders::FolderPaths;

/// Folder keys searched, in order, for a bare model name.
const MODEL_FOLDERS: [&str; 4] = ["checkpoints", "diffusion_models", "text_encoders", "vae"];

/// `given` when it exists; otherwise the first model folder holding that relative name.
pub(crate) fn model_path(given: &Path, folders: Option<&FolderPaths>) -> PathBuf {
    if given.exists() {
        return given.to_path_buf();
    }
    let (Some(folders), Some(name)) = (folders, given.to_str()) else {
        return given.to_path_buf();
    };
    MODEL_FOLDERS
        .iter()
        .find_map(|key| folders.resolve(key, name))
        .unwrap_or_else(|| given.to_path_buf())
}
