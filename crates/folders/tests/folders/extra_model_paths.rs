//! extra_model_paths.yaml: ComfyUI's example sections, `is_default`, auto-loading, errors.

use std::path::{Path, PathBuf};

use kiln_folders::{Extensions, FolderPaths, FoldersError};

use crate::util::Tree;

/// The a1111 section of ComfyUI's `extra_model_paths.yaml.example`, with its base path
/// pointing into the temp dir.
const A1111_SECTION: &str = "\
#config for a1111 ui
#all you have to do is change the base_path to where yours is installed
a111:
    base_path: path/to/stable-diffusion-webui/

    checkpoints: models/Stable-diffusion
    configs: models/Stable-diffusion
    vae: models/VAE
    loras: |
         models/Lora
         models/LyCORIS
    upscale_models: |
                  models/ESRGAN
                  models/RealESRGAN
                  models/SwinIR
    embeddings: embeddings
    hypernetworks: models/hypernetworks
    controlnet: models/ControlNet
";

/// The example's comfyui section, uncommented, with `is_default` on.
const COMFYUI_SECTION: &str = "\
comfyui:
     base_path: path/to/comfyui/
     # You can use is_default to mark that these folders should be listed first, and used as the default dirs for eg downloads
     is_default: true
     checkpoints: models/checkpoints/
     clip: models/clip/
     clip_vision: models/clip_vision/
     configs: models/configs/
     controlnet: models/controlnet/
     diffusion_models: |
                  models/diffusion_models
                  models/unet
     embeddings: models/embeddings/
     loras: models/loras/
     upscale_models: models/upscale_models/
     vae: models/vae/
";

/// `FolderPaths` for base directory `base` with one `--extra-model-paths-config` file.
fn build_with_config(base: &Path, config: &Path) -> Result<FolderPaths, FoldersError> {
    FolderPaths::builder()
        .base_directory(base)
        .extra_model_paths_config(config)
        .build()
}

fn paths_of(paths: &FolderPaths, key: &str) -> Vec<PathBuf> {
    paths.folder_paths(key).unwrap().to_vec()
}

#[test]
fn a1111_section_appends_webui_folders() {
    let tree = Tree::new();
    let config = tree.write("extra.yaml", A1111_SECTION);
    let webui = tree.path("path/to/stable-diffusion-webui");
    let base = tree.path("comfy");
    let paths = build_with_config(&base, &config).unwrap();

    assert_eq!(
        paths_of(&paths, "checkpoints"),
        vec![
            base.join("models/checkpoints"),
            webui.join("models/Stable-diffusion"),
            base.join("output/checkpoints"),
        ]
    );
    assert_eq!(
        paths_of(&paths, "configs"),
        vec![
            base.join("models/configs"),
            webui.join("models/Stable-diffusion")
        ]
    );
    assert_eq!(
        paths_of(&paths, "loras"),
        vec![
            base.join("models/loras"),
            webui.join("models/Lora"),
            webui.join("models/LyCORIS"),
            base.join("output/loras"),
        ]
    );
    assert_eq!(
        paths_of(&paths, "upscale_models"),
        vec![
            base.join("models/upscale_models"),
            webui.join("models/ESRGAN"),
            webui.join("models/RealESRGAN"),
            webui.join("models/SwinIR"),
        ]
    );
    assert_eq!(
        paths_of(&paths, "embeddings"),
        vec![base.join("models/embeddings"), webui.join("embeddings")]
    );
    assert_eq!(
        paths_of(&paths, "hypernetworks"),
        vec![
            base.join("models/hypernetworks"),
            webui.join("models/hypernetworks")
        ]
    );
    assert_eq!(
        paths_of(&paths, "controlnet"),
        vec![
            base.join("models/controlnet"),
            base.join("models/t2i_adapter"),
            webui.join("models/ControlNet"),
        ]
    );
    assert_eq!(paths.extra_model_paths_configs(), [config]);

    // The webui's models show up in listings.
    tree.files(&[
        "path/to/stable-diffusion-webui/models/Lora/style.safetensors",
        "path/to/stable-diffusion-webui/models/LyCORIS/lyco.safetensors",
    ]);
    assert_eq!(
        paths.list("loras").unwrap(),
        vec!["lyco.safetensors", "style.safetensors"]
    );
}

