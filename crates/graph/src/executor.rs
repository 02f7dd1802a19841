//! [`Executor`]: runs validated prompts node by node in ComfyUI's order, serving unchanged
//! nodes from the between-prompt cache and reporting every step as [`ExecutionEvent`]s.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use serde_json::{json, Map, Value as Json};

use crate::cache::{CachedResult, OutputCache};
use crate::coerce::literal_to_value;
use crate::context::{ExecutionContext, InterruptFlag, ProgressStates};
use crate::error::{GraphError, NodeError};
use crate::event::{now_ms, ExecutionEvent, ExecutionObserver, NodeState};
use crate::execution_list::ExecutionList;
use crate::inputs::NodeInputs;
use crate::prompt::{Prompt, PromptInput, PromptNode};
use crate::pyfmt::py_repr;
use crate::registry::NodeRegistry;
use crate::schema::{HiddenKind, InputKind};
use crate::validate::ValidatedPrompt;
use crate::value::Value;

/// One prompt to run: ComfyUI's queue item `(number, prompt_id, prompt, extra_data,
/// outputs_to_execute)` less the number.
#[derive(Clone, Debug)]
pub struct ExecutionRequest {
    /// The prompt id.
    pub prompt_id: String,
    /// The (validated) prompt.
    pub prompt: Prompt,
    /// The output nodes to run (`outputs_to_execute`).
    pub outputs: Vec<String>,
    /// `extra_data` (`client_id`, `extra_pnginfo`, ...); JSON null or an object.
    pub extra_data: Json,
}

impl ExecutionRequest {
    /// A request for a validated prompt, with no extra data.
    pub fn new(prompt_id: impl Into<String>, validated: ValidatedPrompt) -> Self {
        ExecutionRequest {
            prompt_id: prompt_id.into(),
            prompt: validated.prompt,
            outputs: validated.outputs,
            extra_data: Json::Object(Map::new()),
        }
    }

    /// Sets `extra_data`.
    pub fn extra_data(mut self, extra_data: Json) -> Self {
        self.extra_data = extra_data;
        self
    }
}

/// What a prompt produced, for its history entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExecutionOutcome {
    /// UI outputs by node id (history `outputs`), including output nodes served from cache.
    pub outputs: BTreeMap<String, Json>,
    /// History `meta`: `{node_id, display_node, parent_node, real_node_id}` per output.
    pub meta: BTreeMap<String, Json>,
    /// Nodes that ran, in order.
    pub executed: Vec<String>,
    /// Nodes served from the cache (`execution_cached`), in prompt order.
    pub cached: Vec<String>,
}

impl ExecutionOutcome {
    /// History `outputs` as JSON.
    pub fn outputs_json(&self) -> Json {
        Json::Object(self.outputs.clone().into_iter().collect())
    }

    /// History `meta` as JSON.
    pub fn meta_json(&self) -> Json {
        Json::Object(self.meta.clone().into_iter().collect())
    }
}

/// A prompt that did not finish: why, and what it produced until then.
#[derive(Debug)]
pub struct ExecutionFailure {
    /// What went wrong ([`GraphError::NodeFailed`], [`GraphError::Interrupted`], ...).
    pub error: GraphError,
    /// The partial history entry.
    pub outcome: ExecutionOutcome,
}

impl std::fmt::Display for ExecutionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for ExecutionFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Runs prompts, keeping node outputs between them.
///
/// Owned by one worker thread (`&mut self`); other threads interrupt it through
/// [`Executor::interrupt_flag`].
pub struct Executor {
    registry: Arc<NodeRegistry>,
    services: Arc<dyn Any + Send + Sync>,
    cache: OutputCache,
    interrupt: InterruptFlag,
}

impl Executor {
    /// An executor over `registry`. `services` is what nodes get from
    /// [`ExecutionContext::services`] (the nodes crate's own services struct).
    pub fn new(registry: Arc<NodeRegistry>, services: Arc<dyn Any + Send + Sync>) -> Self {
        Executor {
            registry,
            services,
            cache: OutputCache::default(),
            interrupt: InterruptFlag::new(),
        }
    }

    /// The flag that interrupts the running prompt (`POST /interrupt`).
    pub fn interrupt_flag(&self) -> InterruptFlag {
        self.interrupt.clone()
    }

    /// The registry this executor runs.
    pub fn registry(&self) -> &Arc<NodeRegistry> {
        &self.registry
    }

