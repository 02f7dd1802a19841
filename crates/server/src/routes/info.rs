//! Introspection: `/object_info` from the node registry, `/system_stats`, `/features` and the
//! small lists the frontend asks for at boot (`/extensions`, `/i18n`, `/embeddings`).

use axum::extract::{Path, State};
use axum::Json as Reply;
use serde_json::{json, Map, Value as Json};

use crate::error::ApiResult;
use crate::state::{blocking, AppState};

/// The ComfyUI release whose API Kiln follows.
const COMFYUI_VERSION: &str = "0.3.64";
/// The frontend release Kiln is tested against.
const FRONTEND_VERSION: &str = "1.58.1";

/// `GET /object_info`: every node class, combos listed now.
pub(crate) async fn object_info(State(state): State<AppState>) -> ApiResult<Reply<Json>> {
    let registry = state.config().registry.clone();
    let combos = state.config().combo_options.clone();
    blocking(move || Ok(Reply(registry.object_info(&*combos)))).await
}

/// `GET /object_info/{class}`: `{class: info}` or `{}`.
pub(crate) async fn object_info_class(
    State(state): State<AppState>,
    Path(class_type): Path<String>,
) -> ApiResult<Reply<Json>> {
    let registry = state.config().registry.clone();
    let combos = state.config().combo_options.clone();
    blocking(move || {
        let mut answer = Map::new();
        if let Some(schema) = registry.schema(&class_type) {
            answer.insert(class_type.clone(), schema.to_object_info(&*combos));
        }
        Ok(Reply(Json::Object(answer)))
    })
    .await
}

/// `GET /system_stats`: real RAM and the devices the runtime detected.
pub(crate) async fn system_stats(State(state): State<AppState>) -> ApiResult<Reply<Json>> {
    let devices = state.config().devices.clone();
    let argv = state.config().argv.clone();
    blocking(move || {
        let (ram_total, ram_free) = match sysinfo::System::new() {
            Ok(mut system) => {
                system.refresh_memory();
                (system.total_memory(), system.available_memory())
            }
            Err(_) => (0, 0),
        };
        Ok(Reply(json!({
            "system": {
                "os": std::env::consts::OS,
                "ram_total": ram_total,
                "ram_free": ram_free,
                "comfyui_version": COMFYUI_VERSION,
                "kiln_version": env!("CARGO_PKG_VERSION"),
                "required_frontend_version": FRONTEND_VERSION,
                "installed_templates_version": "",
                "required_templates_version": "",
                "python_version": "none (Kiln is written in Rust)",
                "pytorch_version": "none (candle)",
                "embedded_python": false,
                "argv": argv,
            },
            "devices": devices(),
        })))
    })
    .await
}

/// The server's feature flags (`GET /features` and the WebSocket `feature_flags` answer).
pub(crate) fn feature_flags(state: &AppState) -> Json {
    json!({
        "supports_preview_metadata": true,
        "max_upload_size": state.config().max_upload_bytes,
    })
}

/// `GET /features`.
pub(crate) async fn features(State(state): State<AppState>) -> Reply<Json> {
    Reply(feature_flags(&state))
}

/// `GET /extensions`: no custom node web extensions.
pub(crate) async fn extensions() -> Reply<Json> {
    Reply(json!([]))
}

/// `GET /i18n`: no custom node translations.
pub(crate) async fn i18n() -> Reply<Json> {
    Reply(json!({}))
}

/// `GET /embeddings`: embedding names without their extension.
pub(crate) async fn embeddings(State(state): State<AppState>) -> ApiResult<Reply<Json>> {
    let folders = state.config().folders.clone();
    blocking(move || {
        let names: Vec<String> = folders
            .list("embeddings")
            .unwrap_or_default()
            .into_iter()
            .map(|name| match name.rfind('.') {
                Some(dot) if dot > 0 => name[..dot].to_owned(),
                _ => name,
            })
            .collect();
        Ok(Reply(json!(names)))
    })
    .await
}
