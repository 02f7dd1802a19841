//! [`AppState`]: what every handler gets — the configuration, the engine handle, read
//! connections to the queue database and the user-data store — plus the helpers that run
//! blocking work (SQLite reads, file IO, image codecs) off the async threads.

use std::sync::{Arc, Mutex, PoisonError};

use crate::config::ServerConfig;
use crate::engine::EngineHandle;
use crate::error::ServerError;
use crate::queue::QueueStore;
use crate::userdata::UserStore;

/// Read connections are kept for reuse up to this many.
const MAX_IDLE_READERS: usize = 8;

/// Shared state of the HTTP side. Cloning is cheap.
#[derive(Clone)]
pub struct AppState {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) engine: EngineHandle,
    pub(crate) users: UserStore,
    readers: Mutex<Vec<QueueStore>>,
}

impl AppState {
    /// State for `config` talking to `engine`.
    pub fn new(config: ServerConfig, engine: EngineHandle) -> AppState {
        let users = UserStore::new(config.folders.user_directory().join("default"));
        AppState {
            shared: Arc::new(Shared {
                config,
                engine,
                users,
                readers: Mutex::new(Vec::new()),
            }),
        }
    }

    pub(crate) fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    pub(crate) fn engine(&self) -> &EngineHandle {
        &self.shared.engine
    }

    pub(crate) fn users(&self) -> &UserStore {
        &self.shared.users
    }

    /// Runs `read` on a read connection to the queue database, off the async threads.
    pub(crate) async fn read<T, F>(&self, read: F) -> Result<T, ServerError>
    where
        T: Send + 'static,
        F: FnOnce(&QueueStore) -> Result<T, ServerError> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            let pooled = shared
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let reader = match pooled {
                Some(reader) => reader,
                None => QueueStore::open_reader(shared.engine.database())?,
            };
            let result = read(&reader);
            let mut readers = shared
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if readers.len() < MAX_IDLE_READERS {
                readers.push(reader);
            }
            result
        })
        .await
    }
}

/// Runs blocking work on tokio's blocking pool.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, ServerError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ServerError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ServerError::Internal {
            reason: format!("blocking task failed: {error}"),
        })?
}
