//! `/history`: finished prompts with their outputs, read straight from the database.

use axum::extract::{Path, Query, State};
use axum::Json as Reply;
use serde_json::Value as Json;

use super::wire::{delete_ids, wants_clear, QueryArgs};
use crate::error::ApiResult;
use crate::security::JsonBody;
use crate::state::AppState;

/// `GET /history?max_items=N&offset=K`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Reply<Json>> {
    let query = QueryArgs(query);
    let max_items = query.number::<usize>("max_items")?;
    let offset = query.number::<i64>("offset")?;
    let entries = state
        .read(move |store| store.history(max_items, offset))
        .await?;
    Ok(Reply(Json::Object(entries)))
}

/// `GET /history/{prompt_id}`: `{prompt_id: entry}` or `{}`.
pub(crate) async fn entry(
    State(state): State<AppState>,
    Path(prompt_id): Path<String>,
) -> ApiResult<Reply<Json>> {
    let entry = state
        .read(move |store| store.history_entry(&prompt_id))
        .await?;
    Ok(Reply(Json::Object(entry)))
}

/// `POST /history`: `{"clear": true}` and/or `{"delete": [ids]}`.
pub(crate) async fn edit(State(state): State<AppState>, JsonBody(body): JsonBody) -> ApiResult<()> {
    if wants_clear(&body) {
        state.engine().clear_history().await?;
    }
    if let Some(ids) = delete_ids(&body) {
        state.engine().delete_history(ids).await?;
    }
    Ok(())
}