    /// Forgets every cached output (`POST /free` with `free_memory`).
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// Runs one prompt, reporting to `observer`; the last event is always `executing` with
    /// `node: null`. The interrupt flag is cleared first, as ComfyUI does.
    pub fn execute(
        &mut self,
        request: &ExecutionRequest,
        observer: &mut dyn ExecutionObserver,
    ) -> Result<ExecutionOutcome, Box<ExecutionFailure>> {
        self.interrupt.clear();
        let prompt_id = request.prompt_id.as_str();
        observer.on_event(ExecutionEvent::ExecutionStart {
            prompt_id: prompt_id.to_owned(),
            timestamp: now_ms(),
        });
        let registry = Arc::clone(&self.registry);
        let services = Arc::clone(&self.services);
        let keys = self
            .cache
            .set_prompt(&request.prompt, &registry, &*services);
        let cached: Vec<String> = request
            .prompt
            .nodes()
            .iter()
            .filter(|node| self.is_cached(&keys, &node.id))
            .map(|node| node.id.clone())
            .collect();
        observer.on_event(ExecutionEvent::ExecutionCached {
            prompt_id: prompt_id.to_owned(),
            nodes: cached.clone(),
            timestamp: now_ms(),
        });

        let mut run = Run {
            executor: self,
            request,
            registry: &registry,
            keys: &keys,
            prompt_json: request.prompt.to_json(),
            progress: ProgressStates::default(),
            executed: Vec::new(),
            available: cached.iter().cloned().collect(),
        };
        let result = run.run_all(observer);
        let executed = std::mem::take(&mut run.executed);
        let mut outcome = self.outcome(request, &keys);
        outcome.executed = executed;
        outcome.cached = cached;
        if result.is_ok() {
            observer.on_event(ExecutionEvent::ExecutionSuccess {
                prompt_id: prompt_id.to_owned(),
                timestamp: now_ms(),
            });
        }
        observer.on_event(ExecutionEvent::Executing {
            prompt_id: prompt_id.to_owned(),
            node: None,
            display_node: None,
        });
        match result {
            Ok(()) => Ok(outcome),
            Err(error) => Err(Box::new(ExecutionFailure { error, outcome })),
        }
    }

    fn is_cached(&self, keys: &HashMap<String, u64>, node_id: &str) -> bool {
        keys.get(node_id)
            .is_some_and(|key| self.cache.get(*key).is_some())
    }

    /// History outputs: the UI part of every prompt node with a cached result.
    fn outcome(&self, request: &ExecutionRequest, keys: &HashMap<String, u64>) -> ExecutionOutcome {
        let mut outcome = ExecutionOutcome::default();
        for node in request.prompt.nodes() {
            let ui = keys
                .get(&node.id)
                .and_then(|key| self.cache.get(*key))
                .and_then(|result| result.ui.clone());
            if let Some(ui) = ui {
                outcome.outputs.insert(node.id.clone(), ui);
                outcome.meta.insert(
                    node.id.clone(),
                    json!({"node_id": node.id, "display_node": node.id, "parent_node": null,
                           "real_node_id": node.id}),
                );
            }
        }
        outcome
    }
}

/// The state of one prompt's run.
struct Run<'e> {
    executor: &'e mut Executor,
    request: &'e ExecutionRequest,
    registry: &'e NodeRegistry,
    keys: &'e HashMap<String, u64>,
    prompt_json: Json,
    progress: ProgressStates,
    executed: Vec<String>,
    /// Nodes whose results are in the cache (from earlier prompts or run in this one).
    available: HashSet<String>,
}

