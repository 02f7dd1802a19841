//! Reading a diffusers folder: a pipeline (`model_index.json` with `unet/` or `transformer/`,
//! `text_encoder*/`, `vae/`) or a single component (`config.json` plus weights), each component's
//! weights as one file or as shards listed by a `*.index.json`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::DetectError;

/// Pipeline subfolders that hold weights Kiln loads; others (scheduler, tokenizer, safety
/// checker, feature extractor) are skipped.
const COMPONENT_FOLDERS: &[&str] = &[
    "unet",
    "transformer",
    "text_encoder",
    "text_encoder_2",
    "text_encoder_3",
    "vae",
];

/// Weight file endings in ComfyUI's `diffusers_load.py` preference order.
const WEIGHT_ENDINGS: &[&str] = &[".fp16.safetensors", ".safetensors", ".fp16.bin", ".bin"];

/// One component folder: its weight files (shards in order) and parsed `config.json`.
#[derive(Debug)]
pub(crate) struct ComponentFolder {
    pub(crate) dir: PathBuf,
    pub(crate) weights: Vec<PathBuf>,
    pub(crate) config: Option<serde_json::Value>,
}

/// Every component folder of the pipeline or component folder at `path`.
pub(crate) fn component_folders(path: &Path) -> Result<Vec<ComponentFolder>, DetectError> {
    let index = path.join("model_index.json");
    if index.is_file() {
        read_json(&index)?;
        let folders: Vec<ComponentFolder> = COMPONENT_FOLDERS
            .iter()
            .map(|name| path.join(name))
            .filter(|dir| dir.is_dir())
            .map(|dir| component_folder(&dir))
            .collect::<Result<_, _>>()?;
        if folders.is_empty() {
            return Err(folder_error(
                path,
                "model_index.json but none of unet/, transformer/, text_encoder*/, vae/",
            ));
        }
        return Ok(folders);
    }
    if path.join("config.json").is_file() {
        return Ok(vec![component_folder(path)?]);
    }
    Err(folder_error(path, "no model_index.json or config.json"))
}

fn component_folder(dir: &Path) -> Result<ComponentFolder, DetectError> {
    let config_path = dir.join("config.json");
    let config = if config_path.is_file() {
        Some(read_json(&config_path)?)
    } else {
        None
    };
    Ok(ComponentFolder {
        dir: dir.to_path_buf(),
        weights: weight_files(dir)?,
        config,
    })
}

/// The component's weight files: the shards of its preferred index, else its preferred file.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, DetectError> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(|source| DetectError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    for ending in WEIGHT_ENDINGS {
        let index_ending = format!("{ending}.index.json");
        if let Some(index) = names.iter().find(|n| has_ending(n, &index_ending)) {
            return shards(dir, &dir.join(index));
        }
    }
    for ending in WEIGHT_ENDINGS {
        let matching: Vec<&String> = names.iter().filter(|n| has_ending(n, ending)).collect();
        match matching.as_slice() {
            [] => continue,
            [one] => return Ok(vec![dir.join(one)]),
            several => {
                return Err(folder_error(
                    dir,
                    &format!("several weight files and no index: {}", join_names(several)),
                ))
            }
        }
    }
    Err(folder_error(dir, "no .safetensors or .bin weights"))
}

/// `name` ends with `ending` and, for the plain endings, carries no `.fp16` variant.
fn has_ending(name: &str, ending: &str) -> bool {
    name.ends_with(ending) && (ending.starts_with(".fp16") || !name.contains(".fp16."))
}

/// The files a shard index's `weight_map` points at, in first-use order.
fn shards(dir: &Path, index: &Path) -> Result<Vec<PathBuf>, DetectError> {
    let json = read_json(index)?;
    let Some(map) = json.get("weight_map").and_then(|m| m.as_object()) else {
        return Err(folder_error(
            index,
            "shard index without a weight_map object",
        ));
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for file in map.values() {
        let Some(name) = file.as_str() else {
            return Err(folder_error(index, "weight_map value is not a file name"));
        };
        // A shard must be a plain file next to the index, never a path elsewhere.
        if name.is_empty() || name.contains(['/', '\\']) || name == ".." {
            return Err(folder_error(
                index,
                &format!("shard `{name}` is not a file name in this folder"),
            ));
        }
        let path = dir.join(name);
        if !files.contains(&path) {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(folder_error(index, "empty weight_map"));
    }
    Ok(files)
}

fn read_json(path: &Path) -> Result<serde_json::Value, DetectError> {
    let text = fs::read_to_string(path).map_err(|source| DetectError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| DetectError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn folder_error(path: &Path, reason: &str) -> DetectError {
    DetectError::DiffusersFolder {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn join_names(names: &[&String]) -> String {
    names
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        fs::write(path, b"x").unwrap();
    }

    #[test]
    fn prefers_fp16_then_plain_and_reads_shard_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("model_index.json"), "{}").unwrap();
        for sub in ["unet", "vae", "scheduler", "text_encoder"] {
            fs::create_dir(root.join(sub)).unwrap();
        }
        touch(&root.join("unet/diffusion_pytorch_model.safetensors"));
        touch(&root.join("unet/diffusion_pytorch_model.fp16.safetensors"));
        touch(&root.join("vae/diffusion_pytorch_model.bin"));
        touch(&root.join("vae/diffusion_pytorch_model.safetensors"));
        fs::write(
            root.join("vae/config.json"),
            r#"{"_class_name": "AutoencoderKL"}"#,
        )
        .unwrap();
        fs::write(
            root.join("text_encoder/model.safetensors.index.json"),
            r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}}"#,
        )
        .unwrap();
        let folders = component_folders(root).unwrap();
        let names: Vec<Vec<String>> = folders
            .iter()
            .map(|f| {
                f.weights
                    .iter()
                    .map(|w| w.strip_prefix(root).unwrap().display().to_string())
                    .collect()
            })
            .collect();
        assert_eq!(
            names,
            vec![
                vec!["unet/diffusion_pytorch_model.fp16.safetensors".to_string()],
                vec![
                    "text_encoder/model-00001-of-00002.safetensors".to_string(),
                    "text_encoder/model-00002-of-00002.safetensors".to_string()
                ],
                vec!["vae/diffusion_pytorch_model.safetensors".to_string()],
            ]
        );
        assert_eq!(
            folders[2].config.as_ref().unwrap()["_class_name"],
            "AutoencoderKL"
        );
    }

    #[test]
    fn shard_names_cannot_leave_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("config.json"), "{}").unwrap();
        fs::write(
            dir.path()
                .join("diffusion_pytorch_model.safetensors.index.json"),
            r#"{"weight_map": {"a": "../../etc/passwd"}}"#,
        )
        .unwrap();
        let err = component_folders(dir.path()).unwrap_err();
        assert!(matches!(err, DetectError::DiffusersFolder { .. }), "{err}");
    }

    #[test]
    fn folders_without_weights_or_config_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            component_folders(dir.path()),
            Err(DetectError::DiffusersFolder { .. })
        ));
        fs::write(dir.path().join("config.json"), "{").unwrap();
        assert!(matches!(
            component_folders(dir.path()),
            Err(DetectError::Json { .. })
        ));
    }
}
