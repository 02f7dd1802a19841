//! [`ExecutionEvent`]: what the executor reports while running a prompt, one variant per
//! ComfyUI WebSocket message, and the [`ExecutionObserver`] that receives them.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value as Json};

/// An encoded preview image a node reports with its progress (sampler previews).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviewImage {
    /// The encoding of `bytes`.
    pub format: PreviewFormat,
    /// The encoded image.
    pub bytes: Vec<u8>,
}

/// The encoding of a [`PreviewImage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreviewFormat {
    /// JPEG (ComfyUI's default, quality 95).
    Jpeg,
    /// PNG.
    Png,
}

impl PreviewFormat {
    /// The code in binary `PREVIEW_IMAGE` frames (`1` JPEG, `2` PNG).
    pub fn frame_code(self) -> u32 {
        match self {
            PreviewFormat::Jpeg => 1,
            PreviewFormat::Png => 2,
        }
    }

    /// The MIME type in `PREVIEW_IMAGE_WITH_METADATA` frames.
    pub fn mime_type(self) -> &'static str {
        match self {
            PreviewFormat::Jpeg => "image/jpeg",
            PreviewFormat::Png => "image/png",
        }
    }
}

/// A node's state in `progress_state` messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Not started (never sent).
    Pending,
    /// Executing.
    Running,
    /// Done or served from cache.
    Finished,
    /// Failed.
    Error,
}

impl NodeState {
    /// The wire name (`"running"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Pending => "pending",
            NodeState::Running => "running",
            NodeState::Finished => "finished",
            NodeState::Error => "error",
        }
    }
}

/// One node's entry in a `progress_state` message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeProgress {
    /// Where the node is.
    pub state: NodeState,
    /// Steps done.
    pub value: f64,
    /// Steps in all.
    pub max: f64,
}

/// An event of one prompt's execution, in the order ComfyUI sends them:
/// `execution_start`, `execution_cached`, then per node `progress_state`/`executing`/`progress`
/// (+ previews)/`executed`, then `execution_success` | `execution_error` |
/// `execution_interrupted`, and finally `executing` with `node: null`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ExecutionEvent {
    /// The prompt started.
    ExecutionStart {
        /// The prompt id.
        prompt_id: String,
        /// Milliseconds since the Unix epoch.
        timestamp: u64,
    },
    /// Nodes of the prompt whose outputs are served from the cache.
    ExecutionCached {
        /// The prompt id.
        prompt_id: String,
        /// Cached node ids, in prompt order.
        nodes: Vec<String>,
        /// Milliseconds since the Unix epoch.
        timestamp: u64,
    },
    /// A node starts executing; `node: None` marks the end of the prompt.
    Executing {
        /// The prompt id.
        prompt_id: String,
        /// The node id, or `None` when the prompt is done.
        node: Option<String>,
        /// The id the UI shows (same as `node` for prompts without expansion).
        display_node: Option<String>,
    },
    /// Step progress of the running node.
    Progress {
        /// The prompt id.
        prompt_id: String,
        /// The node id.
        node: String,
        /// Steps done.
        value: u64,
        /// Steps in all.
        max: u64,
    },
    /// The states of every started node of the prompt (drives the frontend's highlight).
    ProgressState {
        /// The prompt id.
        prompt_id: String,
        /// Non-pending nodes by id.
        nodes: BTreeMap<String, NodeProgress>,
    },
    /// A preview image of the running node (a binary WebSocket frame, no JSON).
    Preview {
        /// The prompt id.
        prompt_id: String,
        /// The node id.
        node: String,
        /// The id the UI shows.
        display_node: String,
        /// The image.
        image: PreviewImage,
    },
    /// A node produced UI output (also sent for output nodes served from cache).
    Executed {
        /// The prompt id.
        prompt_id: String,
        /// The node id.
        node: String,
        /// The id the UI shows.
        display_node: String,
        /// The node's UI dict, e.g. `{"images": [...]}`; `None` for a cached node without one.
        output: Option<Json>,
    },
    /// The prompt finished without error.
    ExecutionSuccess {
        /// The prompt id.
        prompt_id: String,
        /// Milliseconds since the Unix epoch.
        timestamp: u64,
    },
    /// A node failed; the prompt stopped.
    ExecutionError {
        /// The prompt id.
        prompt_id: String,
        /// The failing node.
        node_id: String,
        /// Its class type.
        node_type: String,
        /// Nodes that ran before it in this prompt.
        executed: Vec<String>,
        /// The error message.
        exception_message: String,
        /// The error class (`RuntimeError`, `graph.DependencyCycleError`, ...).
        exception_type: String,
        /// Error chain lines (ComfyUI sends a Python traceback).
        traceback: Vec<String>,
        /// The failing node's inputs, `{name: [formatted value]}` (`[]` when the failure is
        /// not a node's, as ComfyUI sends for dependency cycles).
        current_inputs: Json,
        /// Node ids whose outputs were cached when the prompt started.
        current_outputs: Vec<String>,
        /// Milliseconds since the Unix epoch.
        timestamp: u64,
    },
    /// The prompt was interrupted.
    ExecutionInterrupted {
        /// The prompt id.
        prompt_id: String,
        /// The node that was running.
        node_id: String,
        /// Its class type.
        node_type: String,
        /// Nodes that ran before it in this prompt.
        executed: Vec<String>,
        /// Milliseconds since the Unix epoch.
        timestamp: u64,
    },
}

