//! [`app`]: the whole ComfyUI route table in one place. Every API route answers at `/x` and
//! at `/api/x`; `/internal/*` only there; the web root (the official frontend, or else the
//! built-in page) is the fallback.

use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, patch, post};
use axum::Router;

use crate::routes::{
    files, history, info, internal, jobs, models, prompt, static_files, userdata, users,
};
use crate::security::{cors_headers, origin_guard};
use crate::state::AppState;
use crate::{page, templates, ws};

/// The server's router.
pub fn app(state: AppState) -> Router {
    let config = state.config();
    let upload_limit =
        DefaultBodyLimit::max(usize::try_from(config.max_upload_bytes).unwrap_or(usize::MAX));
    let api = Router::new()
        // Prompts, queue, history, jobs.
        .route("/prompt", get(prompt::queue_info).post(prompt::submit))
        .route("/queue", get(prompt::queue).post(prompt::edit_queue))
        .route("/interrupt", post(prompt::interrupt))
        .route("/free", post(prompt::free))
        .route("/history", get(history::list).post(history::edit))
        .route("/history/{prompt_id}", get(history::entry))
        .route("/jobs", get(jobs::list))
        .route("/jobs/cancel", post(jobs::cancel_many))
        .route("/jobs/{prompt_id}", get(jobs::detail))
        .route("/jobs/{prompt_id}/cancel", post(jobs::cancel))
        // Files.
        .route("/view", get(files::view))
        .route("/view_metadata/{folder}", get(files::view_metadata))
        .route(
            "/upload/image",
            post(files::upload_image).layer(upload_limit),
        )
        .route("/upload/mask", post(files::upload_mask).layer(upload_limit))
        // Introspection.
        .route("/object_info", get(info::object_info))
        .route("/object_info/{class_type}", get(info::object_info_class))
        .route("/system_stats", get(info::system_stats))
        .route("/features", get(info::features))
        .route("/embeddings", get(info::embeddings))
        .route("/extensions", get(info::extensions))
        .route("/i18n", get(info::i18n))
        .route("/workflow_templates", get(templates::module_list))
        .route(
            "/workflow_templates/{module}/{file}",
            get(templates::module_asset),
        )
        .route("/global_subgraphs", get(templates::global_subgraphs))
        .route("/models", get(models::folders))
        .route("/models/{folder}", get(models::files))
        .route("/experiment/models", get(models::experiment_folders))
        .route("/experiment/models/{folder}", get(models::experiment_files))
        // Users, settings, userdata.
        .route("/users", get(users::users).post(users::add_user))
        .route(
            "/settings",
            get(users::settings).post(users::merge_settings),
        )
        .route(
            "/settings/{id}",
            get(users::setting).post(users::set_setting),
        )
        .route("/userdata", get(userdata::list))
        .route("/v2/userdata", get(userdata::list_v2))
        .route(
            "/userdata/{file}",
            get(userdata::read)
                .post(userdata::write)
                .delete(userdata::delete),
        )
        .route("/userdata/{file}/move/{dest}", post(userdata::rename))
        // Events.
        .route("/ws", get(ws::upgrade));
    let internal = Router::new()
        .route("/logs", get(internal::logs))
        .route("/logs/raw", get(internal::logs_raw))
        .route("/logs/subscribe", patch(internal::logs_subscribe))
        .route("/folder_paths", get(internal::folder_paths))
        .route("/files/{type_name}", get(internal::files));

    let mut router = Router::new()
        .merge(api.clone())
        .nest("/api", api)
        .nest("/internal", internal);
    router = match &config.templates_dir {
        Some(dir) => router.nest_service("/templates", static_files::templates(dir)),
        None => router.nest_service("/templates", templates::embedded_core_service()),
    };
    router = match &config.front_end_root {
        Some(root) => router.fallback_service(static_files::frontend(root)),
        None => router
            .route("/", get(page::index))
            .route("/page/app.js", get(page::script))
            .route("/page/style.css", get(page::style))
            .fallback(static_files::not_found),
    };
    let router = router.layer(DefaultBodyLimit::max(config.max_json_bytes));
    let router = match config.cors_origin.clone() {
        Some(origin) => router.layer(from_fn_with_state(origin, cors_headers)),
        None => router.layer(from_fn(origin_guard)),
    };
    router.with_state(state)
}
