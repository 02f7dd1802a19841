//! [`ServerEvent`]: what the engine fans out to WebSocket sessions over a `broadcast` channel.

use kiln_graph::ExecutionEvent;

/// One message on the engine's event bus.
#[derive(Clone, Debug)]
#[non_exhaustive]
// Always sent behind an `Arc`, so the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum ServerEvent {
    /// The queue changed: `status` for every socket.
    Status {
        /// Pending plus running prompts.
        queue_remaining: usize,
    },
    /// An event of a running prompt, for the socket named by `client_id` (or, without one,
    /// for every socket when [`ExecutionEvent::broadcast_without_client`] says so).
    Execution {
        /// The prompt's `client_id`.
        client_id: Option<String>,
        /// The event.
        event: ExecutionEvent,
    },
    /// A socket opened for `client_id`; older sockets with that id close (ComfyUI keeps one
    /// socket per id).
    ClientConnected {
        /// The socket's id.
        client_id: String,
        /// A number unique to the new socket.
        connection: u64,
    },
}
