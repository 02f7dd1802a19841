//! Resolving a listed name back to a file.

use kiln_folders::{FolderPaths, FoldersError};

use crate::util::{os, Tree};

#[test]
fn first_search_path_wins() {
    let tree = Tree::new();
    tree.files(&[
        "models/unet/shared.safetensors",
        "models/diffusion_models/shared.safetensors",
        "models/diffusion_models/sub/only.safetensors",
    ]);
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert_eq!(
        paths.resolve("diffusion_models", "shared.safetensors"),
        Some(tree.path("models/unet/shared.safetensors"))
    );
    assert_eq!(
        paths.resolve("unet", &os("sub/only.safetensors")),
        Some(tree.path("models/diffusion_models/sub/only.safetensors"))
    );
}

#[test]
fn every_listed_name_resolves() {
    let tree = Tree::new();
    tree.files(&[
        "models/checkpoints/a.safetensors",
        "models/checkpoints/x/y/b.ckpt",
        "output/checkpoints/c.safetensors",
    ]);
    let paths = FolderPaths::new(tree.root()).unwrap();
    for name in paths.list("checkpoints").unwrap() {
        let file = paths.resolve("checkpoints", &name).unwrap();
        assert!(file.is_file(), "{name}");
    }
}

#[test]
fn traversal_and_absolute_names_are_refused() {
    let tree = Tree::new();
    tree.files(&["models/secret.safetensors", "models/vae/ok.safetensors"]);
    let paths = FolderPaths::new(tree.root()).unwrap();
    for name in [
        "../secret.safetensors",
        "sub/../../secret.safetensors",
        tree.path("models/secret.safetensors").to_str().unwrap(),
        "",
    ] {
        assert_eq!(paths.resolve("vae", name), None, "{name}");
        assert!(
            matches!(
                paths.try_resolve("vae", name),
                Err(FoldersError::UnsafeModelName { .. })
            ),
            "{name}"
        );
    }
    assert!(paths.resolve("vae", "ok.safetensors").is_some());
}

#[test]
fn missing_model_and_unknown_key_say_why() {
    let tree = Tree::new();
    let paths = FolderPaths::new(tree.root()).unwrap();
    match paths.try_resolve("loras", "gone.safetensors") {
        Err(FoldersError::ModelNotFound {
            key,
            name,
            searched,
        }) => {
            assert_eq!(key, "loras");
            assert_eq!(name, "gone.safetensors");
            assert_eq!(
                searched,
                vec![tree.path("models/loras"), tree.path("output/loras")]
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        paths.try_resolve("nope", "x"),
        Err(FoldersError::UnknownFolderKey { .. })
    ));
}

#[test]
fn a_folder_is_not_a_model_file_but_is_a_diffusers_pipeline() {
    let tree = Tree::new();
    tree.files(&[
        "models/checkpoints/folder/",
        "models/diffusers/sd15/model_index.json",
    ]);
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert_eq!(paths.resolve("checkpoints", "folder"), None);
    assert_eq!(
        paths.resolve("diffusers", "sd15"),
        Some(tree.path("models/diffusers/sd15"))
    );
}

#[cfg(unix)]
#[test]
fn symlinks_out_of_the_folder_are_allowed() {
    let tree = Tree::new();
    tree.files(&["other_disk/model.safetensors", "models/checkpoints/"]);
    tree.symlink(
        "other_disk/model.safetensors",
        "models/checkpoints/model.safetensors",
    );
    let paths = FolderPaths::new(tree.root()).unwrap();
    assert_eq!(
        paths.resolve("checkpoints", "model.safetensors"),
        Some(tree.path("models/checkpoints/model.safetensors"))
    );
}
