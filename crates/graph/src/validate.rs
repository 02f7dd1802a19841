//! [`Validator`]: ComfyUI's `validate_prompt`/`validate_inputs` — which nodes exist, which
//! outputs run, and every input checked against its schema, with ComfyUI's error JSON.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::{json, Map, Value as Json};

use crate::coerce::coerce_literal;
use crate::object_info::input_entry;
use crate::prompt::{meta_title, unwrap_value, Link, Prompt, PromptInput, PromptNode};
use crate::pyfmt::{py_float, py_repr, py_str};
use crate::registry::NodeRegistry;
use crate::schema::{InputKind, InputSpec, InputType, NodeSchema};
use crate::validation_error::{
    node_errors_to_json, NodeErrors, NodeValidationErrors, ValidationError, ValidationErrorType,
    ValidationFailure,
};

/// Combo lists with more entries than this are not echoed back in `value_not_in_list`.
const MAX_LISTED_CHOICES: usize = 20;

/// A prompt that passed validation (at least one output is runnable).
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedPrompt {
    /// The prompt with validated literals coerced to their declared types.
    pub prompt: Prompt,
    /// Output nodes that passed (`outputs_to_execute`), in prompt order.
    pub outputs: Vec<String>,
    /// Errors of outputs that failed (they are dropped but the prompt still runs).
    pub node_errors: NodeErrors,
}

impl ValidatedPrompt {
    /// `node_errors` as JSON, for the 200 answer of `POST /prompt`.
    pub fn node_errors_json(&self) -> Json {
        node_errors_to_json(&self.node_errors)
    }
}

/// Validates API prompts against a registry.
///
/// ```
/// use kiln_graph::{NodeRegistry, Validator};
///
/// let registry = NodeRegistry::new();
/// let no_folders = |_: &str| Vec::new();
/// let failure = Validator::new(&registry, &no_folders)
///     .validate(&serde_json::json!({}))
///     .unwrap_err();
/// assert_eq!(failure.to_json()["error"]["type"], "prompt_no_outputs");
/// ```
pub struct Validator<'a> {
    registry: &'a NodeRegistry,
    resolve_combo: &'a dyn Fn(&str) -> Vec<String>,
    partial_execution_targets: Option<Vec<String>>,
}

impl<'a> Validator<'a> {
    /// A validator listing dynamic combo choices (model folders) with `resolve_combo`.
    pub fn new(registry: &'a NodeRegistry, resolve_combo: &'a dyn Fn(&str) -> Vec<String>) -> Self {
        Validator {
            registry,
            resolve_combo,
            partial_execution_targets: None,
        }
    }

    /// Restricts the outputs to these node ids (`partial_execution_targets`).
    pub fn partial_execution_targets(mut self, targets: Option<Vec<String>>) -> Self {
        self.partial_execution_targets = targets;
        self
    }

