//! `/userdata` and `/v2/userdata`: saved workflows and other user files. `{file}` arrives
//! percent-encoded as one segment (`workflows%2Fa.json`) and is decoded by the router.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json as Reply;
use serde_json::Value as Json;

use super::wire::QueryArgs;
use crate::error::{ApiResult, ServerError};
use crate::security::RawBody;
use crate::state::{blocking, AppState};

type Args = Query<HashMap<String, String>>;

/// `GET /userdata?dir=D&recurse=&full_info=&split=`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Args,
) -> ApiResult<Reply<Json>> {
    let query = QueryArgs(query);
    let dir = query
        .text("dir")
        .ok_or_else(|| ServerError::bad_request("dir is required"))?
        .to_owned();
    let (recurse, full_info, split) = (
        query.flag("recurse", false),
        query.flag("full_info", false),
        query.flag("split", false),
    );
    blocking(move || {
        state
            .users()
            .list(&dir, recurse, full_info, split)
            .map(Reply)
    })
    .await
}

/// `GET /v2/userdata?path=P`.
pub(crate) async fn list_v2(
    State(state): State<AppState>,
    Query(query): Args,
) -> ApiResult<Reply<Json>> {
    let path = QueryArgs(query).text("path").unwrap_or("").to_owned();
    blocking(move || state.users().list_v2(&path).map(Reply)).await
}

/// `GET /userdata/{file}`: the file's bytes.
pub(crate) async fn read(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> ApiResult<Response> {
    let (path, bytes) = blocking(move || state.users().read(&file)).await?;
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    Ok(([(CONTENT_TYPE, mime.essence_str().to_owned())], bytes).into_response())
}

/// `POST /userdata/{file}?overwrite=true&full_info=false`: the body is the file.
pub(crate) async fn write(
    State(state): State<AppState>,
    Path(file): Path<String>,
    Query(query): Args,
    RawBody(bytes): RawBody,
) -> ApiResult<Reply<Json>> {
    let query = QueryArgs(query);
    let (overwrite, full_info) = (
        query.flag("overwrite", true),
        query.flag("full_info", false),
    );
    blocking(move || {
        state
            .users()
            .write(&file, &bytes, overwrite, full_info)
            .map(Reply)
    })
    .await
}

/// `DELETE /userdata/{file}`: 204.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> ApiResult<StatusCode> {
    blocking(move || state.users().delete(&file)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /userdata/{file}/move/{dest}?overwrite=true&full_info=false`.
pub(crate) async fn rename(
    State(state): State<AppState>,
    Path((file, destination)): Path<(String, String)>,
    Query(query): Args,
) -> ApiResult<Reply<Json>> {
    let query = QueryArgs(query);
    let (overwrite, full_info) = (
        query.flag("overwrite", true),
        query.flag("full_info", false),
    );
    blocking(move || {
        state
            .users()
            .rename(&file, &destination, overwrite, full_info)
            .map(Reply)
    })
    .await
}
