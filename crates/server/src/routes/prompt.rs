//! `/prompt`, `/queue`, `/interrupt`, `/free`: submitting prompts (validated here, queued by
//! the engine) and managing the queue.

use axum::extract::State;
use axum::Json as Reply;
use kiln_graph::Validator;
use serde_json::{json, Value as Json};

use super::wire::{delete_ids, wants_clear, PromptRequest};
use crate::engine::Submission;
use crate::error::{ApiResult, ServerError};
use crate::queue::{number_json, QueueItem};
use crate::security::JsonBody;
use crate::state::{blocking, AppState};

/// `POST /prompt`: validate, queue, answer `{prompt_id, number, node_errors}`.
pub(crate) async fn submit(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> ApiResult<Reply<Json>> {
    let request = PromptRequest::from_json(body)?;
    let registry = state.config().registry.clone();
    let combos = state.config().combo_options.clone();
    let (prompt, targets) = (request.prompt, request.partial_execution_targets);
    let validated = blocking(move || {
        Validator::new(&registry, &*combos)
            .partial_execution_targets(targets)
            .validate(&prompt)
            .map_err(|failure| ServerError::Validation(Box::new(failure)))
    })
    .await?;
    let node_errors = validated.node_errors_json();
    let number = state
        .engine()
        .submit(Submission {
            prompt_id: request.prompt_id.clone(),
            prompt: validated.prompt.to_json(),
            outputs: validated.outputs,
            extra_data: request.extra_data,
            client_id: request.client_id,
            number: request.number,
            front: request.front,
        })
        .await?;
    Ok(Reply(json!({
        "prompt_id": request.prompt_id,
        "number": number_json(number),
        "node_errors": node_errors,
    })))
}

/// `GET /prompt`: `{"exec_info": {"queue_remaining": N}}`.
pub(crate) async fn queue_info(State(state): State<AppState>) -> Reply<Json> {
    let remaining = state.engine().queue_remaining();
    Reply(json!({"exec_info": {"queue_remaining": remaining}}))
}

/// `GET /queue`: running and pending items as 5-element arrays.
pub(crate) async fn queue(State(state): State<AppState>) -> ApiResult<Reply<Json>> {
    let (running, pending) = state.read(|store| store.queue()).await?;
    let items = |items: Vec<QueueItem>| items.iter().map(QueueItem::to_json).collect::<Vec<_>>();
    Ok(Reply(
        json!({"queue_running": items(running), "queue_pending": items(pending)}),
    ))
}

/// `POST /queue`: `{"clear": true}` and/or `{"delete": [ids]}` (pending prompts only).
pub(crate) async fn edit_queue(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> ApiResult<()> {
    if wants_clear(&body) {
        state.engine().clear_pending().await?;
    }
    if let Some(ids) = delete_ids(&body) {
        state.engine().delete_pending(ids).await?;
    }
    Ok(())
}

/// `POST /interrupt`: the running prompt, or only `{"prompt_id"}` if that one is running.
pub(crate) async fn interrupt(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> ApiResult<()> {
    let prompt_id = body
        .get("prompt_id")
        .and_then(Json::as_str)
        .map(str::to_owned);
    state.engine().interrupt(prompt_id).await?;
    Ok(())
}

/// `POST /free`: `{"unload_models", "free_memory"}`, done after the running prompt.
pub(crate) async fn free(State(state): State<AppState>, JsonBody(body): JsonBody) -> ApiResult<()> {
    let flag = |key: &str| body.get(key).and_then(Json::as_bool).unwrap_or(false);
    state
        .engine()
        .free(flag("unload_models"), flag("free_memory"))
        .await
}
