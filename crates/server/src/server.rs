//! [`Server`]: starts the engine, binds the listeners and serves [`crate::app`] until told to
//! stop; then stops the engine (the running prompt is re-queued for the next start).

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

use crate::app::app;
use crate::config::ServerConfig;
use crate::engine::{Engine, EngineConfig, EngineHandle};
use crate::error::ServerError;
use crate::state::AppState;

/// A started engine plus the HTTP state around it.
pub struct Server {
    engine: Engine,
    state: AppState,
    listen: Vec<String>,
    port: u16,
}

impl Server {
    /// Opens the queue database and starts the engine (pending prompts start running).
    pub fn start(config: ServerConfig) -> Result<Server, ServerError> {
        let engine = Engine::start(EngineConfig {
            database: config.database.clone(),
            registry: config.registry.clone(),
            services: config.services.clone(),
            max_history: config.max_history,
            unload_models: config.unload_models.clone(),
        })?;
        let listen = config.listen.clone();
        let port = config.port;
        let state = AppState::new(config, engine.handle());
        Ok(Server {
            engine,
            state,
            listen,
            port,
        })
    }

    /// The router (for `oneshot` tests or embedding).
    pub fn router(&self) -> Router {
        app(self.state.clone())
    }

    /// A handle to the engine.
    pub fn engine(&self) -> EngineHandle {
        self.engine.handle()
    }

    /// Binds every `--listen` address on the port. IPv6 addresses go first: on systems
    /// where `::` also accepts IPv4, a following `0.0.0.0` is then already served and skipped.
    pub async fn bind(self) -> Result<BoundServer, ServerError> {
        let mut hosts: Vec<&String> = self.listen.iter().collect();
        hosts.sort_by_key(|host| !host.contains(':'));
        let mut listeners = Vec::new();
        let mut dual_stack = false;
        for host in hosts {
            let target = if host.contains(':') {
                format!("[{host}]:{}", self.port)
            } else {
                format!("{host}:{}", self.port)
            };
            match TcpListener::bind(&target).await {
                Ok(listener) => {
                    dual_stack |= host.as_str() == "::";
                    listeners.push(listener);
                }
                Err(error)
                    if dual_stack
                        && host.as_str() == "0.0.0.0"
                        && error.kind() == std::io::ErrorKind::AddrInUse =>
                {
                    tracing::debug!("0.0.0.0 is served by the dual-stack [::] socket");
                }
                Err(source) => {
                    return Err(ServerError::Bind {
                        address: target,
                        source,
                    })
                }
            }
        }
        Ok(BoundServer {
            server: self,
            listeners,
        })
    }

    /// Stops the engine.
    pub fn shutdown(self) {
        self.engine.shutdown();
    }
}

/// A server with its sockets bound.
pub struct BoundServer {
    server: Server,
    listeners: Vec<TcpListener>,
}

impl BoundServer {
    /// The bound addresses (with the real port when 0 was asked for).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|listener| listener.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests in flight finish
    /// and stops the engine.
    pub async fn serve_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let router = self.server.router();
        let mut servers = Vec::new();
        for listener in self.listeners {
            let mut stopped = stopped.clone();
            let router = router.clone();
            servers.push(tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    })
                    .await
            }));
        }
        let mut result = Ok(());
        for server in servers {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    result = Err(ServerError::Internal {
                        reason: format!("server stopped: {error}"),
                    })
                }
                Err(error) => {
                    result = Err(ServerError::Internal {
                        reason: format!("server task failed: {error}"),
                    })
                }
            }
        }
        let server = self.server;
        tokio::task::spawn_blocking(move || server.shutdown())
            .await
            .map_err(|error| ServerError::Internal {
                reason: format!("engine shutdown failed: {error}"),
            })?;
        result
    }
}