impl Run<'_> {
    fn prompt_id(&self) -> &str {
        &self.request.prompt_id
    }

    fn run_all(&mut self, observer: &mut dyn ExecutionObserver) -> Result<(), GraphError> {
        let prompt = &self.request.prompt;
        let mut list = ExecutionList::new(prompt, self.registry);
        for output in &self.request.outputs {
            if let Err(missing) = list.add_node(output, &self.available) {
                let node_id = missing
                    .referenced_by
                    .clone()
                    .unwrap_or(missing.node_id.clone());
                let reason = format!("Node {} not found", missing.node_id);
                self.report_failure(
                    observer,
                    &node_id,
                    "graph.NodeNotFoundError",
                    &reason,
                    json!([]),
                );
                return Err(GraphError::NodeNotFound { node_id, reason });
            }
        }
        loop {
            let node_id = match list.next() {
                Ok(Some(node_id)) => node_id,
                Ok(None) => return Ok(()),
                Err(cycle) => {
                    let blamed = cycle.first().cloned().unwrap_or_default();
                    self.report_failure(
                        observer,
                        &blamed,
                        "graph.DependencyCycleError",
                        "Dependency cycle detected",
                        json!([]),
                    );
                    return Err(GraphError::DependencyCycle { nodes: cycle });
                }
            };
            self.run_node(&node_id, observer)?;
            list.complete(&node_id);
        }
    }

    /// Emits `execution_error` for a failure that is not a node's own.
    fn report_failure(
        &self,
        observer: &mut dyn ExecutionObserver,
        node_id: &str,
        exception_type: &str,
        message: &str,
        current_inputs: Json,
    ) {
        let node_type = self
            .request
            .prompt
            .get(node_id)
            .map(|node| node.class_type.clone())
            .unwrap_or_default();
        observer.on_event(ExecutionEvent::ExecutionError {
            prompt_id: self.prompt_id().to_owned(),
            node_id: node_id.to_owned(),
            node_type,
            executed: self.executed.clone(),
            exception_message: message.to_owned(),
            exception_type: exception_type.to_owned(),
            traceback: Vec::new(),
            current_inputs,
            current_outputs: self.current_outputs(),
            timestamp: now_ms(),
        });
    }

    /// ComfyUI sends the ids of every node its cache has keys for: the whole prompt.
    fn current_outputs(&self) -> Vec<String> {
        self.request
            .prompt
            .nodes()
            .iter()
            .map(|node| node.id.clone())
            .collect()
    }

    fn run_node(
        &mut self,
        node_id: &str,
        observer: &mut dyn ExecutionObserver,
    ) -> Result<(), GraphError> {
        let prompt = &self.request.prompt;
        let Some(node) = prompt.get(node_id) else {
            return Err(GraphError::NodeNotFound {
                node_id: node_id.to_owned(),
                reason: "not in the prompt".to_owned(),
            });
        };
        let key = self.keys.get(node_id).copied();
        if let Some(cached) = key.and_then(|key| self.executor.cache.get(key)) {
            // A staged output node that is already cached: report its UI again.
            observer.on_event(ExecutionEvent::Executed {
                prompt_id: self.prompt_id().to_owned(),
                node: node_id.to_owned(),
                display_node: node_id.to_owned(),
                output: cached.ui.clone(),
            });
            self.progress.finish(node_id);
            observer.on_event(self.progress.event(self.prompt_id()));
            return Ok(());
        }
        let Some(registered) = self.registry.get(&node.class_type) else {
            let reason = format!("node class '{}' is not registered", node.class_type);
            self.report_failure(
                observer,
                node_id,
                "graph.NodeNotFoundError",
                &reason,
                json!([]),
            );
            return Err(GraphError::NodeNotFound {
                node_id: node_id.to_owned(),
                reason,
            });
        };

        self.progress.set(node_id, NodeState::Running, 0.0, 1.0);
        observer.on_event(self.progress.event(self.prompt_id()));
        let inputs = self.node_inputs(node);
        observer.on_event(ExecutionEvent::Executing {
            prompt_id: self.prompt_id().to_owned(),
            node: Some(node_id.to_owned()),
            display_node: Some(node_id.to_owned()),
        });
        tracing::debug!(node = %node_id, class = %node.class_type, "executing");

        let result = if self.executor.interrupt.is_set() {
            Err(NodeError::Interrupted)
        } else {
            let services = Arc::clone(&self.executor.services);
            let mut ctx = ExecutionContext::for_executor(
                &self.request.prompt_id,
                node_id,
                &self.prompt_json,
                &self.request.extra_data,
                &self.executor.interrupt,
                &*services,
                observer,
                &mut self.progress,
            );
            let node_impl = registered.node();
            catch_unwind(AssertUnwindSafe(|| node_impl.execute(&inputs, &mut ctx)))
                .unwrap_or_else(|panic| Err(panic_error(panic)))
        };

        match result {
            Ok(output) => {
                if let Some(ui) = &output.ui {
                    observer.on_event(ExecutionEvent::Executed {
                        prompt_id: self.prompt_id().to_owned(),
                        node: node_id.to_owned(),
                        display_node: node_id.to_owned(),
                        output: Some(ui.clone()),
                    });
                }
                if let Some(key) = key {
                    self.executor.cache.insert(
                        key,
                        CachedResult {
                            values: Arc::new(output.values),
                            ui: output.ui,
                        },
                    );
                }
                self.available.insert(node_id.to_owned());
                self.progress.finish(node_id);
                observer.on_event(self.progress.event(self.prompt_id()));
                self.executed.push(node_id.to_owned());
                Ok(())
            }
            Err(NodeError::Interrupted) => {
                tracing::info!(node = %node_id, "processing interrupted");
                observer.on_event(ExecutionEvent::ExecutionInterrupted {
                    prompt_id: self.prompt_id().to_owned(),
                    node_id: node_id.to_owned(),
                    node_type: node.class_type.clone(),
                    executed: self.executed.clone(),
                    timestamp: now_ms(),
                });
                Err(GraphError::Interrupted {
                    node_id: node_id.to_owned(),
                })
            }
            Err(error) => {
                tracing::error!(node = %node_id, class = %node.class_type, %error, "node failed");
                self.progress.set(node_id, NodeState::Error, 0.0, 1.0);
                observer.on_event(ExecutionEvent::ExecutionError {
                    prompt_id: self.prompt_id().to_owned(),
                    node_id: node_id.to_owned(),
                    node_type: node.class_type.clone(),
                    executed: self.executed.clone(),
                    // ComfyUI appends a (usually empty) tip after a newline.
                    exception_message: format!("{error}\n"),
                    exception_type: error.exception_type().to_owned(),
                    traceback: error_chain(&error, node),
                    current_inputs: format_inputs(&inputs),
                    current_outputs: self.current_outputs(),
                    timestamp: now_ms(),
                });
                Err(GraphError::NodeFailed {
                    node_id: node_id.to_owned(),
                    class_type: node.class_type.clone(),
                    source: error,
                })
            }
        }
    }

    /// The node's declared inputs: links resolved from the cache, literals typed, hidden
    /// inputs injected. A link whose output is missing is left out (the node reports it).
    fn node_inputs(&self, node: &PromptNode) -> NodeInputs {
        let mut inputs = NodeInputs::new();
        let Some(schema) = self.registry.schema(&node.class_type) else {
            return inputs;
        };
        for spec in &schema.inputs {
            if let InputKind::Hidden(hidden) = spec.kind {
                let value = match hidden {
                    HiddenKind::Prompt => Value::Json(self.prompt_json.clone()),
                    HiddenKind::ExtraPngInfo => Value::Json(
                        self.request
                            .extra_data
                            .get("extra_pnginfo")
                            .cloned()
                            .unwrap_or(Json::Null),
                    ),
                    HiddenKind::UniqueId => Value::String(node.id.clone()),
                };
                inputs.insert(spec.name.clone(), value);
                continue;
            }
            let Some(input) = node.input(&spec.name) else {
                continue;
            };
            let value = match input {
                PromptInput::Literal(literal) => Some(literal_to_value(Some(&spec.ty), literal)),
                PromptInput::Link(link) => self
                    .keys
                    .get(&link.node)
                    .and_then(|key| self.executor.cache.get(*key))
                    .and_then(|result| result.values.get(link.output).cloned()),
            };
            if let Some(value) = value {
                inputs.insert(spec.name.clone(), value);
            }
        }
        inputs
    }
}

/// `current_inputs`: `{name: [formatted value]}` as ComfyUI's `format_value` (scalars as they
/// are, anything else as text).
fn format_inputs(inputs: &NodeInputs) -> Json {
    let map: Map<String, Json> = inputs
        .iter()
        .map(|(name, value)| {
            let formatted = match value {
                Value::Int(_) | Value::Float(_) | Value::String(_) | Value::Bool(_) => {
                    value.to_json()
                }
                Value::Json(Json::Null) => Json::Null,
                Value::List(_) | Value::Json(_) => Json::String(py_repr(&value.to_json())),
                Value::Object(object) => Json::String(format!("<{} object>", object.type_name())),
            };
            (name.to_owned(), json!([formatted]))
        })
        .collect();
    Json::Object(map)
}

/// The error and its sources, one line each, in place of a Python traceback.
fn error_chain(error: &NodeError, node: &PromptNode) -> Vec<String> {
    let mut lines = vec![format!("  Node {} ({})\n", node.id, node.class_type)];
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        lines.push(format!("  caused by: {cause}\n"));
        source = cause.source();
    }
    lines
}

fn panic_error(panic: Box<dyn Any + Send>) -> NodeError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "node panicked".to_owned());
    NodeError::failed("Panic", message)
}