    /// Validates `prompt` (the `prompt` member of a `POST /prompt` body).
    pub fn validate(&self, prompt: &Json) -> Result<ValidatedPrompt, ValidationFailure> {
        let Some(raw) = prompt.as_object() else {
            return Err(top_level(
                ValidationErrorType::InvalidPrompt,
                "Cannot execute because the prompt is not a JSON object.",
                "",
                json!({}),
            ));
        };
        let mut outputs = Vec::new();
        for (id, node) in raw {
            let schema = self.check_node_type(id, node)?;
            let targeted = self
                .partial_execution_targets
                .as_ref()
                .is_none_or(|targets| targets.contains(id));
            if schema.output_node && targeted {
                outputs.push(id.clone());
            }
        }
        if outputs.is_empty() {
            return Err(top_level(
                ValidationErrorType::PromptNoOutputs,
                "Prompt has no outputs",
                "",
                json!({}),
            ));
        }

        let mut walk = Walk {
            validator: self,
            raw,
            memo: HashMap::new(),
            memo_order: Vec::new(),
            in_progress: Vec::new(),
            coerced: HashMap::new(),
            combos: RefCell::new(HashMap::new()),
        };
        let mut good_outputs = Vec::new();
        let mut failed: Vec<(String, Vec<ValidationError>)> = Vec::new();
        let mut node_errors = NodeErrors::new();
        for output in &outputs {
            let valid = match walk.validate_node(output) {
                Ok(valid) => valid,
                Err(thrown) => {
                    let error = ValidationError::new(
                        ValidationErrorType::ExceptionDuringValidation,
                        "Exception when validating node",
                        thrown.message.clone(),
                        json!({"exception_type": thrown.exception_type, "traceback": []}),
                    );
                    walk.record(output, false, vec![error]);
                    false
                }
            };
            if valid {
                good_outputs.push(output.clone());
                continue;
            }
            let reasons = walk
                .memo
                .get(output.as_str())
                .map(|verdict| verdict.errors.clone())
                .unwrap_or_default();
            tracing::debug!(output = %output, "output failed validation");
            failed.push((output.clone(), reasons));
            // As ComfyUI: every node validated so far that has errors of its own is charged
            // to this output.
            for node_id in &walk.memo_order {
                let Some(verdict) = walk.memo.get(node_id) else {
                    continue;
                };
                if verdict.valid || verdict.errors.is_empty() {
                    continue;
                }
                let entry =
                    node_errors
                        .entry(node_id.clone())
                        .or_insert_with(|| NodeValidationErrors {
                            errors: verdict.errors.clone(),
                            dependent_outputs: Vec::new(),
                            class_type: class_type_of(&raw[node_id]),
                        });
                entry.dependent_outputs.push(output.clone());
            }
        }

        if good_outputs.is_empty() {
            let details: Vec<String> = failed
                .iter()
                .flat_map(|(_, reasons)| reasons.iter())
                .map(|error| format!("{}: {}", error.message, error.details))
                .collect();
            return Err(ValidationFailure {
                error: Box::new(ValidationError::new(
                    ValidationErrorType::PromptOutputsFailedValidation,
                    "Prompt outputs failed validation",
                    details.join("\n"),
                    json!({}),
                )),
                node_errors,
            });
        }

        let prompt = walk.into_prompt().map_err(|reason| {
            top_level(ValidationErrorType::InvalidPrompt, reason, "", json!({}))
        })?;
        Ok(ValidatedPrompt {
            prompt,
            outputs: good_outputs,
            node_errors,
        })
    }

    /// The first pass of `validate_prompt`: every node names a registered class.
    fn check_node_type(&self, id: &str, node: &Json) -> Result<&'a NodeSchema, ValidationFailure> {
        let title = meta_title(node);
        let Some(class_type) = node.get("class_type") else {
            let shown = title.clone().unwrap_or_else(|| format!("ID #{id}"));
            return Err(top_level(
                ValidationErrorType::MissingNodeType,
                format!(
                    "Node '{shown}' has no class_type. The workflow may be corrupted or a custom node is missing."
                ),
                format!("Node ID '#{id}'"),
                json!({"node_id": id, "class_type": null, "node_title": title}),
            ));
        };
        let schema = class_type
            .as_str()
            .and_then(|name| self.registry.schema(name));
        let Some(schema) = schema else {
            let shown = title.clone().unwrap_or_else(|| py_str(class_type));
            return Err(top_level(
                ValidationErrorType::MissingNodeType,
                format!("Node '{shown}' not found. The custom node may not be installed."),
                format!("Node ID '#{id}'"),
                json!({"node_id": id, "class_type": class_type, "node_title": shown}),
            ));
        };
        match node.get("inputs") {
            None | Some(Json::Object(_)) => Ok(schema),
            Some(_) => Err(top_level(
                ValidationErrorType::InvalidPrompt,
                format!("Cannot execute because the inputs of node {id} are not an object."),
                format!("Node ID '#{id}'"),
                json!({}),
            )),
        }
    }
}

fn top_level(
    error_type: ValidationErrorType,
    message: impl Into<String>,
    details: impl Into<String>,
    extra_info: Json,
) -> ValidationFailure {
    ValidationFailure {
        error: Box::new(ValidationError::new(
            error_type, message, details, extra_info,
        )),
        node_errors: NodeErrors::new(),
    }
}

