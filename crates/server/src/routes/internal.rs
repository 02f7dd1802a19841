//! `/internal/*` (not duplicated under `/api`): logs for the terminal panel, the folder
//! table, and file listings of the input/output/temp folders.

use axum::extract::{Path, State};
use axum::Json as Reply;
use serde_json::{json, Map, Value as Json};

use crate::error::ApiResult;
use crate::files::folder_by_type;
use crate::state::{blocking, AppState};

/// `GET /internal/logs`: the recent log text.
pub(crate) async fn logs(State(state): State<AppState>) -> Reply<Json> {
    Reply(Json::String(state.config().logs.text()))
}

/// `GET /internal/logs/raw`: `{"entries": [{"t", "m"}], "size": {...}}`.
pub(crate) async fn logs_raw(State(state): State<AppState>) -> Reply<Json> {
    Reply(state.config().logs.raw_json())
}

/// `PATCH /internal/logs/subscribe`: accepted; logs are not streamed over the socket.
pub(crate) async fn logs_subscribe() -> Reply<Json> {
    Reply(json!({}))
}

/// `GET /internal/folder_paths`: `{key: [paths]}`.
pub(crate) async fn folder_paths(State(state): State<AppState>) -> Reply<Json> {
    let folders = &state.config().folders;
    let map: Map<String, Json> = folders
        .keys()
        .map(|key| {
            let paths: Vec<String> = folders
                .folder_paths(key)
                .unwrap_or_default()
                .iter()
                .map(|path| path.display().to_string())
                .collect();
            (key.to_owned(), json!(paths))
        })
        .collect();
    Reply(Json::Object(map))
}

/// `GET /internal/files/{output|input|temp}`: file names, newest first.
pub(crate) async fn files(
    State(state): State<AppState>,
    Path(type_name): Path<String>,
) -> ApiResult<Reply<Json>> {
    let folders = state.config().folders.clone();
    blocking(move || {
        let folder = folder_by_type(&folders, &type_name)?;
        let mut files: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(folder)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
            .map(|entry| {
                let modified = entry
                    .metadata()
                    .and_then(|meta| meta.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (modified, entry.file_name().to_string_lossy().into_owned())
            })
            .collect();
        files.sort_by(|a, b| b.cmp(a));
        Ok(Reply(json!(files
            .into_iter()
            .map(|(_, name)| name)
            .collect::<Vec<_>>())))
    })
    .await
}
