//! The [`Engine`]: a thread that owns the queue database and answers [`EngineHandle`]
//! commands at once, plus the executor thread it feeds one prompt at a time. HTTP handlers
//! never touch the executor; they send commands here or read the database.

mod event;
mod worker;

use std::any::Any;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kiln_graph::{Executor, InterruptFlag, NodeRegistry};
use serde_json::Value as Json;
use tokio::sync::{broadcast, oneshot};

pub use event::ServerEvent;
pub use worker::UnloadModels;
use worker::{run_worker, Finished, WorkerJob};

use crate::error::ServerError;
use crate::queue::{stored_extra_data, HistoryRecord, QueueItem, QueueStore};

/// How many commands may wait for the engine thread before requests get
/// [`ServerError::Overloaded`].
const COMMAND_CAPACITY: usize = 1024;
/// How many events a slow WebSocket may fall behind before it skips some.
const EVENT_CAPACITY: usize = 1024;
/// How long [`Engine::shutdown`] waits for the running node to notice the interrupt.
const WORKER_GRACE: Duration = Duration::from_secs(10);

/// What the engine needs to start.
pub struct EngineConfig {
    /// The queue database file.
    pub database: PathBuf,
    /// The node classes.
    pub registry: Arc<NodeRegistry>,
    /// What nodes get from `ExecutionContext::services`.
    pub services: Arc<dyn Any + Send + Sync>,
    /// History entries kept.
    pub max_history: usize,
    /// Called on the executor thread for `POST /free`.
    pub unload_models: Option<UnloadModels>,
}

/// A prompt to queue, already validated.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The prompt id.
    pub prompt_id: String,
    /// The validated prompt JSON.
    pub prompt: Json,
    /// Output nodes to run.
    pub outputs: Vec<String>,
    /// The request's `extra_data`.
    pub extra_data: Option<Json>,
    /// The socket to send its events to.
    pub client_id: Option<String>,
    /// An explicit priority (`number`).
    pub number: Option<f64>,
    /// Jump the queue (`front`).
    pub front: bool,
}

/// What `interrupt`, `cancel` and `delete` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The prompt was running and got interrupted.
    Interrupted,
    /// The prompt was pending and got removed.
    Removed,
    /// Nothing matched.
    NotFound,
}

/// Commands with their reply channels.
pub(crate) enum EngineCommand {
    Submit(Box<Submission>, oneshot::Sender<Result<f64, ServerError>>),
    Interrupt(Option<String>, oneshot::Sender<CancelOutcome>),
    Cancel(String, oneshot::Sender<Result<CancelOutcome, ServerError>>),
    DeletePending(Vec<String>, oneshot::Sender<Result<usize, ServerError>>),
    ClearPending(oneshot::Sender<Result<usize, ServerError>>),
    DeleteHistory(Vec<String>, oneshot::Sender<Result<usize, ServerError>>),
    ClearHistory(oneshot::Sender<Result<usize, ServerError>>),
    Free {
        unload_models: bool,
        free_memory: bool,
        reply: oneshot::Sender<()>,
    },
}

/// Everything the engine thread receives.
pub(crate) enum EngineMessage {
    Command(EngineCommand),
    Finished(Box<Finished>),
    Shutdown,
}

/// A cheap, cloneable way to talk to the engine from async code.
#[derive(Clone)]
pub struct EngineHandle {
    commands: SyncSender<EngineMessage>,
    events: broadcast::Sender<Arc<ServerEvent>>,
    remaining: Arc<AtomicUsize>,
    database: PathBuf,
}

impl EngineHandle {
    async fn request<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> EngineCommand,
    ) -> Result<T, ServerError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .try_send(EngineMessage::Command(command(reply)))
            .map_err(|error| match error {
                TrySendError::Full(_) => ServerError::Overloaded,
                TrySendError::Disconnected(_) => ServerError::EngineStopped,
            })?;
        answer.await.map_err(|_| ServerError::EngineStopped)
    }

    /// Queues a validated prompt; returns its number.
    pub async fn submit(&self, submission: Submission) -> Result<f64, ServerError> {
        self.request(|reply| EngineCommand::Submit(Box::new(submission), reply))
            .await?
    }

    /// Interrupts the running prompt (only if it is `prompt_id`, when given).
    pub async fn interrupt(&self, prompt_id: Option<String>) -> Result<CancelOutcome, ServerError> {
        self.request(|reply| EngineCommand::Interrupt(prompt_id, reply))
            .await
    }

    /// Interrupts the prompt if it runs, removes it if it waits.
    pub async fn cancel(&self, prompt_id: String) -> Result<CancelOutcome, ServerError> {
        self.request(|reply| EngineCommand::Cancel(prompt_id, reply))
            .await?
    }

    /// Removes pending prompts; returns how many.
    pub async fn delete_pending(&self, prompt_ids: Vec<String>) -> Result<usize, ServerError> {
        self.request(|reply| EngineCommand::DeletePending(prompt_ids, reply))
            .await?
    }

    /// Removes every pending prompt.
    pub async fn clear_pending(&self) -> Result<usize, ServerError> {
        self.request(EngineCommand::ClearPending).await?
    }

    /// Removes history entries.
    pub async fn delete_history(&self, prompt_ids: Vec<String>) -> Result<usize, ServerError> {
        self.request(|reply| EngineCommand::DeleteHistory(prompt_ids, reply))
            .await?
    }

    /// Removes every history entry.
    pub async fn clear_history(&self) -> Result<usize, ServerError> {
        self.request(EngineCommand::ClearHistory).await?
    }

    /// Frees memory after the current prompt (`POST /free`).
    pub async fn free(&self, unload_models: bool, free_memory: bool) -> Result<(), ServerError> {
        self.request(|reply| EngineCommand::Free {
            unload_models,
            free_memory,
            reply,
        })
        .await
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ServerEvent>> {
        self.events.subscribe()
    }

    /// Puts an event on the bus (WebSocket sessions announce themselves this way).
    pub fn publish(&self, event: ServerEvent) {
        let _ = self.events.send(Arc::new(event));
    }

    /// Pending plus running prompts, as of the last queue change.
    pub fn queue_remaining(&self) -> usize {
        self.remaining.load(Ordering::SeqCst)
    }

    /// The queue database, for read connections.
    pub fn database(&self) -> &std::path::Path {
        &self.database
    }
}

