//! Kiln's ComfyUI-compatible server: the HTTP API and WebSocket that ComfyUI's own frontend
//! and API clients speak, over a queue and history that survive a crash.
//!
//! Main types:
//! - [`ServerConfig`] (built with [`ServerConfig::builder`] from the folders, the node
//!   registry and the nodes crate's services, plus the flags) → [`Server::start`] →
//!   [`Server::bind`] → [`BoundServer::serve_until`].
//! - [`Engine`]: one thread owns the queue database ([`QueueStore`], SQLite in WAL mode) and
//!   answers [`EngineHandle`] commands at once; one thread owns the `kiln_graph::Executor`
//!   and runs a prompt at a time. Events fan out to sockets over a broadcast channel
//!   ([`ServerEvent`]).
//! - [`app`]: the route table. Handlers are short: they validate and send commands, or read
//!   the database; [`ServerError`] decides every status code.
//! - The web root: the official frontend from `--front-end-root`, or else the built-in page
//!   ([`builtin_page`]: one HTML, script and stylesheet embedded in the binary).
//! - Workflow templates embedded in the binary (SD1.5 default graph, img2img, LoRA, SDXL) at
//!   `/templates/` (a configured templates folder overrides them file by file) and at
//!   `/api/workflow_templates/kiln/`.
//! - Security: [`confine`] keeps every client path inside its folder; the origin check or CORS
//!   headers; bounded bodies and JSON depth.
//!
//! ```no_run
//! use std::sync::Arc;
//! use kiln_folders::FolderPaths;
//! use kiln_graph::NodeRegistry;
//! use kiln_server::{Server, ServerConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let folders = FolderPaths::new("/srv/kiln")?;
//! let registry = Arc::new(NodeRegistry::new()); // kiln_nodes::builtin_registry() in `kiln serve`
//! let config = ServerConfig::builder(folders, registry, Arc::new(()))
//!     .listen("127.0.0.1")
//!     .port(8188)
//!     .build()?;
//! let server = Server::start(config)?.bind().await?;
//! println!("listening on {:?}", server.local_addrs());
//! server
//!     .serve_until(async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod app;
mod config;
mod engine;
mod error;
mod files;
mod images;
mod logs;
mod page;
mod queue;
mod routes;
mod security;
mod server;
mod state;
mod templates;
mod userdata;
mod ws;

pub use app::app;
pub use config::{
    ComboResolver, DeviceStats, DeviceStatsProvider, ServerConfig, ServerConfigBuilder,
    DEFAULT_MAX_JSON_BYTES, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT,
};
pub use engine::{
    CancelOutcome, Engine, EngineConfig, EngineHandle, ServerEvent, Submission, UnloadModels,
};
pub use error::ServerError;
pub use logs::{LogBuffer, LogWriter};
pub use page::builtin_page;
pub use queue::{
    number_json, HistoryRecord, JobPage, JobStatus, QueueItem, QueueStore, DEFAULT_MAX_HISTORY,
};
pub use security::{confine, PathError};
pub use server::{BoundServer, Server};
pub use state::AppState;
pub use userdata::UserStore;