impl ExecutionEvent {
    /// The WebSocket message type (`"executing"`, ...); `"preview"` for previews.
    pub fn event_type(&self) -> &'static str {
        match self {
            ExecutionEvent::ExecutionStart { .. } => "execution_start",
            ExecutionEvent::ExecutionCached { .. } => "execution_cached",
            ExecutionEvent::Executing { .. } => "executing",
            ExecutionEvent::Progress { .. } => "progress",
            ExecutionEvent::ProgressState { .. } => "progress_state",
            ExecutionEvent::Preview { .. } => "preview",
            ExecutionEvent::Executed { .. } => "executed",
            ExecutionEvent::ExecutionSuccess { .. } => "execution_success",
            ExecutionEvent::ExecutionError { .. } => "execution_error",
            ExecutionEvent::ExecutionInterrupted { .. } => "execution_interrupted",
        }
    }

    /// The prompt this event belongs to.
    pub fn prompt_id(&self) -> &str {
        match self {
            ExecutionEvent::ExecutionStart { prompt_id, .. }
            | ExecutionEvent::ExecutionCached { prompt_id, .. }
            | ExecutionEvent::Executing { prompt_id, .. }
            | ExecutionEvent::Progress { prompt_id, .. }
            | ExecutionEvent::ProgressState { prompt_id, .. }
            | ExecutionEvent::Preview { prompt_id, .. }
            | ExecutionEvent::Executed { prompt_id, .. }
            | ExecutionEvent::ExecutionSuccess { prompt_id, .. }
            | ExecutionEvent::ExecutionError { prompt_id, .. }
            | ExecutionEvent::ExecutionInterrupted { prompt_id, .. } => prompt_id,
        }
    }

    /// Whether ComfyUI sends this event to every socket when the prompt has no `client_id`
    /// (`progress`, `progress_state`, previews, `execution_interrupted`); the others then go
    /// nowhere.
    pub fn broadcast_without_client(&self) -> bool {
        matches!(
            self,
            ExecutionEvent::Progress { .. }
                | ExecutionEvent::ProgressState { .. }
                | ExecutionEvent::Preview { .. }
                | ExecutionEvent::ExecutionInterrupted { .. }
        )
    }

    /// Whether this is the final `executing` with `node: null`.
    pub fn is_final(&self) -> bool {
        matches!(self, ExecutionEvent::Executing { node: None, .. })
    }

    /// Whether the event goes into the history's `status.messages` (ComfyUI records the
    /// `execution_*` events only).
    pub fn is_status_message(&self) -> bool {
        matches!(
            self,
            ExecutionEvent::ExecutionStart { .. }
                | ExecutionEvent::ExecutionCached { .. }
                | ExecutionEvent::ExecutionSuccess { .. }
                | ExecutionEvent::ExecutionError { .. }
                | ExecutionEvent::ExecutionInterrupted { .. }
        )
    }

    /// The message's `data` object, or `None` for previews (sent as binary frames).
    pub fn data(&self) -> Option<Json> {
        let data = match self {
            ExecutionEvent::ExecutionStart {
                prompt_id,
                timestamp,
            }
            | ExecutionEvent::ExecutionSuccess {
                prompt_id,
                timestamp,
            } => json!({"prompt_id": prompt_id, "timestamp": timestamp}),
            ExecutionEvent::ExecutionCached {
                prompt_id,
                nodes,
                timestamp,
            } => json!({"nodes": nodes, "prompt_id": prompt_id, "timestamp": timestamp}),
            ExecutionEvent::Executing {
                prompt_id,
                node: Some(node),
                display_node,
            } => json!({"node": node, "display_node": display_node, "prompt_id": prompt_id}),
            ExecutionEvent::Executing {
                prompt_id,
                node: None,
                ..
            } => json!({"node": null, "prompt_id": prompt_id}),
            ExecutionEvent::Progress {
                prompt_id,
                node,
                value,
                max,
            } => json!({"value": value, "max": max, "prompt_id": prompt_id, "node": node}),
            ExecutionEvent::ProgressState { prompt_id, nodes } => {
                let nodes: Map<String, Json> = nodes
                    .iter()
                    .filter(|(_, progress)| progress.state != NodeState::Pending)
                    .map(|(node_id, progress)| {
                        (
                            node_id.clone(),
                            json!({
                                "value": progress.value,
                                "max": progress.max,
                                "state": progress.state.as_str(),
                                "node_id": node_id,
                                "prompt_id": prompt_id,
                                "display_node_id": node_id,
                                "parent_node_id": null,
                                "real_node_id": node_id,
                            }),
                        )
                    })
                    .collect();
                json!({"prompt_id": prompt_id, "nodes": nodes})
            }
            ExecutionEvent::Preview { .. } => return None,
            ExecutionEvent::Executed {
                prompt_id,
                node,
                display_node,
                output,
            } => json!({"node": node, "display_node": display_node, "output": output,
                        "prompt_id": prompt_id}),
            ExecutionEvent::ExecutionError {
                prompt_id,
                node_id,
                node_type,
                executed,
                exception_message,
                exception_type,
                traceback,
                current_inputs,
                current_outputs,
                timestamp,
            } => json!({
                "prompt_id": prompt_id, "node_id": node_id, "node_type": node_type,
                "executed": executed, "exception_message": exception_message,
                "exception_type": exception_type, "traceback": traceback,
                "current_inputs": current_inputs, "current_outputs": current_outputs,
                "timestamp": timestamp,
            }),
            ExecutionEvent::ExecutionInterrupted {
                prompt_id,
                node_id,
                node_type,
                executed,
                timestamp,
            } => json!({
                "prompt_id": prompt_id, "node_id": node_id, "node_type": node_type,
                "executed": executed, "timestamp": timestamp,
            }),
        };
        Some(data)
    }

    /// The WebSocket text message `{"type": ..., "data": {...}}`, or `None` for previews.
    pub fn to_ws_json(&self) -> Option<Json> {
        self.data()
            .map(|data| json!({"type": self.event_type(), "data": data}))
    }

    /// For previews: the JSON metadata of a `PREVIEW_IMAGE_WITH_METADATA` frame.
    pub fn preview_metadata(&self) -> Option<Json> {
        match self {
            ExecutionEvent::Preview {
                prompt_id,
                node,
                display_node,
                image,
            } => Some(json!({
                "node_id": node, "prompt_id": prompt_id, "display_node_id": display_node,
                "parent_node_id": null, "real_node_id": node,
                "image_type": image.format.mime_type(),
            })),
            _ => None,
        }
    }
}

