//! [`ServerConfig`] and its builder: everything the server is told at startup (the flags, the
//! node registry and services from the nodes crate, folders, hooks), immutable once built.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::HeaderValue;
use kiln_folders::FolderPaths;
use kiln_graph::NodeRegistry;
use kiln_runtime::{BackendKind, CapabilityProfile};
use serde::Serialize;

use crate::engine::UnloadModels;
use crate::error::ServerError;
use crate::logs::LogBuffer;
use crate::queue::DEFAULT_MAX_HISTORY;

/// The choices of a dynamic combo by folder key (`checkpoints`, ...), listed at request time.
pub type ComboResolver = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

/// The devices `/system_stats` reports, read at request time (free memory changes).
pub type DeviceStatsProvider = Arc<dyn Fn() -> Vec<DeviceStats> + Send + Sync>;

/// ComfyUI's `--max-upload-size` default, in MB.
pub const DEFAULT_MAX_UPLOAD_MB: f64 = 100.0;
/// The largest JSON body accepted (prompts carry the whole UI workflow).
pub const DEFAULT_MAX_JSON_BYTES: usize = 32 * 1024 * 1024;
/// ComfyUI's default port.
pub const DEFAULT_PORT: u16 = 8188;

/// One entry of `/system_stats` `devices`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceStats {
    /// Shown name (`cuda:0 NVIDIA H100 (sm90)`).
    pub name: String,
    /// `cpu`, `cuda` or `mps`, as ComfyUI names torch device types.
    #[serde(rename = "type")]
    pub device_type: String,
    /// Device index.
    pub index: u32,
    /// Memory in bytes.
    pub vram_total: u64,
    /// Free memory in bytes.
    pub vram_free: u64,
    /// What torch's allocator holds (Kiln has none; 0).
    pub torch_vram_total: u64,
    /// Free within torch's allocator (0).
    pub torch_vram_free: u64,
}

impl DeviceStats {
    /// The figures of a detected capability profile.
    pub fn from_profile(profile: &CapabilityProfile, index: u32) -> DeviceStats {
        let device_type = match profile.backend {
            BackendKind::Cpu => "cpu",
            BackendKind::Cuda => "cuda",
            BackendKind::Metal => "mps",
        };
        DeviceStats {
            name: format!("{} {}", profile.name, profile.description),
            device_type: device_type.to_owned(),
            index,
            vram_total: profile.total_memory,
            vram_free: profile.free_memory,
            torch_vram_total: 0,
            torch_vram_free: 0,
        }
    }
}

/// The server's configuration. Build it with [`ServerConfig::builder`].
#[derive(Clone)]
pub struct ServerConfig {
    pub(crate) listen: Vec<String>,
    pub(crate) port: u16,
    pub(crate) folders: Arc<FolderPaths>,
    pub(crate) registry: Arc<NodeRegistry>,
    pub(crate) services: Arc<dyn Any + Send + Sync>,
    pub(crate) combo_options: ComboResolver,
    pub(crate) cors_origin: Option<HeaderValue>,
    pub(crate) max_upload_bytes: u64,
    pub(crate) max_json_bytes: usize,
    pub(crate) front_end_root: Option<PathBuf>,
    pub(crate) templates_dir: Option<PathBuf>,
    pub(crate) devices: DeviceStatsProvider,
    pub(crate) unload_models: Option<UnloadModels>,
    pub(crate) database: PathBuf,
    pub(crate) max_history: usize,
    pub(crate) logs: LogBuffer,
    pub(crate) argv: Vec<String>,
}

impl ServerConfig {
    /// A builder with ComfyUI's defaults: `127.0.0.1:8188`, CORS off (origin check on),
    /// 100 MB uploads, the database at `<user dir>/kiln.db`.
    pub fn builder(
        folders: FolderPaths,
        registry: Arc<NodeRegistry>,
        services: Arc<dyn Any + Send + Sync>,
    ) -> ServerConfigBuilder {
        let folders = Arc::new(folders);
        let listed = Arc::clone(&folders);
        ServerConfigBuilder {
            config: ServerConfig {
                listen: vec!["127.0.0.1".to_owned()],
                port: DEFAULT_PORT,
                database: folders.user_directory().join("kiln.db"),
                combo_options: Arc::new(move |key| listed.list(key).unwrap_or_default()),
                folders,
                registry,
                services,
                cors_origin: None,
                max_upload_bytes: mb_to_bytes(DEFAULT_MAX_UPLOAD_MB),
                max_json_bytes: DEFAULT_MAX_JSON_BYTES,
                front_end_root: None,
                templates_dir: None,
                devices: Arc::new(|| {
                    vec![DeviceStats::from_profile(&kiln_runtime::detect_host(), 0)]
                }),
                unload_models: None,
                max_history: DEFAULT_MAX_HISTORY,
                logs: LogBuffer::default(),
                argv: vec!["kiln".to_owned()],
            },
            max_upload_mb: DEFAULT_MAX_UPLOAD_MB,
            cors_origin: None,
        }
    }

