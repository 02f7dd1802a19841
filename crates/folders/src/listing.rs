//! Recursive listing of one search path, as ComfyUI's `recursive_search` walks it: symlinks
//! followed, `.git` skipped, names relative to the search path with OS separators.

use std::fs;
use std::path::{Path, PathBuf, MAIN_SEPARATOR};

use crate::extensions::Extensions;

/// The name of the one directory ComfyUI never descends into.
const EXCLUDED_DIRECTORY: &str = ".git";

/// The file every diffusers pipeline folder holds at its top.
const DIFFUSERS_MARKER: &str = "model_index.json";

/// Adds to `found` every entry under `root` that `extensions` selects, as a path relative to
/// `root`. A missing or unreadable `root` adds nothing, and unreadable entries below it are
/// skipped, as Python's `os.walk` does. Names that are not valid UTF-8 cannot be sent to
/// clients and are skipped.
pub(crate) fn list_root(root: &Path, extensions: Extensions, found: &mut Vec<String>) {
    let Ok(canonical_root) = fs::canonicalize(root) else {
        return;
    };
    if !canonical_root.is_dir() {
        return;
    }
    let mut ancestors = vec![canonical_root];
    walk(root, "", extensions, &mut ancestors, found);
}

/// Lists `directory`, whose relative name is `relative` ("" for the root). `ancestors` holds
/// the canonical path of every directory on the way down: a symlink back to one of them is a
/// cycle and is not followed, while two links to the same sibling folder are both listed, as
/// `os.walk` lists them.
fn walk(
    directory: &Path,
    relative: &str,
    extensions: Extensions,
    ancestors: &mut Vec<PathBuf>,
    found: &mut Vec<String>,
) {
    let Ok(entries) = fs::read_dir(directory) else {
        return;
    };
    let mut subdirectories = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let path = entry.path();
        // fs::metadata follows symlinks; a dangling link has none and is skipped.
        let Ok(metadata) = fs::metadata(&path) else {
            continue;
        };
        let relative_name = join_relative(relative, &name);
        if metadata.is_dir() {
            if name != EXCLUDED_DIRECTORY {
                subdirectories.push((path, relative_name));
            }
        } else if name == DIFFUSERS_MARKER && extensions == Extensions::DiffusersFolders {
            found.push(if relative.is_empty() {
                ".".to_owned()
            } else {
                relative.to_owned()
            });
        } else if extensions.matches_file(&name) {
            found.push(relative_name);
        }
    }
    for (path, relative_name) in subdirectories {
        let Ok(canonical) = fs::canonicalize(&path) else {
            continue;
        };
        if ancestors.contains(&canonical) {
            continue;
        }
        ancestors.push(canonical);
        walk(&path, &relative_name, extensions, ancestors, found);
        ancestors.pop();
    }
}

fn join_relative(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}{MAIN_SEPARATOR}{name}")
    }
}
