//! ComfyUI's folder keys, their default paths under the base directory and their extension
//! sets (`folder_paths.py` at the top), plus the legacy key names.

use crate::extensions::{Extensions, MODEL_EXTENSIONS, MODEL_EXTENSIONS_WITH_GGUF};

/// One folder key of the default layout.
pub(crate) struct DefaultFolder {
    /// The key, as nodes and the HTTP API name it.
    pub(crate) key: &'static str,
    /// Paths relative to the base directory, default (download) path first.
    pub(crate) relative_paths: &'static [&'static str],
    /// What a listing returns.
    pub(crate) extensions: Extensions,
}

const MODELS: Extensions = Extensions::Only(MODEL_EXTENSIONS);
const MODELS_AND_GGUF: Extensions = Extensions::Only(MODEL_EXTENSIONS_WITH_GGUF);

/// The default layout, in ComfyUI's order.
pub(crate) const DEFAULT_FOLDERS: &[DefaultFolder] = &[
    folder("checkpoints", &["models/checkpoints"], MODELS),
    folder("configs", &["models/configs"], Extensions::Only(&[".yaml"])),
    folder("loras", &["models/loras"], MODELS),
    folder("vae", &["models/vae"], MODELS),
    folder(
        "text_encoders",
        &["models/text_encoders", "models/clip"],
        MODELS_AND_GGUF,
    ),
    folder(
        "diffusion_models",
        &["models/unet", "models/diffusion_models"],
        MODELS_AND_GGUF,
    ),
    folder("clip_vision", &["models/clip_vision"], MODELS),
    folder("style_models", &["models/style_models"], MODELS),
    folder("embeddings", &["models/embeddings"], MODELS),
    folder(
        "diffusers",
        &["models/diffusers"],
        Extensions::DiffusersFolders,
    ),
    folder("vae_approx", &["models/vae_approx"], MODELS),
    folder(
        "controlnet",
        &["models/controlnet", "models/t2i_adapter"],
        MODELS,
    ),
    folder("gligen", &["models/gligen"], MODELS),
    folder("upscale_models", &["models/upscale_models"], MODELS),
    folder("custom_nodes", &["custom_nodes"], Extensions::Any),
    folder("hypernetworks", &["models/hypernetworks"], MODELS),
    folder("photomaker", &["models/photomaker"], MODELS),
    folder(
        "classifiers",
        &["models/classifiers"],
        Extensions::NoExtension,
    ),
    folder("model_patches", &["models/model_patches"], MODELS),
    folder("audio_encoders", &["models/audio_encoders"], MODELS),
];

const fn folder(
    key: &'static str,
    relative_paths: &'static [&'static str],
    extensions: Extensions,
) -> DefaultFolder {
    DefaultFolder {
        key,
        relative_paths,
        extensions,
    }
}

/// A key that shows another key's search paths through a different extension filter.
pub(crate) struct FolderView {
    /// The view's key.
    pub(crate) key: &'static str,
    /// The key whose paths it shares.
    pub(crate) target: &'static str,
    /// What a listing returns.
    pub(crate) extensions: Extensions,
}

/// city96's ComfyUI-GGUF keys (`nodes.py: update_folder_names_and_paths`): the same path list
/// as the diffusion-model and text-encoder folders, GGUF files only. Workflows saved with
/// `UnetLoaderGGUF`/`CLIPLoaderGGUF` name them.
pub(crate) const FOLDER_VIEWS: &[FolderView] = &[
    FolderView {
        key: "unet_gguf",
        target: "diffusion_models",
        extensions: Extensions::Only(&[".gguf"]),
    },
    FolderView {
        key: "clip_gguf",
        target: "text_encoders",
        extensions: Extensions::Only(&[".gguf"]),
    },
];

/// Subfolders of the output directory that ComfyUI adds as extra search paths, because its
/// save nodes (`CheckpointSave`, `CLIPSave`, ...) write there.
pub(crate) const OUTPUT_SEARCH_FOLDERS: &[&str] =
    &["checkpoints", "clip", "vae", "diffusion_models", "loras"];

/// The key a possibly legacy key name stands for (ComfyUI's `map_legacy`): `clip` is
/// `text_encoders` and `unet` is `diffusion_models`; other names are returned unchanged.
pub fn canonical_folder_key(key: &str) -> &str {
    LEGACY_KEYS
        .iter()
        .find(|(legacy, _)| *legacy == key)
        .map_or(key, |(_, current)| current)
}

/// ComfyUI's `map_legacy` table: old key → current key.
const LEGACY_KEYS: &[(&str, &str)] = &[("unet", "diffusion_models"), ("clip", "text_encoders")];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_keys_map_to_current_names() {
        assert_eq!(canonical_folder_key("clip"), "text_encoders");
        assert_eq!(canonical_folder_key("unet"), "diffusion_models");
        assert_eq!(canonical_folder_key("loras"), "loras");
    }

    #[test]
    fn keys_are_unique_and_views_point_at_defaults() {
        let mut keys: Vec<&str> = DEFAULT_FOLDERS.iter().map(|folder| folder.key).collect();
        keys.extend(FOLDER_VIEWS.iter().map(|view| view.key));
        let count = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), count);
        for view in FOLDER_VIEWS {
            assert!(DEFAULT_FOLDERS
                .iter()
                .any(|folder| folder.key == view.target));
        }
    }
}