/// The running engine: its threads and a handle. Dropping it shuts it down.
pub struct Engine {
    handle: EngineHandle,
    engine_thread: Option<JoinHandle<()>>,
    worker_thread: Option<JoinHandle<()>>,
    interrupt: InterruptFlag,
}

impl Engine {
    /// Opens the database (re-queueing a prompt a crash left running) and starts the engine
    /// and executor threads; pending prompts start running at once.
    pub fn start(config: EngineConfig) -> Result<Engine, ServerError> {
        let mut store = QueueStore::open(&config.database)?;
        let requeued = store.requeue_interrupted()?;
        if requeued > 0 {
            tracing::warn!(
                requeued,
                "re-queued prompts interrupted by the last shutdown"
            );
        }
        let (commands, inbox) = mpsc::sync_channel(COMMAND_CAPACITY);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let remaining = Arc::new(AtomicUsize::new(store.remaining()?));
        let executor = Executor::new(config.registry, config.services);
        let interrupt = executor.interrupt_flag();
        let (jobs, job_inbox) = mpsc::channel();

        let worker_thread = {
            let engine = commands.clone();
            let events = events.clone();
            let unload = config.unload_models;
            std::thread::Builder::new()
                .name("kiln-executor".to_owned())
                .spawn(move || run_worker(executor, job_inbox, engine, events, unload))
                .map_err(|error| ServerError::Internal {
                    reason: format!("cannot start the executor thread: {error}"),
                })?
        };
        let mut state = EngineState {
            store,
            running: None,
            jobs,
            events: events.clone(),
            remaining: Arc::clone(&remaining),
            interrupt: interrupt.clone(),
            max_history: config.max_history,
        };
        let engine_thread = std::thread::Builder::new()
            .name("kiln-engine".to_owned())
            .spawn(move || state.run(inbox))
            .map_err(|error| ServerError::Internal {
                reason: format!("cannot start the engine thread: {error}"),
            })?;
        Ok(Engine {
            handle: EngineHandle {
                commands,
                events,
                remaining,
                database: config.database,
            },
            engine_thread: Some(engine_thread),
            worker_thread: Some(worker_thread),
            interrupt,
        })
    }

