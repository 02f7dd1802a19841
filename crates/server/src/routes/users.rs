//! `/users` and `/settings`: the single user and their settings file.

use axum::extract::{Path, State};
use axum::Json as Reply;
use serde_json::Value as Json;

use crate::error::{ApiResult, ServerError};
use crate::security::JsonBody;
use crate::state::{blocking, AppState};

/// `GET /users`: single-user storage on the server.
pub(crate) async fn users(State(state): State<AppState>) -> Reply<Json> {
    Reply(state.users().users_json())
}

/// `POST /users` with `{"username"}`: the new user's id; a taken name is a 400.
pub(crate) async fn add_user(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> ApiResult<Reply<Json>> {
    let username = body
        .get("username")
        .and_then(Json::as_str)
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ServerError::bad_request("username is required"))?
        .to_owned();
    blocking(move || match state.users().add_user(&username) {
        Ok(id) => Ok(Reply(Json::String(id))),
        Err(ServerError::AlreadyExists { .. }) => {
            Err(ServerError::bad_request("Duplicate username."))
        }
        Err(error) => Err(error),
    })
    .await
}

/// `GET /settings`: every setting.
pub(crate) async fn settings(State(state): State<AppState>) -> ApiResult<Reply<Json>> {
    blocking(move || state.users().settings().map(|map| Reply(Json::Object(map)))).await
}

/// `GET /settings/{id}`: one setting or `null`.
pub(crate) async fn setting(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Reply<Json>> {
    blocking(move || state.users().setting(&id).map(Reply)).await
}

/// `POST /settings` with an object: merged into the settings.
pub(crate) async fn merge_settings(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> ApiResult<()> {
    let Json::Object(values) = body else {
        return Err(ServerError::bad_request("settings must be a JSON object"));
    };
    blocking(move || state.users().merge_settings(values)).await
}

/// `POST /settings/{id}` with any JSON value; an empty body unsets it.
pub(crate) async fn set_setting(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(value): JsonBody,
) -> ApiResult<()> {
    blocking(move || state.users().set_setting(&id, value)).await
}
