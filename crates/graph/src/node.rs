//! The [`Node`] trait: one node class (ComfyUI's `NODE_CLASS_MAPPINGS` entry), implemented by
//! `kiln-nodes` and listed once in a [`crate::NodeRegistry`].

use std::any::Any;

use crate::context::ExecutionContext;
use crate::error::NodeError;
use crate::inputs::NodeInputs;
use crate::schema::NodeSchema;
use crate::value::NodeOutput;

/// A node class.
///
/// One value per class is registered and shared by every prompt and every instance of the
/// class in a prompt, so implementations keep no per-run state in `self`; anything that must
/// persist (loaded models) lives in the services the engine hands to
/// [`ExecutionContext::services`].
///
/// ```
/// use kiln_graph::{
///     ExecutionContext, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput,
///     NodeSchema, OutputSpec, Value,
/// };
///
/// struct AddOne;
///
/// impl Node for AddOne {
///     fn schema(&self) -> NodeSchema {
///         NodeSchema::new("AddOne")
///             .category("math")
///             .input(InputSpec::required("x", IntInput::new(0, -100, 100)))
///             .output(OutputSpec::new("INT"))
///     }
///
///     fn execute(
///         &self,
///         inputs: &NodeInputs,
///         ctx: &mut ExecutionContext<'_>,
///     ) -> Result<NodeOutput, NodeError> {
///         ctx.check_interrupted()?;
///         Ok(NodeOutput::new(vec![Value::Int(i128::from(inputs.int("x")?) + 1)]))
///     }
/// }
/// ```
pub trait Node: Send + Sync {
    /// The class's interface. Called once, at registration.
    fn schema(&self) -> NodeSchema;

    /// Runs the node. `inputs` holds every given input by name, literals already coerced to
    /// the declared types, links resolved to upstream outputs and hidden inputs injected.
    /// Long-running nodes call [`ExecutionContext::check_interrupted`] regularly and report
    /// [`ExecutionContext::progress`].
    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError>;

    /// For [`crate::ChangePolicy::Fingerprint`] classes: a value that changes whenever the
    /// node's result would (LoadImage hashes its file). Only literal inputs are present, as in
    /// ComfyUI's `IS_CHANGED`. `None` means "cannot tell": the node runs again.
    fn fingerprint(&self, inputs: &NodeInputs) -> Option<String> {
        let _ = inputs;
        None
    }

    /// What the executor actually calls for [`crate::ChangePolicy::Fingerprint`] classes:
    /// [`Node::fingerprint`] plus the engine's services (the same value
    /// [`ExecutionContext::services`] downcasts), for nodes that need folder paths to find what
    /// they hash. The default ignores the services and calls [`Node::fingerprint`].
    fn fingerprint_with_services(
        &self,
        inputs: &NodeInputs,
        services: &(dyn Any + Send + Sync),
    ) -> Option<String> {
        let _ = services;
        self.fingerprint(inputs)
    }
}
