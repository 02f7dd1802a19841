//! Where `/view` reads and `/upload/*` writes: ComfyUI's `type` + `subfolder` + `filename`
//! (with ` [output]`-style annotations) resolved inside the input/output/temp folders, and
//! uploads saved with ComfyUI's duplicate-name rule.

use std::path::{Path, PathBuf};

use kiln_folders::FolderPaths;
use sha2::{Digest, Sha256};

use crate::error::ServerError;
use crate::security::confine;
use crate::userdata::write_atomically;

/// The folder a `type` parameter names.
pub(crate) fn folder_by_type<'a>(
    folders: &'a FolderPaths,
    type_name: &str,
) -> Result<&'a Path, ServerError> {
    folders
        .directory_by_type(type_name)
        .ok_or_else(|| ServerError::UnknownFolderType {
            type_name: type_name.to_owned(),
        })
}

/// `name [output]` → (`name`, `output`), as ComfyUI's `annotated_filepath`.
pub(crate) fn split_annotation(name: &str) -> (&str, Option<&'static str>) {
    const ANNOTATIONS: [(&str, &str); 3] = [
        (" [output]", "output"),
        (" [input]", "input"),
        (" [temp]", "temp"),
    ];
    ANNOTATIONS
        .iter()
        .find_map(|(suffix, type_name)| {
            name.strip_suffix(suffix)
                .map(|stem| (stem, Some(*type_name)))
        })
        .unwrap_or((name, None))
}

/// The file `/view` serves. `filename` may carry an annotation that overrides `type`
/// (default `output`); like ComfyUI it must not start with `/` or contain `..` (400), only its
/// base name is used, and `subfolder` must stay inside the folder (403).
pub(crate) fn view_path(
    folders: &FolderPaths,
    filename: &str,
    type_name: Option<&str>,
    subfolder: Option<&str>,
) -> Result<PathBuf, ServerError> {
    let (filename, annotated) = split_annotation(filename);
    if filename.is_empty() || filename.starts_with('/') || filename.contains("..") {
        return Err(ServerError::bad_request("invalid filename"));
    }
    let folder = folder_by_type(folders, annotated.or(type_name).unwrap_or("output"))?;
    let directory =
        confine(folder, subfolder.unwrap_or("")).map_err(|source| ServerError::Path {
            field: "subfolder",
            source,
        })?;
    let base_name = filename.rsplit('/').next().unwrap_or(filename);
    confine(&directory, base_name).map_err(|source| ServerError::Path {
        field: "filename",
        source,
    })
}

/// Saves an upload as `name` in `directory` (created if needed). Unless `overwrite`, a taken
/// name with different content becomes `name (1).ext`, `name (2).ext`, ...; identical content
/// reuses the existing file. Returns the name used.
pub(crate) fn save_upload(
    directory: &Path,
    name: &str,
    bytes: &[u8],
    overwrite: bool,
) -> Result<String, ServerError> {
    let target = |name: &str| {
        confine(directory, name).map_err(|source| ServerError::Path {
            field: "filename",
            source,
        })
    };
    let mut chosen = name.to_owned();
    let mut path = target(&chosen)?;
    if !overwrite {
        let (stem, extension) = split_extension(name);
        let digest = Sha256::digest(bytes);
        let mut counter = 1_u32;
        while path.exists() {
            let existing = std::fs::read(&path).map_err(ServerError::io(&path))?;
            if Sha256::digest(&existing) == digest {
                return Ok(chosen);
            }
            chosen = format!("{stem} ({counter}){extension}");
            path = target(&chosen)?;
            counter = counter
                .checked_add(1)
                .ok_or_else(|| ServerError::AlreadyExists {
                    what: format!("upload '{name}'"),
                })?;
        }
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(ServerError::io(parent))?;
    }
    write_atomically(&path, bytes)?;
    Ok(chosen)
}

/// The upload folder for `type` (default `input`) and `subfolder`, created if needed.
pub(crate) fn upload_directory(
    folders: &FolderPaths,
    type_name: Option<&str>,
    subfolder: &str,
) -> Result<PathBuf, ServerError> {
    let folder = folder_by_type(folders, type_name.unwrap_or("input"))?;
    std::fs::create_dir_all(folder).map_err(ServerError::io(folder))?;
    let directory = confine(folder, subfolder).map_err(|source| ServerError::Path {
        field: "subfolder",
        source,
    })?;
    std::fs::create_dir_all(&directory).map_err(ServerError::io(&directory))?;
    Ok(directory)
}

/// Python's `os.path.splitext`: (`name`, `.ext`), a leading dot is not an extension.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if name[..dot].bytes().any(|byte| byte != b'.' && byte != b'/') => {
            if name[dot..].contains('/') {
                (name, "")
            } else {
                (&name[..dot], &name[dot..])
            }
        }
        _ => (name, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folders(dir: &Path) -> FolderPaths {
        FolderPaths::builder()
            .base_directory(dir)
            .load_base_extra_model_paths(false)
            .build()
            .unwrap()
    }

    #[test]
    fn annotations_override_the_type() {
        assert_eq!(split_annotation("a.png [temp]"), ("a.png", Some("temp")));
        assert_eq!(split_annotation("a.png"), ("a.png", None));
        let dir = tempfile::tempdir().unwrap();
        let folders = folders(dir.path());
        std::fs::create_dir_all(folders.temp_directory()).unwrap();
        let path = view_path(&folders, "a.png [temp]", Some("output"), None).unwrap();
        assert!(path.ends_with("temp/a.png"));
        assert!(matches!(
            view_path(&folders, "../x.png", None, None),
            Err(ServerError::BadRequest { .. })
        ));
        assert!(matches!(
            view_path(&folders, "x.png", Some("models"), None),
            Err(ServerError::UnknownFolderType { .. })
        ));
    }

    #[test]
    fn duplicate_names_are_renamed_unless_identical() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            save_upload(dir.path(), "a.png", b"one", false).unwrap(),
            "a.png"
        );
        assert_eq!(
            save_upload(dir.path(), "a.png", b"one", false).unwrap(),
            "a.png"
        );
        assert_eq!(
            save_upload(dir.path(), "a.png", b"two", false).unwrap(),
            "a (1).png"
        );
        assert_eq!(
            save_upload(dir.path(), "a.png", b"three", false).unwrap(),
            "a (2).png"
        );
        assert_eq!(
            save_upload(dir.path(), "a.png", b"four", true).unwrap(),
            "a.png"
        );
        assert_eq!(std::fs::read(dir.path().join("a.png")).unwrap(), b"four");
        assert_eq!(split_extension(".hidden"), (".hidden", ""));
        assert_eq!(split_extension("x.tar.gz"), ("x.tar", ".gz"));
    }
}
