//! Kiln's workflow engine: the [`Node`] trait node classes implement, the [`NodeRegistry`]
//! that lists them, and everything ComfyUI does with a prompt between `POST /prompt` and the
//! history entry — parsing, validation with ComfyUI's exact error JSON, demand-driven
//! execution with the classic between-prompt output cache, WebSocket-shaped events, and
//! conversion of UI-format workflows into API prompts. It knows nothing about diffusion.
//!
//! Main types:
//! - [`Node`] + [`NodeSchema`] (ComfyUI's `INPUT_TYPES`/`RETURN_TYPES`/... as data, rendered
//!   by [`NodeSchema::to_object_info`]) + [`NodeRegistry`] (`/object_info` for all classes).
//! - [`Value`] / [`TypedObject`]: what flows between nodes; [`NodeInputs`] (typed getters),
//!   [`NodeOutput`] (values plus the UI dict), [`NodeError`].
//! - [`ExecutionContext`]: prompt id, node id, extra data, [`InterruptFlag`], progress and
//!   previews, and the services the nodes crate downcasts to its own type.
//! - [`Validator`] → [`ValidatedPrompt`] or [`ValidationFailure`] (the HTTP 400 body).
//! - [`Executor`] runs an [`ExecutionRequest`], reporting [`ExecutionEvent`]s (serialisable to
//!   the WebSocket JSON) to an [`ExecutionObserver`]; returns an [`ExecutionOutcome`] (history
//!   `outputs`/`meta`) or an [`ExecutionFailure`].
//! - [`workflow_to_prompt`] (UI workflow → API prompt) and [`workflow_from_png`].
//!
//! A node, then the whole path of a prompt:
//!
//! ```
//! use std::sync::Arc;
//! use kiln_graph::{
//!     ExecutionContext, ExecutionEvent, ExecutionRequest, Executor, InputSpec, IntInput, Node,
//!     NodeError, NodeInputs, NodeOutput, NodeRegistry, NodeSchema, Validator,
//! };
//!
//! struct ShowNumber;
//!
//! impl Node for ShowNumber {
//!     fn schema(&self) -> NodeSchema {
//!         NodeSchema::new("ShowNumber")
//!             .input(InputSpec::required("value", IntInput::new(0, 0, 10)))
//!             .output_node()
//!     }
//!     fn execute(
//!         &self,
//!         inputs: &NodeInputs,
//!         _ctx: &mut ExecutionContext<'_>,
//!     ) -> Result<NodeOutput, NodeError> {
//!         let value = inputs.int("value")?;
//!         Ok(NodeOutput::ui(serde_json::json!({"text": [value.to_string()]})))
//!     }
//! }
//!
//! let mut registry = NodeRegistry::new();
//! registry.register(ShowNumber)?;
//! let info = registry.object_info(&|_folder| Vec::new());
//! assert_eq!(info["ShowNumber"]["input"]["required"]["value"][0], "INT");
//!
//! let registry = Arc::new(registry);
//! let no_folders = |_: &str| Vec::new();
//! let prompt = serde_json::json!({"1": {"class_type": "ShowNumber", "inputs": {"value": "7"}}});
//! let validated = Validator::new(&registry, &no_folders)
//!     .validate(&prompt)
//!     .map_err(|failure| failure.to_json())
//!     .expect("valid");
//! let mut executor = Executor::new(registry, Arc::new(()));
//! let mut events: Vec<ExecutionEvent> = Vec::new();
//! let outcome = executor
//!     .execute(&ExecutionRequest::new("prompt-1", validated), &mut events)
//!     .expect("runs");
//! assert_eq!(outcome.outputs_json(), serde_json::json!({"1": {"text": ["7"]}}));
//! assert!(events.last().is_some_and(ExecutionEvent::is_final));
//! # Ok::<(), kiln_graph::GraphError>(())
//! ```
#![deny(missing_docs)]

mod cache;
mod coerce;
mod context;
mod error;
mod event;
mod execution_list;
mod executor;
mod inputs;
mod node;
mod object_info;
mod png_metadata;
mod prompt;
mod pyfmt;
mod registry;
mod schema;
mod ui_graph;
mod ui_workflow;
mod validate;
mod validation_error;
mod value;

pub use context::{ExecutionContext, InterruptFlag};
pub use error::{GraphError, NodeError};
pub use event::{
    ExecutionEvent, ExecutionObserver, NodeProgress, NodeState, PreviewFormat, PreviewImage,
};
pub use executor::{ExecutionFailure, ExecutionOutcome, ExecutionRequest, Executor};
pub use inputs::NodeInputs;
pub use node::Node;
pub use png_metadata::{workflow_from_png, WorkflowSource};
pub use prompt::{is_link, Link, Prompt, PromptInput, PromptNode};
pub use registry::{NodeRegistry, RegisteredNode};
pub use schema::{
    BooleanInput, ChangePolicy, ComboInput, ComboSource, FloatInput, HiddenKind, InputKind,
    InputSpec, InputType, IntInput, NodeSchema, OutputSpec, StringInput,
};
pub use ui_workflow::workflow_to_prompt;
pub use validate::{ValidatedPrompt, Validator};
pub use validation_error::{
    node_errors_to_json, NodeErrors, NodeValidationErrors, ValidationError, ValidationErrorType,
    ValidationFailure,
};
pub use value::{NodeOutput, TypedObject, Value};