fn class_type_of(node: &Json) -> String {
    node.get("class_type")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A Python exception raised while validating a node (ComfyUI reports its class and text).
struct Thrown {
    exception_type: &'static str,
    message: String,
}

struct Verdict {
    valid: bool,
    errors: Vec<ValidationError>,
}

/// One validation run: memoized per node, as `validate_inputs` with its `validated` dict.
struct Walk<'v, 'a> {
    validator: &'v Validator<'a>,
    raw: &'v Map<String, Json>,
    memo: HashMap<String, Verdict>,
    memo_order: Vec<String>,
    in_progress: Vec<String>,
    coerced: HashMap<String, Vec<(String, PromptInput)>>,
    combos: RefCell<HashMap<String, Vec<String>>>,
}

impl Walk<'_, '_> {
    fn record(&mut self, node_id: &str, valid: bool, errors: Vec<ValidationError>) {
        if !self.memo.contains_key(node_id) {
            self.memo_order.push(node_id.to_owned());
        }
        self.memo
            .insert(node_id.to_owned(), Verdict { valid, errors });
    }

    /// Dynamic combo choices, listed once per run.
    fn resolve(&self, key: &str) -> Vec<String> {
        if let Some(listed) = self.combos.borrow().get(key) {
            return listed.clone();
        }
        let listed = (self.validator.resolve_combo)(key);
        self.combos
            .borrow_mut()
            .insert(key.to_owned(), listed.clone());
        listed
    }

    fn validate_node(&mut self, id: &str) -> Result<bool, Thrown> {
        if let Some(verdict) = self.memo.get(id) {
            return Ok(verdict.valid);
        }
        self.in_progress.push(id.to_owned());
        let result = self.validate_inputs(id);
        self.in_progress.pop();
        let (valid, errors) = result?;
        self.record(id, valid, errors);
        Ok(valid)
    }

    fn validate_inputs(&mut self, id: &str) -> Result<(bool, Vec<ValidationError>), Thrown> {
        let raw = self.raw;
        let node = &raw[id];
        let schema = node
            .get("class_type")
            .and_then(Json::as_str)
            .and_then(|class_type| self.validator.registry.schema(class_type))
            .ok_or_else(|| Thrown {
                exception_type: "KeyError",
                message: py_repr(node.get("class_type").unwrap_or(&Json::Null)),
            })?;
        let empty = Map::new();
        let inputs = node
            .get("inputs")
            .and_then(Json::as_object)
            .unwrap_or(&empty);
        let mut errors = Vec::new();
        let mut valid = true;
        let mut coerced = Vec::new();

        let declared = schema
            .inputs
            .iter()
            .filter(|spec| spec.kind == InputKind::Required)
            .chain(
                schema
                    .inputs
                    .iter()
                    .filter(|spec| spec.kind == InputKind::Optional),
            );
        for spec in declared {
            let name = spec.name.as_str();
            let Some(value) = inputs.get(name) else {
                if spec.kind == InputKind::Required {
                    errors.push(ValidationError::new(
                        ValidationErrorType::RequiredInputMissing,
                        "Required input is missing",
                        name,
                        json!({"input_name": name}),
                    ));
                }
                continue;
            };
            let resolve = |key: &str| self.resolve(key);
            let config = input_entry(spec, &resolve, true);
            if let Json::Array(items) = value {
                match self.check_link(id, spec, &config, value, items, &mut errors)? {
                    LinkCheck::Valid(link) => {
                        coerced.push((name.to_owned(), PromptInput::Link(link)));
                    }
                    LinkCheck::Invalid => valid = false,
                    LinkCheck::Rejected => {}
                }
                continue;
            }
            if let Some(literal) = self.check_literal(spec, &config, value, &mut errors) {
                coerced.push((name.to_owned(), PromptInput::Literal(literal)));
            }
        }
        // Inputs the schema does not declare (hidden ones, extras) are kept as given.
        for (name, value) in inputs {
            if !coerced.iter().any(|(done, _)| done == name) {
                coerced.push((name.clone(), parse_raw_input(value)));
            }
        }
        self.coerced.insert(id.to_owned(), coerced);
        Ok((errors.is_empty() && valid, errors))
    }

    /// A list input: a link of length 2 whose source exists, whose type fits, and whose
    /// ancestry validates.
    fn check_link(
        &mut self,
        id: &str,
        spec: &InputSpec,
        config: &Json,
        value: &Json,
        items: &[Json],
        errors: &mut Vec<ValidationError>,
    ) -> Result<LinkCheck, Thrown> {
        let name = spec.name.as_str();
        let [source, slot] = items else {
            errors.push(ValidationError::new(
                ValidationErrorType::BadLinkedInput,
                "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                name,
                json!({"input_name": name, "input_config": config, "received_value": value}),
            ));
            return Ok(LinkCheck::Rejected);
        };
        let source_id = match source {
            Json::String(source_id) if self.raw.contains_key(source_id) => source_id.clone(),
            other => {
                return Err(Thrown {
                    exception_type: "KeyError",
                    message: py_repr(other),
                })
            }
        };
        let source_schema = self.raw[&source_id]
            .get("class_type")
            .and_then(Json::as_str)
            .and_then(|class_type| self.validator.registry.schema(class_type))
            .ok_or_else(|| Thrown {
                exception_type: "KeyError",
                message: py_repr(source),
            })?;
        let output = output_index(slot, source_schema.outputs.len())?;
        let received_type = source_schema.outputs[output].ty.clone();
        if !accepts_link(&received_type, spec) {
            let expected = self.expected_type_text(spec);
            errors.push(ValidationError::new(
                ValidationErrorType::ReturnTypeMismatch,
                "Return type mismatch between linked nodes",
                format!("{name}, received_type({received_type}) mismatch input_type({expected})"),
                json!({"input_name": name, "input_config": config,
                       "received_type": received_type, "linked_node": value}),
            ));
            return Ok(LinkCheck::Rejected);
        }
        if let Some(start) = self.in_progress.iter().position(|node| *node == source_id) {
            let mut cycle: Vec<String> = self.in_progress[start..].to_vec();
            cycle.push(source_id.clone());
            errors.push(ValidationError::new(
                ValidationErrorType::DependencyCycle,
                "Dependency cycle detected",
                format!("{name}: {}", cycle.join(" -> ")),
                json!({"input_name": name, "cycle_nodes": &cycle[..cycle.len() - 1],
                       "linked_node": value}),
            ));
            tracing::debug!(node = %id, "dependency cycle");
            return Ok(LinkCheck::Rejected);
        }
        let link = Link {
            node: source_id.clone(),
            output,
        };
        match self.validate_node(&source_id) {
            Ok(true) => Ok(LinkCheck::Valid(link)),
            Ok(false) => Ok(LinkCheck::Invalid),
            Err(thrown) => {
                let error = ValidationError::new(
                    ValidationErrorType::ExceptionDuringInnerValidation,
                    "Exception when validating inner node",
                    thrown.message.clone(),
                    json!({"input_name": name, "input_config": config,
                           "exception_message": thrown.message,
                           "exception_type": thrown.exception_type, "traceback": [],
                           "linked_node": value}),
                );
                self.record(&source_id, false, vec![error]);
                Ok(LinkCheck::Invalid)
            }
        }
    }

    /// A literal input: coerced to its type, then bounds and combo membership. Returns the
    /// coerced value when it passed.
    fn check_literal(
        &self,
        spec: &InputSpec,
        config: &Json,
        value: &Json,
        errors: &mut Vec<ValidationError>,
    ) -> Option<Json> {
        let name = spec.name.as_str();
        let value = unwrap_value(value);
        let coerced = match coerce_literal(&spec.ty, value) {
            Ok(coerced) => coerced,
            Err(message) => {
                errors.push(ValidationError::new(
                    ValidationErrorType::InvalidInputType,
                    format!(
                        "Failed to convert an input value to a {} value",
                        spec.ty.type_name()
                    ),
                    format!("{name}, {}, {message}", py_str(value)),
                    json!({"input_name": name, "input_config": config,
                           "received_value": value, "exception_message": message}),
                ));
                return None;
            }
        };
        if let Some(error) = bounds_error(spec, config, &coerced) {
            errors.push(error);
            return None;
        }
        if let InputType::Combo(combo) = &spec.ty {
            let choices = combo.resolve(&|key| self.resolve(key));
            let listed = coerced
                .as_str()
                .is_some_and(|text| choices.iter().any(|choice| choice == text));
            if !listed {
                let (list_info, input_config) = if choices.len() > MAX_LISTED_CHOICES {
                    (format!("(list of length {})", choices.len()), Json::Null)
                } else {
                    (py_repr(&json!(choices)), config.clone())
                };
                errors.push(ValidationError::new(
                    ValidationErrorType::ValueNotInList,
                    "Value not in list",
                    format!("{name}: '{}' not in {list_info}", py_str(&coerced)),
                    json!({"input_name": name, "input_config": input_config,
                           "received_value": coerced}),
                ));
                return None;
            }
        }
        Some(coerced)
    }

    /// How ComfyUI prints an input type in mismatch details (combos as their list).
    fn expected_type_text(&self, spec: &InputSpec) -> String {
        match &spec.ty {
            InputType::Combo(combo) => py_repr(&json!(combo.resolve(&|key| self.resolve(key)))),
            other => other.type_name().to_owned(),
        }
    }

    /// The whole prompt with validated nodes' inputs coerced; other nodes as given.
    fn into_prompt(mut self) -> Result<Prompt, String> {
        let mut prompt = Prompt::new();
        for (id, node) in self.raw {
            let inputs = match self.coerced.remove(id) {
                Some(inputs) => inputs,
                None => node
                    .get("inputs")
                    .and_then(Json::as_object)
                    .map(|inputs| {
                        inputs
                            .iter()
                            .map(|(name, value)| (name.clone(), parse_raw_input(value)))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            prompt
                .push(PromptNode {
                    id: id.clone(),
                    class_type: class_type_of(node),
                    inputs,
                    title: meta_title(node),
                })
                .map_err(|err| err.to_string())?;
        }
        Ok(prompt)
    }
}

enum LinkCheck {
    Valid(Link),
    /// The source failed validation (no error of this node's own).
    Invalid,
    /// An error was recorded on this node.
    Rejected,
}

fn parse_raw_input(value: &Json) -> PromptInput {
    match crate::prompt::link_of(value) {
        Some(link) => PromptInput::Link(link),
        None => PromptInput::Literal(unwrap_value(value).clone()),
    }
}

/// `RETURN_TYPES[slot]` as Python indexes a tuple.
fn output_index(slot: &Json, outputs: usize) -> Result<usize, Thrown> {
    let not_integer = |kind: &str| Thrown {
        exception_type: "TypeError",
        message: format!("tuple indices must be integers or slices, not {kind}"),
    };
    let out_of_range = || Thrown {
        exception_type: "IndexError",
        message: "tuple index out of range".to_owned(),
    };
    match slot {
        Json::Number(number) => {
            if let Some(index) = number.as_i64() {
                let len = i64::try_from(outputs).unwrap_or(i64::MAX);
                // Python wraps negative indices.
                let wrapped = if index < 0 { index + len } else { index };
                usize::try_from(wrapped)
                    .ok()
                    .filter(|&at| at < outputs)
                    .ok_or_else(out_of_range)
            } else if number.is_u64() {
                Err(out_of_range())
            } else {
                Err(not_integer("float"))
            }
        }
        Json::Bool(flag) => {
            let index = usize::from(*flag);
            if index < outputs {
                Ok(index)
            } else {
                Err(out_of_range())
            }
        }
        Json::String(_) => Err(not_integer("str")),
        Json::Null => Err(not_integer("NoneType")),
        Json::Array(_) => Err(not_integer("list")),
        Json::Object(_) => Err(not_integer("dict")),
    }
}

/// ComfyUI's `validate_node_input`: equal types, `*` on either side, or overlapping
/// comma-separated unions. Combo inputs take `COMBO` sources.
fn accepts_link(received: &str, spec: &InputSpec) -> bool {
    let expected = spec.ty.type_name();
    if received == expected || received == "*" || expected == "*" {
        return true;
    }
    if matches!(spec.ty, InputType::Combo(_)) {
        return false;
    }
    received
        .split(',')
        .map(str::trim)
        .any(|one| expected.split(',').map(str::trim).any(|other| other == one))
}

fn bounds_error(spec: &InputSpec, config: &Json, coerced: &Json) -> Option<ValidationError> {
    let name = spec.name.as_str();
    let (below, above, min_text, max_text) = match &spec.ty {
        InputType::Int(int) => {
            let value = crate::pyfmt::py_int(coerced).ok()?;
            (
                int.min.is_some_and(|min| value < min),
                int.max.is_some_and(|max| value > max),
                int.min.map(|min| min.to_string()),
                int.max.map(|max| max.to_string()),
            )
        }
        InputType::Float(float) => {
            let value = crate::pyfmt::py_float_of(coerced).ok()?;
            (
                float.min.is_some_and(|min| value < min),
                float.max.is_some_and(|max| value > max),
                float.min.map(py_float),
                float.max.map(py_float),
            )
        }
        _ => return None,
    };
    let shown = py_str(coerced);
    let extra = json!({"input_name": name, "input_config": config, "received_value": coerced});
    if below {
        Some(ValidationError::new(
            ValidationErrorType::ValueSmallerThanMin,
            format!(
                "Value {shown} smaller than min of {}",
                min_text.unwrap_or_default()
            ),
            name,
            extra,
        ))
    } else if above {
        Some(ValidationError::new(
            ValidationErrorType::ValueBiggerThanMax,
            format!(
                "Value {shown} bigger than max of {}",
                max_text.unwrap_or_default()
            ),
            name,
            extra,
        ))
    } else {
        None
    }
}
