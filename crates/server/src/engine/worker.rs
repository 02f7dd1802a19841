//! The executor thread: owns the [`Executor`], runs one prompt at a time, streams its events to
//! the bus and reports the result to the engine thread (which writes history).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

use kiln_graph::{
    ExecutionEvent, ExecutionObserver, ExecutionOutcome, ExecutionRequest, Executor, GraphError,
    Prompt,
};
use serde_json::{json, Value as Json};
use tokio::sync::broadcast;

use super::event::ServerEvent;
use super::EngineMessage;
use crate::queue::{JobStatus, QueueItem};

/// A hook that drops loaded models (`POST /free`); the nodes crate owns the model cache.
pub type UnloadModels = Arc<dyn Fn() + Send + Sync>;

/// Work for the executor thread, done in order.
pub(crate) enum WorkerJob {
    /// Run a prompt.
    Run(Box<QueueItem>),
    /// `POST /free`, after the current prompt.
    Free {
        unload_models: bool,
        free_memory: bool,
    },
}

/// A prompt that ran, as the executor thread reports it.
pub(crate) struct Finished {
    pub(crate) item: QueueItem,
    pub(crate) status: JobStatus,
    pub(crate) outputs: Json,
    pub(crate) meta: Json,
    pub(crate) messages: Vec<Json>,
    pub(crate) execution_error: Option<Json>,
    /// The closing `executing {node: null}`, held back until history is written so a client
    /// that reacts to it finds the entry.
    pub(crate) final_event: Option<ExecutionEvent>,
}

/// Runs jobs until the engine thread drops its sender.
pub(crate) fn run_worker(
    mut executor: Executor,
    jobs: Receiver<WorkerJob>,
    engine: SyncSender<EngineMessage>,
    events: broadcast::Sender<Arc<ServerEvent>>,
    unload_models: Option<UnloadModels>,
) {
    for job in jobs {
        match job {
            WorkerJob::Run(item) => {
                let finished = run_prompt(&mut executor, *item, &events);
                if engine
                    .send(EngineMessage::Finished(Box::new(finished)))
                    .is_err()
                {
                    // The engine is shutting down; the item stays `running` and is re-queued
                    // at the next start.
                    return;
                }
            }
            WorkerJob::Free {
                unload_models: unload,
                free_memory,
            } => {
                if free_memory {
                    executor.clear_cache();
                }
                if unload || free_memory {
                    if let Some(hook) = &unload_models {
                        hook();
                    }
                }
                tracing::info!(unload, free_memory, "freed memory");
            }
        }
    }
}

fn run_prompt(
    executor: &mut Executor,
    item: QueueItem,
    events: &broadcast::Sender<Arc<ServerEvent>>,
) -> Finished {
    let mut observer = BusObserver {
        events,
        client_id: item.client_id().map(str::to_owned),
        messages: Vec::new(),
        execution_error: None,
        final_event: None,
    };
    let prompt = match Prompt::from_json(&item.prompt) {
        Ok(prompt) => prompt,
        Err(error) => {
            tracing::error!(prompt_id = %item.prompt_id, %error, "stored prompt does not parse");
            let error = json!({"exception_message": error.to_string(),
                               "exception_type": "kiln.CorruptPrompt", "traceback": []});
            return observer.finish(item, JobStatus::Failed, None, Some(error));
        }
    };
    let request = ExecutionRequest {
        prompt_id: item.prompt_id.clone(),
        prompt,
        outputs: item.outputs.clone(),
        extra_data: item.extra_data.clone(),
    };
    tracing::info!(prompt_id = %item.prompt_id, "prompt started");
    let started = std::time::Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| {
        executor.execute(&request, &mut observer)
    }));
    let elapsed = started.elapsed().as_secs_f64();
    match result {
        Ok(Ok(outcome)) => {
            tracing::info!(prompt_id = %item.prompt_id, "prompt executed in {elapsed:.2} seconds");
            observer.finish(item, JobStatus::Completed, Some(outcome), None)
        }
        Ok(Err(failure)) => {
            let status = match failure.error {
                GraphError::Interrupted { .. } => JobStatus::Cancelled,
                _ => JobStatus::Failed,
            };
            tracing::info!(prompt_id = %item.prompt_id, error = %failure, "prompt did not finish");
            observer.finish(item, status, Some(failure.outcome), None)
        }
        Err(_) => {
            tracing::error!(prompt_id = %item.prompt_id, "the executor panicked");
            let error = json!({"exception_message": "internal error in the executor",
                               "exception_type": "kiln.ExecutorPanic", "traceback": []});
            observer.finish(item, JobStatus::Failed, None, Some(error))
        }
    }
}

/// Sends a prompt's events to the bus, keeping what history needs.
struct BusObserver<'a> {
    events: &'a broadcast::Sender<Arc<ServerEvent>>,
    client_id: Option<String>,
    messages: Vec<Json>,
    execution_error: Option<Json>,
    final_event: Option<ExecutionEvent>,
}

impl BusObserver<'_> {
    fn finish(
        self,
        item: QueueItem,
        status: JobStatus,
        outcome: Option<ExecutionOutcome>,
        error: Option<Json>,
    ) -> Finished {
        let outcome = outcome.unwrap_or_default();
        let final_event = self.final_event.or_else(|| {
            Some(ExecutionEvent::Executing {
                prompt_id: item.prompt_id.clone(),
                node: None,
                display_node: None,
            })
        });
        Finished {
            status,
            outputs: outcome.outputs_json(),
            meta: outcome.meta_json(),
            messages: self.messages,
            execution_error: self.execution_error.or(error),
            final_event,
            item,
        }
    }
}

impl ExecutionObserver for BusObserver<'_> {
    fn on_event(&mut self, event: ExecutionEvent) {
        if event.is_status_message() {
            if let Some(data) = event.data() {
                self.messages.push(json!([event.event_type(), data]));
            }
        }
        if let ExecutionEvent::ExecutionError { .. } = event {
            self.execution_error = event.data();
        }
        if event.is_final() {
            self.final_event = Some(event);
            return;
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(Arc::new(ServerEvent::Execution {
            client_id: self.client_id.clone(),
            event,
        }));
    }
}
