//! The default layout: keys, paths, extensions and the directory overrides.

use std::path::{Path, PathBuf};

use kiln_folders::{canonical_folder_key, Extensions, FolderPaths, MODEL_EXTENSIONS};

use crate::util::Tree;

fn relative_paths(paths: &FolderPaths, key: &str) -> Vec<PathBuf> {
    paths
        .folder_paths(key)
        .unwrap()
        .iter()
        .map(|path| {
            path.strip_prefix(paths.base_directory())
                .unwrap()
                .to_path_buf()
        })
        .collect()
}

fn relative(names: &[&str]) -> Vec<PathBuf> {
    names.iter().map(PathBuf::from).collect()
}

#[test]
fn every_comfyui_key_has_its_default_paths() {
    let tree = Tree::new();
    let paths = FolderPaths::new(tree.root()).unwrap();
    let expected: &[(&str, &[&str])] = &[
        ("checkpoints", &["models/checkpoints", "output/checkpoints"]),
        ("configs", &["models/configs"]),
        ("loras", &["models/loras", "output/loras"]),
        ("vae", &["models/vae", "output/vae"]),
        (
            "text_encoders",
            &["models/text_encoders", "models/clip", "output/clip"],
        ),
        (
            "diffusion_models",
            &[
                "models/unet",
                "models/diffusion_models",
                "output/diffusion_models",
            ],
        ),
        ("clip_vision", &["models/clip_vision"]),
        ("style_models", &["models/style_models"]),
        ("embeddings", &["models/embeddings"]),
        ("diffusers", &["models/diffusers"]),
        ("vae_approx", &["models/vae_approx"]),
        ("controlnet", &["models/controlnet", "models/t2i_adapter"]),
        ("gligen", &["models/gligen"]),
        ("upscale_models", &["models/upscale_models"]),
        ("custom_nodes", &["custom_nodes"]),
        ("hypernetworks", &["models/hypernetworks"]),
        ("photomaker", &["models/photomaker"]),
        ("classifiers", &["models/classifiers"]),
        ("model_patches", &["models/model_patches"]),
        ("audio_encoders", &["models/audio_encoders"]),
    ];
    for (key, expected_paths) in expected {
        assert_eq!(
            relative_paths(&paths, key),
            relative(expected_paths),
            "{key}"
        );
    }
    let keys: Vec<&str> = paths.keys().collect();
    let mut expected_keys: Vec<&str> = expected.iter().map(|(key, _)| *key).collect();
    expected_keys.extend(["unet_gguf", "clip_gguf"]);
    assert_eq!(keys, expected_keys);
}

#[test]
fn legacy_keys_are_the_same_folders() {
    let tree = Tree::new();
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert_eq!(
        paths.folder_paths("clip"),
        paths.folder_paths("text_encoders")
    );
    assert_eq!(
        paths.folder_paths("unet"),
        paths.folder_paths("diffusion_models")
    );
    assert_eq!(canonical_folder_key("unet"), "diffusion_models");
    assert_eq!(paths.folder_paths("nonsense"), None);
}

#[test]
fn extension_sets_follow_comfyui() {
    let tree = Tree::new();
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert_eq!(
        paths.extensions("checkpoints"),
        Some(Extensions::Only(MODEL_EXTENSIONS))
    );
    assert_eq!(
        paths.extensions("configs"),
        Some(Extensions::Only(&[".yaml"]))
    );
    assert_eq!(
        paths.extensions("classifiers"),
        Some(Extensions::NoExtension)
    );
    assert_eq!(paths.extensions("custom_nodes"), Some(Extensions::Any));
    assert_eq!(
        paths.extensions("diffusers"),
        Some(Extensions::DiffusersFolders)
    );
    for gguf_key in [
        "diffusion_models",
        "unet",
        "text_encoders",
        "clip",
        "unet_gguf",
        "clip_gguf",
    ] {
        assert!(
            paths.extensions(gguf_key).unwrap().matches_file("x.gguf"),
            "{gguf_key}"
        );
    }
    assert!(!paths
        .extensions("checkpoints")
        .unwrap()
        .matches_file("x.gguf"));
    assert!(!paths
        .extensions("unet_gguf")
        .unwrap()
        .matches_file("x.safetensors"));
}

#[test]
fn io_directories_default_under_the_base() {
    let tree = Tree::new();
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert_eq!(paths.base_directory(), tree.root());
    assert_eq!(paths.models_directory(), tree.path("models"));
    assert_eq!(paths.output_directory(), tree.path("output"));
    assert_eq!(paths.input_directory(), tree.path("input"));
    assert_eq!(paths.temp_directory(), tree.path("temp"));
    assert_eq!(paths.user_directory(), tree.path("user"));
    assert_eq!(
        paths.directory_by_type("output"),
        Some(tree.path("output").as_path())
    );
    assert_eq!(
        paths.directory_by_type("input"),
        Some(tree.path("input").as_path())
    );
    assert_eq!(
        paths.directory_by_type("temp"),
        Some(tree.path("temp").as_path())
    );
    assert_eq!(paths.directory_by_type("user"), None);
}

#[test]
fn directory_overrides_and_temp_subfolder() {
    let tree = Tree::new();
    let paths = FolderPaths::builder()
        .base_directory(tree.path("base"))
        .output_directory(tree.path("out"))
        .input_directory(tree.path("in"))
        .temp_directory(tree.path("scratch"))
        .user_directory(tree.path("people"))
        .build()
        .unwrap();
    assert_eq!(paths.output_directory(), tree.path("out"));
    assert_eq!(paths.input_directory(), tree.path("in"));
    // ComfyUI appends `temp` to --temp-directory because it wipes the folder.
    assert_eq!(paths.temp_directory(), tree.path("scratch/temp"));
    assert_eq!(paths.user_directory(), tree.path("people"));
    // The output search paths follow --output-directory.
    let checkpoints = paths.folder_paths("checkpoints").unwrap();
    assert_eq!(checkpoints.last().unwrap(), &tree.path("out/checkpoints"));
    assert!(paths
        .folder_paths("clip")
        .unwrap()
        .contains(&tree.path("out/clip")));
}

#[test]
fn base_directory_is_normalised() {
    let tree = Tree::new();
    let paths = FolderPaths::new(tree.path("a/../b/.")).unwrap();
    assert_eq!(paths.base_directory(), tree.path("b"));
    assert!(paths.base_directory().is_absolute());
}

#[test]
fn relative_base_directory_uses_the_current_directory() {
    let paths = FolderPaths::new("relative/base").unwrap();
    let current = std::env::current_dir().unwrap();
    assert_eq!(paths.base_directory(), current.join("relative/base"));
}

#[test]
fn building_creates_nothing() {
    let tree = Tree::new();
    FolderPaths::new(tree.root()).unwrap();
    assert_eq!(std::fs::read_dir(tree.root()).unwrap().count(), 0);
    assert!(!Path::new(&tree.path("input")).exists());
}
