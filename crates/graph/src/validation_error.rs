//! The data of a failed or partly failed validation, in ComfyUI's JSON shape:
//! `{"error": {type, message, details, extra_info}, "node_errors": {id: {errors,
//! dependent_outputs, class_type}}}`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as Json};

/// The `type` of a validation error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ValidationErrorType {
    /// The request had no `prompt` (reported by the server).
    NoPrompt,
    /// The prompt is not shaped as an API prompt.
    InvalidPrompt,
    /// A node has no `class_type`, or one that is not registered.
    MissingNodeType,
    /// No output node (within the partial execution targets).
    PromptNoOutputs,
    /// A required input is absent.
    RequiredInputMissing,
    /// A list input that is not `[node_id, output_index]`.
    BadLinkedInput,
    /// A link's source type does not fit the input type.
    ReturnTypeMismatch,
    /// A literal could not be converted to the input's type.
    InvalidInputType,
    /// A literal below the input's `min`.
    ValueSmallerThanMin,
    /// A literal above the input's `max`.
    ValueBiggerThanMax,
    /// A combo value that is not one of the choices.
    ValueNotInList,
    /// Validating an output node failed unexpectedly (a dangling link, ...).
    ExceptionDuringValidation,
    /// Validating an upstream node failed unexpectedly.
    ExceptionDuringInnerValidation,
    /// Links form a cycle.
    DependencyCycle,
    /// Every output failed validation (the top-level error of a 400 answer).
    PromptOutputsFailedValidation,
}

impl ValidationErrorType {
    /// The wire name (`"value_not_in_list"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationErrorType::NoPrompt => "no_prompt",
            ValidationErrorType::InvalidPrompt => "invalid_prompt",
            ValidationErrorType::MissingNodeType => "missing_node_type",
            ValidationErrorType::PromptNoOutputs => "prompt_no_outputs",
            ValidationErrorType::RequiredInputMissing => "required_input_missing",
            ValidationErrorType::BadLinkedInput => "bad_linked_input",
            ValidationErrorType::ReturnTypeMismatch => "return_type_mismatch",
            ValidationErrorType::InvalidInputType => "invalid_input_type",
            ValidationErrorType::ValueSmallerThanMin => "value_smaller_than_min",
            ValidationErrorType::ValueBiggerThanMax => "value_bigger_than_max",
            ValidationErrorType::ValueNotInList => "value_not_in_list",
            ValidationErrorType::ExceptionDuringValidation => "exception_during_validation",
            ValidationErrorType::ExceptionDuringInnerValidation => {
                "exception_during_inner_validation"
            }
            ValidationErrorType::DependencyCycle => "dependency_cycle",
            ValidationErrorType::PromptOutputsFailedValidation => {
                "prompt_outputs_failed_validation"
            }
        }
    }
}

/// One validation error object.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidationError {
    /// The error type.
    pub error_type: ValidationErrorType,
    /// A short message (`"Required input is missing"`).
    pub message: String,
    /// Details (usually the input name).
    pub details: String,
    /// `extra_info` (`input_name`, `input_config`, `received_value`, ...).
    pub extra_info: Map<String, Json>,
}

impl ValidationError {
    pub(crate) fn new(
        error_type: ValidationErrorType,
        message: impl Into<String>,
        details: impl Into<String>,
        extra_info: Json,
    ) -> Self {
        let extra_info = match extra_info {
            Json::Object(map) => map,
            _ => Map::new(),
        };
        ValidationError {
            error_type,
            message: message.into(),
            details: details.into(),
            extra_info,
        }
    }

    /// The request-level error for a body without `prompt`.
    pub fn no_prompt() -> Self {
        ValidationError::new(
            ValidationErrorType::NoPrompt,
            "No prompt provided",
            "No prompt provided",
            json!({}),
        )
    }

    /// `{"type", "message", "details", "extra_info"}`.
    pub fn to_json(&self) -> Json {
        json!({
            "type": self.error_type.as_str(),
            "message": self.message,
            "details": self.details,
            "extra_info": self.extra_info,
        })
    }
}

/// The errors of one node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeValidationErrors {
    /// The node's own errors.
    pub errors: Vec<ValidationError>,
    /// Output nodes that cannot run because of them.
    pub dependent_outputs: Vec<String>,
    /// The node's class type.
    pub class_type: String,
}

/// `node_errors` by node id.
pub type NodeErrors = BTreeMap<String, NodeValidationErrors>;

/// `node_errors` as JSON.
pub fn node_errors_to_json(node_errors: &NodeErrors) -> Json {
    let map: Map<String, Json> = node_errors
        .iter()
        .map(|(id, entry)| {
            (
                id.clone(),
                json!({
                    "errors": entry.errors.iter().map(ValidationError::to_json).collect::<Vec<_>>(),
                    "dependent_outputs": entry.dependent_outputs,
                    "class_type": entry.class_type,
                }),
            )
        })
        .collect();
    Json::Object(map)
}

/// A prompt that cannot be queued: the HTTP 400 body.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidationFailure {
    /// The top-level error (boxed: failures travel in `Result`s and should stay small).
    pub error: Box<ValidationError>,
    /// Per-node errors.
    pub node_errors: NodeErrors,
}

impl ValidationFailure {
    /// `{"error": {...}, "node_errors": {...}}`.
    pub fn to_json(&self) -> Json {
        json!({"error": self.error.to_json(), "node_errors": node_errors_to_json(&self.node_errors)})
    }
}

impl std::fmt::Display for ValidationFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error.message, self.error.details)
    }
}

impl std::error::Error for ValidationFailure {}
