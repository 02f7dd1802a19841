//! `kiln` / `kiln serve`: the ComfyUI-compatible server with Kiln's built-in nodes. Prints the
//! URL and the device plan, serves until Ctrl-C, then stops cleanly (the running prompt is
//! re-queued for the next start).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use kiln_nodes::builtin_registry;
use kiln_runtime::{detect_host, BackendKind};
use kiln_server::{DeviceStats, LogBuffer, Server, ServerConfig};

use super::services::node_services;
use crate::flags::ComfyArgs;

/// Runs the server until Ctrl-C. `logs` is the buffer the log subscriber writes into
/// (`/internal/logs` shows it).
pub fn serve(
    global: &ComfyArgs,
    simulate: Option<&str>,
    logs: LogBuffer,
) -> anyhow::Result<ExitCode> {
    if global.tls_keyfile.is_some() || global.tls_certfile.is_some() {
        eprintln!("kiln: warning: TLS is not supported yet; serving plain HTTP");
    }
    let folders = global
        .folder_paths()
        .context("cannot set up the model folders")?;
    clear_temp_directory(folders.temp_directory());

    let (services, profile) = node_services(global, simulate, folders.clone())?;
    eprintln!(
        "kiln: device {} — {} ({} MiB total, {} MiB free)",
        profile.name,
        profile.description,
        profile.total_memory >> 20,
        profile.free_memory >> 20
    );
    let devices = device_stats(profile);
    let services = Arc::new(services);
    let combos = Arc::clone(&services);
    let unload = Arc::clone(&services);
    let config = ServerConfig::builder(folders, Arc::new(builtin_registry()), services)
        .listen(global.listen())
        .port(global.port())
        .combo_options(Arc::new(move |key| combos.combo_options(key)))
        .cors_origin(global.cors_origin().map(str::to_owned))
        .max_upload_size_mb(global.max_upload_size_mb())
        .front_end_root(global.front_end_root.clone())
        .devices(devices)
        .unload_models(Arc::new(move || unload.models().clear()))
        .logs(logs)
        .argv(std::env::args().collect())
        .build()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let server = Server::start(config)?.bind().await?;
        if !global.dont_print_server {
            for address in server.local_addrs() {
                println!("To see the GUI go to: http://{address}");
            }
        }
        server
            .serve_until(async {
                let _ = tokio::signal::ctrl_c().await;
                eprintln!("kiln: stopping (the running prompt will resume at the next start)");
            })
            .await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `/system_stats` devices: live figures for the CPU, the detected figures for a GPU.
fn device_stats(profile: kiln_runtime::CapabilityProfile) -> kiln_server::DeviceStatsProvider {
    Arc::new(move || {
        if profile.backend == BackendKind::Cpu {
            vec![DeviceStats::from_profile(&detect_host(), 0)]
        } else {
            vec![DeviceStats::from_profile(&profile, 0)]
        }
    })
}

/// ComfyUI empties the temp folder (previews) at startup.
fn clear_temp_directory(temp: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(error) = removed {
            tracing::warn!(path = %path.display(), %error, "cannot clear the temp folder");
        }
    }
}
