//! The crate's errors: [`NodeError`] (what a node's `execute` returns) and [`GraphError`]
//! (what the engine itself fails on: prompt parsing, registration, UI conversion, PNG reading).
//!
//! Two enums instead of the house-style one: `NodeError` is the contract a node implementation
//! (in `kiln-nodes`) speaks, like TEI's `BackendError` at its backend seam, while `GraphError` is
//! what callers of the engine match on. Execution failures wrap a `NodeError` with the node's
//! id and class in [`crate::ExecutionError`].

use std::error::Error as StdError;

/// Why a node failed to execute. The executor adds the node id and class type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The prompt was interrupted (`POST /interrupt`); reported as `execution_interrupted`.
    #[error("Processing interrupted")]
    Interrupted,
    /// A named input was not given to the node.
    #[error("input '{input}' is missing")]
    MissingInput {
        /// The input name.
        input: String,
    },
    /// A named input holds a value of another kind than the node asked for.
    #[error("input '{input}' should be {expected} but is {found}")]
    InputType {
        /// The input name.
        input: String,
        /// What the node asked for (`INT`, `MODEL`, a Rust type name, ...).
        expected: String,
        /// What the input actually holds.
        found: String,
    },
    /// A node asked for shared services of a type the engine was not given.
    #[error("the engine was not given services of type {expected}")]
    Services {
        /// The Rust type name the node asked for.
        expected: &'static str,
    },
    /// Anything else a node reports: `exception_type` becomes the `execution_error` event's
    /// `exception_type` (ComfyUI reports Python exception classes, e.g. `RuntimeError`).
    #[error("{message}")]
    Failed {
        /// Short error class shown to clients (`ValueError`, `FileNotFoundError`, ...).
        exception_type: String,
        /// Human-readable message shown to clients.
        message: String,
        /// The underlying error, kept for logs.
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
}

impl NodeError {
    /// A failure with an exception class and message and no underlying error.
    pub fn failed(exception_type: impl Into<String>, message: impl Into<String>) -> Self {
        NodeError::Failed {
            exception_type: exception_type.into(),
            message: message.into(),
            source: None,
        }
    }

    /// Wraps any error as a `RuntimeError`-style failure, keeping it as the source.
    pub fn from_error(
        exception_type: impl Into<String>,
        error: impl StdError + Send + Sync + 'static,
    ) -> Self {
        NodeError::Failed {
            exception_type: exception_type.into(),
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    }

    /// The exception class reported to clients in `execution_error`.
    pub fn exception_type(&self) -> &str {
        match self {
            NodeError::Interrupted => "InterruptProcessingException",
            NodeError::MissingInput { .. } | NodeError::InputType { .. } => "ValueError",
            NodeError::Services { .. } => "RuntimeError",
            NodeError::Failed { exception_type, .. } => exception_type,
        }
    }
}

/// Errors of the workflow engine itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Two nodes were registered under the same class type.
    #[error("node class '{class_type}' is registered twice")]
    DuplicateNode {
        /// The class type.
        class_type: String,
    },
    /// A schema is inconsistent (duplicate input names, an empty class type, ...).
    #[error("schema of node class '{class_type}' is invalid: {reason}")]
    InvalidSchema {
        /// The class type.
        class_type: String,
        /// What is wrong.
        reason: String,
    },
    /// An API-format prompt is not shaped as ComfyUI expects.
    #[error("prompt node '{node_id}': {reason}")]
    MalformedPrompt {
        /// The prompt node id (empty when the prompt itself is not an object).
        node_id: String,
        /// What is wrong.
        reason: String,
    },
    /// A UI-format workflow could not be converted to an API prompt.
    #[error("workflow node {node_id}: {reason}")]
    Workflow {
        /// The UI node id (or subgraph path) the problem is at; empty for the whole document.
        node_id: String,
        /// What is wrong.
        reason: String,
    },
    /// A node failed while executing (reported as `execution_error`).
    #[error("node {node_id} ({class_type}) failed: {source}")]
    NodeFailed {
        /// The node's prompt id.
        node_id: String,
        /// Its class type.
        class_type: String,
        /// What the node reported.
        #[source]
        source: NodeError,
    },
    /// The prompt was interrupted while `node_id` was about to run or running.
    #[error("execution interrupted at node {node_id}")]
    Interrupted {
        /// The node's prompt id.
        node_id: String,
    },
    /// The nodes left to run wait on each other.
    #[error("dependency cycle detected among nodes {}", nodes.join(", "))]
    DependencyCycle {
        /// Nodes in (or blocked behind) the cycle; the first is the one blamed.
        nodes: Vec<String>,
    },
    /// A node to execute is not in the prompt, or its class is not registered.
    #[error("node {node_id} cannot run: {reason}")]
    NodeNotFound {
        /// The node id.
        node_id: String,
        /// What is missing.
        reason: String,
    },
    /// A PNG file could not be read for its workflow text chunks.
    #[error("cannot read PNG metadata: {reason}")]
    Png {
        /// What the decoder reported.
        reason: String,
    },
}