    /// A handle for request handlers.
    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// Stops: the running prompt is interrupted and stays in the database as running, so the
    /// next start runs it again first; pending prompts stay pending.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(engine_thread) = self.engine_thread.take() else {
            return;
        };
        // A full inbox only delays this; a closed one means the thread is already gone.
        let _ = self.handle.commands.send(EngineMessage::Shutdown);
        self.interrupt.interrupt();
        if engine_thread.join().is_err() {
            tracing::error!("the engine thread panicked");
        }
        if let Some(worker) = self.worker_thread.take() {
            let deadline = Instant::now() + WORKER_GRACE;
            while !worker.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if worker.is_finished() {
                let _ = worker.join();
            } else {
                tracing::warn!("the running node ignores interrupts; leaving it behind");
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the engine thread owns.
struct EngineState {
    store: QueueStore,
    /// The running prompt's id and start time.
    running: Option<(String, u64)>,
    jobs: Sender<WorkerJob>,
    events: broadcast::Sender<Arc<ServerEvent>>,
    remaining: Arc<AtomicUsize>,
    interrupt: InterruptFlag,
    max_history: usize,
}

impl EngineState {
    fn run(&mut self, inbox: Receiver<EngineMessage>) {
        self.start_next();
        self.publish_status();
        while let Ok(message) = inbox.recv() {
            match message {
                EngineMessage::Command(command) => self.handle(command),
                EngineMessage::Finished(finished) => self.finish(*finished),
                EngineMessage::Shutdown => {
                    if self.running.is_some() {
                        self.interrupt.interrupt();
                    }
                    return;
                }
            }
        }
    }

    fn handle(&mut self, command: EngineCommand) {
        // A dropped reply receiver means the client went away; the work is done anyway.
        match command {
            EngineCommand::Submit(submission, reply) => {
                let _ = reply.send(self.submit(*submission));
            }
            EngineCommand::Interrupt(prompt_id, reply) => {
                let _ = reply.send(self.interrupt(prompt_id.as_deref()));
            }
            EngineCommand::Cancel(prompt_id, reply) => {
                let outcome = match self.interrupt(Some(&prompt_id)) {
                    CancelOutcome::Interrupted => Ok(CancelOutcome::Interrupted),
                    _ => self
                        .store
                        .delete_pending(std::slice::from_ref(&prompt_id))
                        .map(|removed| {
                            if removed > 0 {
                                CancelOutcome::Removed
                            } else {
                                CancelOutcome::NotFound
                            }
                        }),
                };
                let _ = reply.send(outcome);
            }
            EngineCommand::DeletePending(ids, reply) => {
                let _ = reply.send(self.store.delete_pending(&ids));
            }
            EngineCommand::ClearPending(reply) => {
                let _ = reply.send(self.store.clear_pending());
            }
            EngineCommand::DeleteHistory(ids, reply) => {
                let _ = reply.send(self.store.delete_history(&ids));
            }
            EngineCommand::ClearHistory(reply) => {
                let _ = reply.send(self.store.clear_history());
            }
            EngineCommand::Free {
                unload_models,
                free_memory,
                reply,
            } => {
                let _ = self.jobs.send(WorkerJob::Free {
                    unload_models,
                    free_memory,
                });
                let _ = reply.send(());
            }
        }
        self.publish_status();
    }

    fn submit(&mut self, submission: Submission) -> Result<f64, ServerError> {
        let number = match submission.number {
            Some(number) if number.is_finite() => number,
            _ => {
                let counter = self.store.next_number()? as f64;
                if submission.front {
                    -counter
                } else {
                    counter
                }
            }
        };
        let create_time = now_ms();
        let item = QueueItem {
            number,
            extra_data: stored_extra_data(
                submission.extra_data.as_ref(),
                submission.client_id.as_deref(),
                create_time,
            ),
            prompt_id: submission.prompt_id,
            prompt: submission.prompt,
            outputs: submission.outputs,
            create_time,
        };
        self.store.insert_pending(&item)?;
        self.start_next();
        Ok(number)
    }

    fn interrupt(&mut self, prompt_id: Option<&str>) -> CancelOutcome {
        match (&self.running, prompt_id) {
            (Some((running, _)), Some(wanted)) if running != wanted => CancelOutcome::NotFound,
            (None, Some(_)) => CancelOutcome::NotFound,
            (running, _) => {
                // ComfyUI sets the flag even when idle; the next prompt clears it.
                self.interrupt.interrupt();
                if running.is_some() {
                    CancelOutcome::Interrupted
                } else {
                    CancelOutcome::NotFound
                }
            }
        }
    }

    /// Hands the next pending prompt to the executor when it is idle.
    fn start_next(&mut self) {
        if self.running.is_some() {
            return;
        }
        let started = now_ms();
        match self.store.start_next(started) {
            Ok(Some(item)) => {
                self.running = Some((item.prompt_id.clone(), started));
                if self.jobs.send(WorkerJob::Run(Box::new(item))).is_err() {
                    tracing::error!("the executor thread is gone; prompts stay queued");
                }
            }
            Ok(None) => {}
            Err(error) => tracing::error!(%error, "cannot take the next prompt"),
        }
    }

    fn finish(&mut self, finished: Finished) {
        let start_time = self
            .running
            .take()
            .filter(|(id, _)| *id == finished.item.prompt_id)
            .map(|(_, started)| started);
        let record = HistoryRecord {
            item: finished.item,
            outputs: finished.outputs,
            meta: finished.meta,
            messages: finished.messages,
            status: finished.status,
            start_time,
            end_time: now_ms(),
            execution_error: finished.execution_error,
        };
        if let Err(error) = self.store.finish(&record, self.max_history) {
            tracing::error!(%error, prompt_id = %record.item.prompt_id, "cannot record history");
        }
        if let Some(event) = finished.final_event {
            let _ = self.events.send(Arc::new(ServerEvent::Execution {
                client_id: record.item.client_id().map(str::to_owned),
                event,
            }));
        }
        self.start_next();
        self.publish_status();
    }

    fn publish_status(&self) {
        let remaining = match self.store.remaining() {
            Ok(remaining) => remaining,
            Err(error) => {
                tracing::error!(%error, "cannot count the queue");
                return;
            }
        };
        self.remaining.store(remaining, Ordering::SeqCst);
        let _ = self.events.send(Arc::new(ServerEvent::Status {
            queue_remaining: remaining,
        }));
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