    /// The folder layout.
    pub fn folders(&self) -> &FolderPaths {
        &self.folders
    }

    /// The addresses to listen on.
    pub fn listen(&self) -> &[String] {
        &self.listen
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The queue database file.
    pub fn database(&self) -> &Path {
        &self.database
    }

    /// The largest accepted upload, in bytes.
    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_bytes
    }

    /// The log buffer `/internal/logs` reads.
    pub fn logs(&self) -> &LogBuffer {
        &self.logs
    }
}

/// Builds a [`ServerConfig`]; [`ServerConfigBuilder::build`] checks the combination.
pub struct ServerConfigBuilder {
    config: ServerConfig,
    max_upload_mb: f64,
    cors_origin: Option<String>,
}

impl ServerConfigBuilder {
    /// ComfyUI's `--listen`: one address or a comma-separated list (`0.0.0.0,::`).
    pub fn listen(mut self, addresses: &str) -> Self {
        self.config.listen = addresses
            .split(',')
            .map(str::trim)
            .filter(|address| !address.is_empty())
            .map(str::to_owned)
            .collect();
        self
    }

    /// `--port` (0 picks a free port).
    pub fn port(mut self, port: u16) -> Self {
        self.config.port = port;
        self
    }

    /// How dynamic combos are listed (the nodes crate's own lister, which also knows the input
    /// folder's images). Default: the model folder listing.
    pub fn combo_options(mut self, resolver: ComboResolver) -> Self {
        self.config.combo_options = resolver;
        self
    }

    /// `--enable-cors-header [ORIGIN]`: `Some("*")` for a bare flag; `None` keeps the
    /// origin check.
    pub fn cors_origin(mut self, origin: Option<String>) -> Self {
        self.cors_origin = origin;
        self
    }

    /// `--max-upload-size` in MB.
    pub fn max_upload_size_mb(mut self, megabytes: f64) -> Self {
        self.max_upload_mb = megabytes;
        self
    }

    /// The largest JSON body, in bytes.
    pub fn max_json_bytes(mut self, bytes: usize) -> Self {
        self.config.max_json_bytes = bytes;
        self
    }

    /// `--front-end-root`: serve this folder at `/`.
    pub fn front_end_root(mut self, root: Option<PathBuf>) -> Self {
        self.config.front_end_root = root;
        self
    }

    /// Serve workflow templates at `/templates/` from this folder.
    pub fn templates_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.config.templates_dir = dir;
        self
    }

    /// What `/system_stats` reports as devices.
    pub fn devices(mut self, provider: DeviceStatsProvider) -> Self {
        self.config.devices = provider;
        self
    }

    /// Called (on the executor thread) to drop loaded models for `POST /free`.
    pub fn unload_models(mut self, hook: UnloadModels) -> Self {
        self.config.unload_models = Some(hook);
        self
    }

    /// Where the queue database lives (default `<user dir>/kiln.db`).
    pub fn database(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.database = path.into();
        self
    }

    /// History entries kept (default 10000).
    pub fn max_history(mut self, entries: usize) -> Self {
        self.config.max_history = entries;
        self
    }

    /// The log buffer behind `/internal/logs` (share it with the log writer).
    pub fn logs(mut self, logs: LogBuffer) -> Self {
        self.config.logs = logs;
        self
    }

    /// The command line `/system_stats` reports.
    pub fn argv(mut self, argv: Vec<String>) -> Self {
        self.config.argv = argv;
        self
    }

    /// The configuration, or [`ServerError::Config`] for an unusable combination.
    pub fn build(mut self) -> Result<ServerConfig, ServerError> {
        let invalid = |reason: String| Err(ServerError::Config { reason });
        if self.config.listen.is_empty() {
            return invalid("no address to listen on".to_owned());
        }
        if !(self.max_upload_mb.is_finite() && self.max_upload_mb > 0.0) {
            return invalid(format!(
                "--max-upload-size must be a positive number of MB, not {}",
                self.max_upload_mb
            ));
        }
        self.config.max_upload_bytes = mb_to_bytes(self.max_upload_mb);
        if let Some(origin) = &self.cors_origin {
            match HeaderValue::from_str(origin) {
                Ok(value) => self.config.cors_origin = Some(value),
                Err(_) => {
                    return invalid(format!(
                        "--enable-cors-header {origin:?} is not a valid header value"
                    ))
                }
            }
        }
        if self.config.max_history == 0 {
            return invalid("the history must keep at least one entry".to_owned());
        }
        for (flag, dir) in [
            ("--front-end-root", &self.config.front_end_root),
            ("templates", &self.config.templates_dir),
        ] {
            if let Some(dir) = dir.as_ref().filter(|dir| !dir.is_dir()) {
                return invalid(format!("{flag} {} is not a folder", dir.display()));
            }
        }
        Ok(self.config)
    }
}

/// ComfyUI: `round(max_upload_size * 1024 * 1024)`.
fn mb_to_bytes(megabytes: f64) -> u64 {
    // Finite and positive (checked by the builder); saturates for absurd values.
    (megabytes * 1024.0 * 1024.0).round() as u64
}
