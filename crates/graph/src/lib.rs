//! Kiln's workflow engine: the [`Node`] trait node classes implement, the [`NodeRegistry`]
//! that lists them, and everything ComfyUI does with a prompt between `POST /prompt` and the
//! history entry — parsing, validation with ComfyUI's exact error JSON, demand-driven
//! execution with the classic between-prompt output cache, WebSocket-shaped events, and
//! conversion of UI-format workflows into API prompts. It knows nothing about diffusion.
//!
//! Main types:
//! - [`Node`] + [`NodeSchema`] (ComfyUI's `INPUT_TYPES`/`RETURN_TYPES`/... as data, rendered
//!   by [`NodeSchema::to_object_info`]) + [`NodeRegistry`].
//! - [`Value`] / [`TypedObject`]: what flows between nodes; [`NodeInputs`] (typed getters),
//!   [`NodeOutput`] (values plus the UI dict), [`NodeError`].
//! - [`ExecutionContext`]: prompt id, node id, extra data, [`InterruptFlag`], progress and
//!   previews, and the services the nodes crate downcasts to its own type.
//! - [`ExecutionEvent`] / [`ExecutionObserver`]: `execution_start`, `executing`, `progress`,
//!   `executed`, ... serialisable to the WebSocket JSON.
//!
//! ```
//! use kiln_graph::{
//!     ExecutionContext, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput,
//!     NodeRegistry, NodeSchema, OutputSpec, Value,
//! };
//!
//! struct Constant;
//!
//! impl Node for Constant {
//!     fn schema(&self) -> NodeSchema {
//!         NodeSchema::new("Constant")
//!             .input(InputSpec::required("value", IntInput::new(0, 0, 10)))
//!             .output(OutputSpec::new("INT"))
//!     }
//!     fn execute(
//!         &self,
//!         inputs: &NodeInputs,
//!         _ctx: &mut ExecutionContext<'_>,
//!     ) -> Result<NodeOutput, NodeError> {
//!         Ok(NodeOutput::new(vec![Value::Int(inputs.int("value")?.into())]))
//!     }
//! }
//!
//! let mut registry = NodeRegistry::new();
//! registry.register(Constant)?;
//! let info = registry.object_info(&|_folder| Vec::new());
//! assert_eq!(info["Constant"]["input"]["required"]["value"][0], "INT");
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
