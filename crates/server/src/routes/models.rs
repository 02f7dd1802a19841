//! `/models` and `/experiment/models`: the model folders and the files in them.

use std::path::Path as FsPath;
use std::time::UNIX_EPOCH;

use axum::extract::{Path, State};
use axum::Json as Reply;
use kiln_folders::Extensions;
use serde_json::{json, Value as Json};

use crate::error::{ApiResult, ServerError};
use crate::state::{blocking, AppState};

/// Folder keys the model library does not show (as ComfyUI).
const HIDDEN_KEYS: [&str; 2] = ["configs", "custom_nodes"];
/// How deep model folders are walked (symlink loops end here).
const MAX_DEPTH: usize = 32;

/// `GET /models`: the folder keys.
pub(crate) async fn folders(State(state): State<AppState>) -> Reply<Json> {
    let keys: Vec<&str> = state.config().folders.keys().collect();
    Reply(json!(keys))
}

/// `GET /models/{folder}`: the model names in a folder; 404 for an unknown key.
pub(crate) async fn files(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> ApiResult<Reply<Json>> {
    let folders = state.config().folders.clone();
    blocking(move || {
        folders
            .list(&key)
            .map(|names| Reply(json!(names)))
            .map_err(|_| ServerError::not_found(format!("model folder '{key}'")))
    })
    .await
}

/// `GET /experiment/models`: `[{"name", "folders", "extensions"}]`.
pub(crate) async fn experiment_folders(State(state): State<AppState>) -> Reply<Json> {
    let folders = &state.config().folders;
    let entries: Vec<Json> = folders
        .keys()
        .filter(|key| !HIDDEN_KEYS.contains(key))
        .map(|key| {
            let paths: Vec<String> = folders
                .folder_paths(key)
                .unwrap_or_default()
                .iter()
                .map(|path| path.display().to_string())
                .collect();
            let extensions: Vec<&str> = match folders.extensions(key) {
                Some(Extensions::Only(list)) => list.to_vec(),
                _ => Vec::new(),
            };
            json!({"name": key, "folders": paths, "extensions": extensions})
        })
        .collect();
    Reply(Json::Array(entries))
}

/// `GET /experiment/models/{folder}`: `[{"name", "pathIndex", "modified", "created", "size"}]`.
pub(crate) async fn experiment_files(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> ApiResult<Reply<Json>> {
    let folders = state.config().folders.clone();
    blocking(move || {
        let unknown = || ServerError::not_found(format!("model folder '{key}'"));
        if HIDDEN_KEYS.contains(&key.as_str()) {
            return Err(unknown());
        }
        let roots = folders.folder_paths(&key).ok_or_else(unknown)?;
        let extensions = folders.extensions(&key).ok_or_else(unknown)?;
        let mut entries = Vec::new();
        for (index, root) in roots.iter().enumerate() {
            walk(root, root, extensions, index, 0, &mut entries);
        }
        Ok(Reply(Json::Array(entries)))
    })
    .await
}

fn walk(
    root: &FsPath,
    dir: &FsPath,
    extensions: Extensions,
    index: usize,
    depth: usize,
    out: &mut Vec<Json>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_dir() {
            if depth < MAX_DEPTH && name != ".git" {
                walk(root, &path, extensions, index, depth + 1, out);
            }
            continue;
        }
        if !extensions.matches_file(&name) {
            continue;
        }
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        let metadata = std::fs::metadata(&path).ok();
        let seconds = |time: Option<std::time::SystemTime>| {
            time.and_then(|time| time.duration_since(UNIX_EPOCH).ok())
                .map_or(0.0, |elapsed| elapsed.as_secs_f64())
        };
        out.push(json!({
            "name": relative.to_string_lossy(),
            "pathIndex": index,
            "modified": seconds(metadata.as_ref().and_then(|m| m.modified().ok())),
            "created": seconds(metadata.as_ref().and_then(|m| m.created().ok())),
            "size": metadata.map_or(0, |m| m.len()),
        }));
    }
}