/// Milliseconds since the Unix epoch, as ComfyUI stamps its events.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Receives a prompt's events as they happen, on the executing thread.
///
/// Closures `FnMut(ExecutionEvent) + Send` are observers; so is `Vec<ExecutionEvent>`
/// (collects everything, handy in tests).
pub trait ExecutionObserver: Send {
    /// Called once per event, in order.
    fn on_event(&mut self, event: ExecutionEvent);
}

impl<F: FnMut(ExecutionEvent) + Send> ExecutionObserver for F {
    fn on_event(&mut self, event: ExecutionEvent) {
        self(event);
    }
}

impl ExecutionObserver for Vec<ExecutionEvent> {
    fn on_event(&mut self, event: ExecutionEvent) {
        self.push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executing_null_has_no_display_node() {
        let done = ExecutionEvent::Executing {
            prompt_id: "p".into(),
            node: None,
            display_node: None,
        };
        assert!(done.is_final());
        assert_eq!(
            done.to_ws_json().unwrap(),
            json!({"type": "executing", "data": {"node": null, "prompt_id": "p"}})
        );
    }

    #[test]
    fn progress_state_skips_pending_nodes() {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "3".to_owned(),
            NodeProgress {
                state: NodeState::Running,
                value: 2.0,
                max: 20.0,
            },
        );
        nodes.insert(
            "4".to_owned(),
            NodeProgress {
                state: NodeState::Pending,
                value: 0.0,
                max: 1.0,
            },
        );
        let event = ExecutionEvent::ProgressState {
            prompt_id: "p".into(),
            nodes,
        };
        let data = event.data().unwrap();
        assert_eq!(
            data["nodes"],
            json!({"3": {"value": 2.0, "max": 20.0, "state": "running", "node_id": "3",
                         "prompt_id": "p", "display_node_id": "3", "parent_node_id": null,
                         "real_node_id": "3"}})
        );
    }

    #[test]
    fn previews_have_no_text_message() {
        let event = ExecutionEvent::Preview {
            prompt_id: "p".into(),
            node: "3".into(),
            display_node: "3".into(),
            image: PreviewImage {
                format: PreviewFormat::Jpeg,
                bytes: vec![1, 2],
            },
        };
        assert!(event.to_ws_json().is_none());
        assert_eq!(
            event.preview_metadata().unwrap()["image_type"],
            "image/jpeg"
        );
        assert!(event.broadcast_without_client());
    }
}