#[test]
fn comfyui_section_with_is_default_comes_first() {
    let tree = Tree::new();
    let config = tree.write("conf/extra.yaml", COMFYUI_SECTION);
    let other = tree.path("conf/path/to/comfyui");
    let base = tree.path("comfy");
    let paths = build_with_config(&base, &config).unwrap();

    assert_eq!(
        paths_of(&paths, "checkpoints"),
        vec![
            other.join("models/checkpoints"),
            base.join("models/checkpoints"),
            base.join("output/checkpoints"),
        ]
    );
    // `clip:` is the legacy name of text_encoders.
    assert_eq!(
        paths_of(&paths, "text_encoders"),
        vec![
            other.join("models/clip"),
            base.join("models/text_encoders"),
            base.join("models/clip"),
            base.join("output/clip"),
        ]
    );
    // Each `|` line is prepended in turn, so the last line ends up first, as in ComfyUI.
    assert_eq!(
        paths_of(&paths, "diffusion_models"),
        vec![
            other.join("models/unet"),
            other.join("models/diffusion_models"),
            base.join("models/unet"),
            base.join("models/diffusion_models"),
            base.join("output/diffusion_models"),
        ]
    );

    tree.files(&[
        "conf/path/to/comfyui/models/vae/shared.safetensors",
        "comfy/models/vae/shared.safetensors",
    ]);
    assert_eq!(
        paths.resolve("vae", "shared.safetensors"),
        Some(other.join("models/vae/shared.safetensors"))
    );
}

#[test]
fn is_default_moves_a_known_path_to_the_front() {
    let tree = Tree::new();
    let base = tree.path("comfy");
    let config = tree.write(
        "extra.yaml",
        &format!(
            "again:\n  is_default: true\n  loras: {}\n",
            base.join("models/loras/../loras").display()
        ),
    );
    let paths = build_with_config(&base, &config).unwrap();
    assert_eq!(
        paths_of(&paths, "loras"),
        vec![base.join("models/loras"), base.join("output/loras")]
    );

    let config = tree.write(
        "extra2.yaml",
        &format!(
            "again:\n  is_default: true\n  loras: {}\n",
            base.join("output/loras").display()
        ),
    );
    let paths = build_with_config(&base, &config).unwrap();
    // The output paths are added after the files, so the default one stays first.
    assert_eq!(
        paths_of(&paths, "loras"),
        vec![base.join("output/loras"), base.join("models/loras")]
    );
}

#[test]
fn base_directory_file_is_loaded_first_then_flags_in_order() {
    let tree = Tree::new();
    let base = tree.path("comfy");
    tree.write("comfy/extra_model_paths.yaml", "own:\n  vae: from_base\n");
    let first = tree.write("one.yaml", "one:\n  vae: from_one\n");
    let second = tree.write("two.yaml", "two:\n  vae: |\n    from_two\n    also_two\n");
    let paths = FolderPaths::builder()
        .base_directory(&base)
        .extra_model_paths_config(&first)
        .extra_model_paths_config(&second)
        .build()
        .unwrap();
    assert_eq!(
        paths_of(&paths, "vae"),
        vec![
            base.join("models/vae"),
            base.join("from_base"),
            tree.path("from_one"),
            tree.path("from_two"),
            tree.path("also_two"),
            base.join("output/vae"),
        ]
    );
    assert_eq!(
        paths.extra_model_paths_configs(),
        [base.join("extra_model_paths.yaml"), first, second]
    );

    let without_base_file = FolderPaths::builder()
        .base_directory(&base)
        .load_base_extra_model_paths(false)
        .build()
        .unwrap();
    assert_eq!(
        paths_of(&without_base_file, "vae"),
        vec![base.join("models/vae"), base.join("output/vae")]
    );
}

