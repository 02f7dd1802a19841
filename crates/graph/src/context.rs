//! [`ExecutionContext`]: what a running node may see and do besides its inputs — the prompt's
//! identity and extra data, the interrupt flag, progress reporting and the engine's services.

use std::any::{type_name, Any};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::NodeError;
use crate::event::{ExecutionEvent, ExecutionObserver, NodeProgress, NodeState, PreviewImage};

/// The shared "stop now" flag (`POST /interrupt`). Cloning shares the flag.
#[derive(Clone, Debug, Default)]
pub struct InterruptFlag(Arc<AtomicBool>);

impl InterruptFlag {
    /// A cleared flag.
    pub fn new() -> Self {
        InterruptFlag::default()
    }

    /// Requests an interrupt.
    pub fn interrupt(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Clears the request (the executor does this when a prompt starts, as ComfyUI does).
    pub fn clear(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// Whether an interrupt was requested.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The per-node progress states of one prompt, sent as `progress_state`.
#[derive(Debug, Default)]
pub(crate) struct ProgressStates {
    pub(crate) nodes: BTreeMap<String, NodeProgress>,
}

impl ProgressStates {
    pub(crate) fn set(&mut self, node_id: &str, state: NodeState, value: f64, max: f64) {
        self.nodes
            .insert(node_id.to_owned(), NodeProgress { state, value, max });
    }

    pub(crate) fn finish(&mut self, node_id: &str) {
        let max = self.nodes.get(node_id).map_or(1.0, |progress| progress.max);
        self.set(node_id, NodeState::Finished, max, max);
    }

    pub(crate) fn event(&self, prompt_id: &str) -> ExecutionEvent {
        ExecutionEvent::ProgressState {
            prompt_id: prompt_id.to_owned(),
            nodes: self.nodes.clone(),
        }
    }
}

/// Everything a node can reach while it executes.
pub struct ExecutionContext<'a> {
    prompt_id: &'a str,
    node_id: &'a str,
    prompt: &'a serde_json::Value,
    extra_data: &'a serde_json::Value,
    interrupt: &'a InterruptFlag,
    services: &'a (dyn Any + Send + Sync),
    observer: &'a mut dyn ExecutionObserver,
    progress: Option<&'a mut ProgressStates>,
}

impl<'a> ExecutionContext<'a> {
    /// A context outside any executor, for running a node directly (node tests, tools):
    /// prompt id `""`, empty prompt and extra data. Progress events go to `observer`.
    pub fn standalone(
        node_id: &'a str,
        services: &'a (dyn Any + Send + Sync),
        interrupt: &'a InterruptFlag,
        observer: &'a mut dyn ExecutionObserver,
    ) -> Self {
        const EMPTY: &serde_json::Value = &serde_json::Value::Null;
        ExecutionContext {
            prompt_id: "",
            node_id,
            prompt: EMPTY,
            extra_data: EMPTY,
            interrupt,
            services,
            observer,
            progress: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn for_executor(
        prompt_id: &'a str,
        node_id: &'a str,
        prompt: &'a serde_json::Value,
        extra_data: &'a serde_json::Value,
        interrupt: &'a InterruptFlag,
        services: &'a (dyn Any + Send + Sync),
        observer: &'a mut dyn ExecutionObserver,
        progress: &'a mut ProgressStates,
    ) -> Self {
        ExecutionContext {
            prompt_id,
            node_id,
            prompt,
            extra_data,
            interrupt,
            services,
            observer,
            progress: Some(progress),
        }
    }

    /// The running prompt's id.
    pub fn prompt_id(&self) -> &'a str {
        self.prompt_id
    }

    /// The running node's prompt id (`"3"`, `"57:3"` inside a subgraph).
    pub fn node_id(&self) -> &'a str {
        self.node_id
    }

    /// The whole API prompt as submitted (ComfyUI's hidden `PROMPT`).
    pub fn prompt(&self) -> &'a serde_json::Value {
        self.prompt
    }

    /// The request's `extra_data` (`client_id`, `extra_pnginfo`, ...), JSON null if none.
    pub fn extra_data(&self) -> &'a serde_json::Value {
        self.extra_data
    }

    /// `extra_data.extra_pnginfo` (usually `{"workflow": ...}`), if given.
    pub fn extra_pnginfo(&self) -> Option<&'a serde_json::Value> {
        self.extra_data.get("extra_pnginfo")
    }

    /// `extra_data.client_id`, if given.
    pub fn client_id(&self) -> Option<&'a str> {
        self.extra_data.get("client_id").and_then(|id| id.as_str())
    }

    /// Whether an interrupt was requested.
    pub fn is_interrupted(&self) -> bool {
        self.interrupt.is_set()
    }

    /// `Err(NodeError::Interrupted)` once an interrupt was requested; call it between steps.
    pub fn check_interrupted(&self) -> Result<(), NodeError> {
        if self.interrupt.is_set() {
            Err(NodeError::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Reports `value` of `max` steps done, with an optional preview image. Emits
    /// `progress_state`, the preview, then `progress`, as ComfyUI's progress hook does.
    pub fn progress(&mut self, value: u64, max: u64, preview: Option<PreviewImage>) {
        let prompt_id = self.prompt_id.to_owned();
        if let Some(progress) = self.progress.as_deref_mut() {
            // Steps are small counts; f64 holds them exactly.
            progress.set(self.node_id, NodeState::Running, value as f64, max as f64);
            self.observer.on_event(progress.event(&prompt_id));
        }
        if let Some(image) = preview {
            self.observer.on_event(ExecutionEvent::Preview {
                prompt_id: prompt_id.clone(),
                node: self.node_id.to_owned(),
                display_node: self.node_id.to_owned(),
                image,
            });
        }
        self.observer.on_event(ExecutionEvent::Progress {
            prompt_id,
            node: self.node_id.to_owned(),
            value,
            max,
        });
    }

    /// The engine's shared services as the type the node crate gave the executor
    /// ([`crate::Executor::new`]), or [`NodeError::Services`] when they are another type.
    pub fn services<T: Any + Send + Sync>(&self) -> Result<&'a T, NodeError> {
        self.services
            .downcast_ref::<T>()
            .ok_or(NodeError::Services {
                expected: type_name::<T>(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_context_reports_progress_and_interrupts() {
        let services = 42_u32;
        let interrupt = InterruptFlag::new();
        let mut events: Vec<ExecutionEvent> = Vec::new();
        {
            let mut ctx = ExecutionContext::standalone("7", &services, &interrupt, &mut events);
            assert_eq!(*ctx.services::<u32>().unwrap(), 42);
            assert!(matches!(
                ctx.services::<String>(),
                Err(NodeError::Services { .. })
            ));
            ctx.progress(1, 4, None);
            assert!(ctx.check_interrupted().is_ok());
            interrupt.interrupt();
            assert!(matches!(
                ctx.check_interrupted(),
                Err(NodeError::Interrupted)
            ));
        }
        assert_eq!(
            events,
            vec![ExecutionEvent::Progress {
                prompt_id: String::new(),
                node: "7".into(),
                value: 1,
                max: 4
            }]
        );
    }
}
