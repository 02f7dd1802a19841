//! Listings: recursion, sorting, extension filters, several roots, symlinks.

use kiln_folders::{FolderPaths, FoldersError};

use crate::util::{os, Tree};

#[test]
fn lists_recursively_sorted_with_os_separators() {
    let tree = Tree::new();
    tree.files(&[
        "models/checkpoints/z.safetensors",
        "models/checkpoints/a.ckpt",
        "models/checkpoints/sd15/b.SAFETENSORS",
        "models/checkpoints/sd15/deeper/c.pt",
        "models/checkpoints/notes.txt",
        "models/checkpoints/config.yaml",
    ]);
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert_eq!(
        paths.list("checkpoints").unwrap(),
        vec![
            "a.ckpt".to_owned(),
            os("sd15/b.SAFETENSORS"),
            os("sd15/deeper/c.pt"),
            "z.safetensors".to_owned(),
        ]
    );
}

#[test]
fn every_model_extension_is_listed() {
    let tree = Tree::new();
    let names = [
        "a.ckpt",
        "b.pt",
        "c.pt2",
        "d.bin",
        "e.pth",
        "f.safetensors",
        "g.pkl",
        "h.sft",
    ];
    for name in names {
        tree.files(&[&format!("models/loras/{name}")]);
    }
    tree.files(&["models/loras/i.gguf", "models/loras/j.onnx"]);
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert_eq!(paths.list("loras").unwrap(), names.to_vec());
}

#[test]
fn missing_folders_list_nothing_and_unknown_keys_are_errors() {
    let tree = Tree::new();
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert!(paths.list("vae").unwrap().is_empty());
    assert!(matches!(
        paths.list("nope"),
        Err(FoldersError::UnknownFolderKey { key }) if key == "nope"
    ));
}

#[test]
fn names_from_several_roots_are_merged_once() {
    let tree = Tree::new();
    tree.files(&[
        "models/unet/shared.safetensors",
        "models/unet/only_unet.safetensors",
        "models/diffusion_models/shared.safetensors",
        "models/diffusion_models/only_dm.gguf",
        "output/diffusion_models/saved.safetensors",
    ]);
    let paths = FolderPaths::new(tree.root()).unwrap();
    let expected = vec![
        "only_dm.gguf",
        "only_unet.safetensors",
        "saved.safetensors",
        "shared.safetensors",
    ];
    assert_eq!(paths.list("diffusion_models").unwrap(), expected);
    assert_eq!(paths.list("unet").unwrap(), expected);
    assert_eq!(paths.list("unet_gguf").unwrap(), vec!["only_dm.gguf"]);
}

#[test]
fn clip_folder_and_gguf_view() {
    let tree = Tree::new();
    tree.files(&[
        "models/clip/clip_l.safetensors",
        "models/text_encoders/t5xxl-Q8_0.gguf",
    ]);
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert_eq!(
        paths.list("clip").unwrap(),
        vec!["clip_l.safetensors", "t5xxl-Q8_0.gguf"]
    );
    assert_eq!(paths.list("clip_gguf").unwrap(), vec!["t5xxl-Q8_0.gguf"]);
}

#[test]
fn git_is_skipped_but_other_hidden_folders_are_not() {
    let tree = Tree::new();
    tree.files(&[
        "models/vae/.git/objects/x.bin",
        "models/vae/.cache/cached.safetensors",
        "models/vae/sub/.git/y.pt",
        "models/vae/.hidden.safetensors",
        "models/vae/ae.safetensors",
    ]);
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert_eq!(
        paths.list("vae").unwrap(),
        vec![
            os(".cache/cached.safetensors"),
            ".hidden.safetensors".to_owned(),
            "ae.safetensors".to_owned(),
        ]
    );
}

#[test]
fn configs_list_yaml_only() {
    let tree = Tree::new();
    tree.files(&[
        "models/configs/v1-inference.yaml",
        "models/configs/x.safetensors",
    ]);
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert_eq!(paths.list("configs").unwrap(), vec!["v1-inference.yaml"]);
}

#[test]
fn classifiers_list_only_names_without_extension() {
    let tree = Tree::new();
    tree.files(&[
        "models/classifiers/bare",
        "models/classifiers/x.safetensors",
    ]);
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert_eq!(paths.list("classifiers").unwrap(), vec!["bare"]);
}

#[test]
fn custom_nodes_list_everything() {
    let tree = Tree::new();
    tree.files(&["custom_nodes/pack/__init__.py", "custom_nodes/readme.md"]);
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert_eq!(
        paths.list("custom_nodes").unwrap(),
        vec![os("pack/__init__.py"), "readme.md".to_owned()]
    );
}

#[test]
fn diffusers_lists_pipeline_folders() {
    let tree = Tree::new();
    tree.files(&[
        "models/diffusers/sd15/model_index.json",
        "models/diffusers/sd15/unet/diffusion_pytorch_model.safetensors",
        "models/diffusers/org/sdxl/model_index.json",
        "models/diffusers/not_a_pipeline/config.json",
    ]);
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert_eq!(
        paths.list("diffusers").unwrap(),
        vec![os("org/sdxl"), "sd15".to_owned()]
    );
}

#[cfg(unix)]
#[test]
fn symlinked_folders_are_followed_and_cycles_stop() {
    let tree = Tree::new();
    tree.files(&[
        "elsewhere/big/flux.safetensors",
        "models/loras/own.safetensors",
    ]);
    tree.symlink("elsewhere/big", "models/loras/linked");
    // A link back to an ancestor: os.walk would recurse until the path is too long.
    tree.symlink("models/loras", "models/loras/loop");
    tree.symlink(
        "elsewhere/big/flux.safetensors",
        "models/loras/file_link.safetensors",
    );
    tree.symlink(
        "does/not/exist.safetensors",
        "models/loras/dangling.safetensors",
    );
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert_eq!(
        paths.list("loras").unwrap(),
        vec![
            "file_link.safetensors".to_owned(),
            os("linked/flux.safetensors"),
            "own.safetensors".to_owned(),
        ]
    );
}

#[cfg(unix)]
#[test]
fn a_symlinked_root_is_listed() {
    let tree = Tree::new();
    tree.files(&["disk/a.safetensors"]);
    tree.files(&["models/"]);
    tree.symlink("disk", "models/checkpoints");
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert_eq!(paths.list("checkpoints").unwrap(), vec!["a.safetensors"]);
}