#[test]
fn relative_and_home_base_paths() {
    let tree = Tree::new();
    let config = tree.write(
        "conf/extra.yaml",
        "up:\n  base_path: ../models_elsewhere\n  gligen: g\nhome:\n  base_path: ~/kiln-test-home-dir\n  gligen: h\n",
    );
    let paths = build_with_config(&tree.path("comfy"), &config).unwrap();
    let gligen = paths_of(&paths, "gligen");
    assert_eq!(gligen[1], tree.path("models_elsewhere/g"));
    if let Some(home) = std::env::var_os("HOME").filter(|_| cfg!(unix)) {
        assert_eq!(gligen[2], PathBuf::from(home).join("kiln-test-home-dir/h"));
    }
}

#[test]
fn unknown_keys_become_folders_that_list_everything() {
    let tree = Tree::new();
    let config = tree.write(
        "extra.yaml",
        "other_ui:\n  base_path: ui\n  ipadapter: models/ipadapter\n",
    );
    tree.files(&[
        "ui/models/ipadapter/a.bin",
        "ui/models/ipadapter/readme.txt",
    ]);
    let paths = build_with_config(&tree.path("comfy"), &config).unwrap();
    assert_eq!(
        paths_of(&paths, "ipadapter"),
        vec![tree.path("ui/models/ipadapter")]
    );
    assert_eq!(paths.extensions("ipadapter"), Some(Extensions::Any));
    assert_eq!(
        paths.list("ipadapter").unwrap(),
        vec!["a.bin", "readme.txt"]
    );
    assert_eq!(paths.keys().filter(|key| *key == "ipadapter").count(), 1);
}

#[test]
fn gguf_view_keys_add_to_the_folder_they_view() {
    let tree = Tree::new();
    let config = tree.write("extra.yaml", "gguf:\n  unet_gguf: quantised\n");
    let paths = build_with_config(&tree.path("comfy"), &config).unwrap();
    assert!(paths_of(&paths, "diffusion_models").contains(&tree.path("quantised")));
    assert_eq!(
        paths.folder_paths("unet_gguf"),
        paths.folder_paths("diffusion_models")
    );
}

#[test]
fn empty_file_and_empty_sections_are_fine() {
    let tree = Tree::new();
    let empty = tree.write("empty.yaml", "");
    let hollow = tree.write("hollow.yaml", "#other_ui:\nother_ui:\n");
    let paths = FolderPaths::builder()
        .base_directory(tree.path("comfy"))
        .extra_model_paths_config(&empty)
        .extra_model_paths_config(&hollow)
        .build()
        .unwrap();
    assert_eq!(paths_of(&paths, "vae").len(), 2);
}

#[test]
fn bad_yaml_names_the_file_and_line() {
    let tree = Tree::new();
    let config = tree.write("broken.yaml", "ok:\n  vae: a\nbad:\n  loras: [unclosed\n");
    let error = build_with_config(&tree.path("comfy"), &config).unwrap_err();
    match &error {
        FoldersError::InvalidConfig { path, line, .. } => {
            assert_eq!(path, &config);
            assert!(line.unwrap() >= 4, "{error}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("broken.yaml"), "{message}");
    assert!(message.contains("line"), "{message}");
}

#[test]
fn wrong_shape_names_the_file_and_line() {
    let tree = Tree::new();
    let config = tree.write(
        "shape.yaml",
        "s:\n  base_path: x\n  is_default: true\n  vae: 3.5\n  loras:\n    - a\n",
    );
    let error = build_with_config(&tree.path("comfy"), &config).unwrap_err();
    match &error {
        FoldersError::InvalidConfig {
            path, line, reason, ..
        } => {
            assert_eq!(path, &config);
            assert_eq!(*line, Some(6), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn missing_config_file_is_an_error() {
    let tree = Tree::new();
    let error = build_with_config(&tree.path("comfy"), &tree.path("absent.yaml")).unwrap_err();
    assert!(
        matches!(&error, FoldersError::ReadConfig { path, .. } if *path == tree.path("absent.yaml")),
        "{error:?}"
    );
}
