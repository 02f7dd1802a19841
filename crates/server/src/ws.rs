//! The WebSocket `/ws?clientId=`: `status` with `sid` first, the `feature_flags` exchange,
//! then the engine's events for this client (text JSON frames and binary preview frames).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use kiln_graph::ExecutionEvent;
use serde_json::{json, Value as Json};
use tokio::sync::broadcast::error::RecvError;

use crate::engine::ServerEvent;
use crate::routes::info::feature_flags;
use crate::state::AppState;

/// Binary frame type of a preview without metadata (`PREVIEW_IMAGE`).
const PREVIEW_IMAGE: u32 = 1;
/// Binary frame type of a preview with JSON metadata (`PREVIEW_IMAGE_WITH_METADATA`).
const PREVIEW_IMAGE_WITH_METADATA: u32 = 4;
/// Longest client id accepted from the query string.
const MAX_CLIENT_ID: usize = 128;

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// `GET /ws`: upgrades, reusing `clientId` when given (a reconnect) or making one.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let client_id = query
        .get("clientId")
        .filter(|id| is_sane_client_id(id))
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    upgrade.on_upgrade(move |socket| session(socket, state, client_id))
}

fn is_sane_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// One socket's life: greet, then relay events until either side closes.
async fn session(socket: WebSocket, state: AppState, client_id: String) {
    let connection = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    let mut events = state.engine().subscribe();
    state.engine().publish(ServerEvent::ClientConnected {
        client_id: client_id.clone(),
        connection,
    });
    let (mut sink, mut incoming) = socket.split();
    let greeting = json!({"type": "status", "data": {
        "status": {"exec_info": {"queue_remaining": state.engine().queue_remaining()}},
        "sid": client_id,
    }});
    if sink.send(text(&greeting)).await.is_err() {
        return;
    }
    let mut wants_metadata = false;
    loop {
        tokio::select! {
            message = incoming.next() => match message {
                Some(Ok(Message::Text(body))) => {
                    if let Some(flags) = client_feature_flags(&body) {
                        wants_metadata = flags
                            .get("supports_preview_metadata")
                            .and_then(Json::as_bool)
                            .unwrap_or(false);
                        let answer = json!({"type": "feature_flags", "data": feature_flags(&state)});
                        if sink.send(text(&answer)).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            event = events.recv() => match event {
                Ok(event) => {
                    if replaces(&event, &client_id, connection) {
                        let _ = sink.send(Message::Close(None)).await;
                        return;
                    }
                    if let Some(frame) = frame_for(&event, &client_id, wants_metadata) {
                        if sink.send(frame).await.is_err() {
                            return;
                        }
                    }
                }
                // A slow client misses some progress; the next status resynchronises it.
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(%client_id, missed, "websocket lagging; events skipped");
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

fn text(value: &Json) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

/// `{"type": "feature_flags", "data": {...}}` from the client: its data.
fn client_feature_flags(body: &str) -> Option<Json> {
    let message: Json = serde_json::from_str(body).ok()?;
    (message.get("type")?.as_str()? == "feature_flags").then(|| message["data"].clone())
}

/// Whether `event` announces a newer socket with this socket's id.
fn replaces(event: &ServerEvent, client_id: &str, connection: u64) -> bool {
    matches!(event, ServerEvent::ClientConnected { client_id: id, connection: newer }
        if id == client_id && *newer > connection)
}

/// The frame this socket gets for `event`, if any: status for everyone; a prompt's events for
/// its client, or for everyone when ComfyUI broadcasts them (prompts without a client).
pub(crate) fn frame_for(
    event: &Arc<ServerEvent>,
    client_id: &str,
    wants_metadata: bool,
) -> Option<Message> {
    match event.as_ref() {
        ServerEvent::Status { queue_remaining } => Some(text(&json!({
            "type": "status",
            "data": {"status": {"exec_info": {"queue_remaining": queue_remaining}}},
        }))),
        ServerEvent::Execution {
            client_id: target,
            event,
        } => {
            let addressed = match target {
                Some(target) => target == client_id,
                None => event.broadcast_without_client(),
            };
            if !addressed {
                return None;
            }
            match event {
                ExecutionEvent::Preview { image, .. } => {
                    let bytes = preview_frame(
                        event,
                        &image.bytes,
                        image.format.frame_code(),
                        wants_metadata,
                    );
                    Some(Message::Binary(Bytes::from(bytes)))
                }
                _ => event.to_ws_json().map(|message| text(&message)),
            }
        }
        ServerEvent::ClientConnected { .. } => None,
    }
}

/// A binary preview: `[u32 1][u32 format][image]`, or with metadata
/// `[u32 4][u32 metadata length][metadata JSON][image]` (all big-endian).
fn preview_frame(
    event: &ExecutionEvent,
    image: &[u8],
    format_code: u32,
    wants_metadata: bool,
) -> Vec<u8> {
    let metadata = event
        .preview_metadata()
        .filter(|_| wants_metadata)
        .map(|metadata| metadata.to_string());
    let mut frame = Vec::with_capacity(image.len() + 64);
    match metadata {
        Some(metadata) => {
            frame.extend_from_slice(&PREVIEW_IMAGE_WITH_METADATA.to_be_bytes());
            let length = u32::try_from(metadata.len()).unwrap_or(u32::MAX);
            frame.extend_from_slice(&length.to_be_bytes());
            frame.extend_from_slice(metadata.as_bytes());
        }
        None => {
            frame.extend_from_slice(&PREVIEW_IMAGE.to_be_bytes());
            frame.extend_from_slice(&format_code.to_be_bytes());
        }
    }
    frame.extend_from_slice(image);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_graph::{PreviewFormat, PreviewImage};

    fn preview() -> Arc<ServerEvent> {
        Arc::new(ServerEvent::Execution {
            client_id: None,
            event: ExecutionEvent::Preview {
                prompt_id: "p".into(),
                node: "3".into(),
                display_node: "3".into(),
                image: PreviewImage {
                    format: PreviewFormat::Png,
                    bytes: vec![9, 8, 7],
                },
            },
        })
    }

    #[test]
    fn preview_frames_follow_the_negotiated_layout() {
        let Some(Message::Binary(plain)) = frame_for(&preview(), "any", false) else {
            panic!("no frame");
        };
        assert_eq!(&plain[..], &[0, 0, 0, 1, 0, 0, 0, 2, 9, 8, 7]);
        let Some(Message::Binary(with_meta)) = frame_for(&preview(), "any", true) else {
            panic!("no frame");
        };
        assert_eq!(&with_meta[..4], &[0, 0, 0, 4]);
        let length = u32::from_be_bytes([with_meta[4], with_meta[5], with_meta[6], with_meta[7]]);
        let metadata: Json = serde_json::from_slice(&with_meta[8..8 + length as usize]).unwrap();
        assert_eq!(metadata["display_node_id"], "3");
        assert_eq!(metadata["image_type"], "image/png");
        assert_eq!(&with_meta[8 + length as usize..], &[9, 8, 7]);
    }

    #[test]
    fn prompt_events_reach_their_client_only() {
        let executing = |client: Option<&str>| {
            Arc::new(ServerEvent::Execution {
                client_id: client.map(str::to_owned),
                event: ExecutionEvent::Executing {
                    prompt_id: "p".into(),
                    node: Some("1".into()),
                    display_node: Some("1".into()),
                },
            })
        };
        assert!(frame_for(&executing(Some("a")), "a", false).is_some());
        assert!(frame_for(&executing(Some("a")), "b", false).is_none());
        // Without a client, `executing` goes nowhere but previews go everywhere.
        assert!(frame_for(&executing(None), "b", false).is_none());
        assert!(frame_for(&preview(), "b", false).is_some());
        assert!(!is_sane_client_id("../x"));
        assert!(is_sane_client_id("0f3a-b_c"));
    }
}
