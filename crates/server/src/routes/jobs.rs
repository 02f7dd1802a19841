//! `/jobs`: the queue and history as the current frontend reads them (its only source for
//! the queue panel), and job cancellation.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json as Reply;
use serde_json::{json, Value as Json};

use super::wire::QueryArgs;
use crate::error::{ApiResult, ServerError};
use crate::queue::JobStatus;
use crate::security::JsonBody;
use crate::state::AppState;

/// `GET /jobs?status=a,b&limit=L&offset=O&sort_order=asc|desc`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Reply<Json>> {
    let query = QueryArgs(query);
    let statuses = match query.text("status").filter(|text| !text.is_empty()) {
        None => JobStatus::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .map(|name| {
                JobStatus::parse(name.trim())
                    .ok_or_else(|| ServerError::bad_request(format!("unknown job status '{name}'")))
            })
            .collect::<Result<_, _>>()?,
    };
    let limit = query.number::<usize>("limit")?;
    let offset = query.number::<usize>("offset")?.unwrap_or(0);
    let oldest_first = query.text("sort_order") == Some("asc");
    let page = state
        .read(move |store| store.jobs(&statuses, oldest_first, limit.unwrap_or(usize::MAX), offset))
        .await?;
    let limit = limit.unwrap_or(page.total);
    let has_more = offset.saturating_add(page.jobs.len()) < page.total;
    Ok(Reply(json!({
        "jobs": page.jobs,
        "pagination": {"offset": offset, "limit": limit, "total": page.total,
                       "has_more": has_more},
    })))
}

/// `GET /jobs/{id}`: the job with outputs and workflow; 404 when unknown.
pub(crate) async fn detail(
    State(state): State<AppState>,
    Path(prompt_id): Path<String>,
) -> ApiResult<Reply<Json>> {
    let id = prompt_id.clone();
    state
        .read(move |store| store.job(&id))
        .await?
        .map(Reply)
        .ok_or_else(|| ServerError::not_found(format!("job {prompt_id}")))
}

/// `POST /jobs/{id}/cancel`: interrupts it if running, removes it if pending. Idempotent.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(prompt_id): Path<String>,
) -> ApiResult<Reply<Json>> {
    state.engine().cancel(prompt_id).await?;
    Ok(Reply(json!({})))
}

/// `POST /jobs/cancel` with `{"job_ids": [...]}`.
pub(crate) async fn cancel_many(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> ApiResult<Reply<Json>> {
    let ids: Vec<String> = body
        .get("job_ids")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    for id in ids {
        state.engine().cancel(id).await?;
    }
    Ok(Reply(json!({})))
}
