//! The web root: the official frontend from `--front-end-root` (correct MIME types, no-cache
//! on pages, scripts and styles), `/templates/*` from a templates folder laid over the
//! embedded templates, and the 404 for other paths when the built-in page ([`crate::page`])
//! is served instead.

use std::path::Path;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, Response};
use axum::routing::MethodRouter;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeader;

use crate::error::ServerError;
use crate::templates;

/// The frontend folder, served with `Cache-Control: no-cache` on HTML, JS and CSS (as ComfyUI
/// does, so an upgraded frontend is picked up at once).
pub(crate) fn frontend(
    root: &Path,
) -> SetResponseHeader<
    ServeDir,
    impl FnMut(
            &Response<tower_http::services::fs::ServeFileSystemResponseBody>,
        ) -> Option<HeaderValue>
        + Clone,
> {
    let no_cache = |response: &Response<_>| {
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        let revalidate = ["text/html", "javascript", "text/css"]
            .iter()
            .any(|kind| content_type.contains(kind));
        revalidate.then(|| HeaderValue::from_static("no-cache"))
    };
    SetResponseHeader::overriding(ServeDir::new(root), CACHE_CONTROL, no_cache)
}

/// The templates folder (`/templates/index.json`, `/templates/<id>.json`, thumbnails) over
/// the embedded templates: a file in the folder wins, any other name falls through to
/// [`templates::embedded_core_service`] (which also answers paths the folder refuses, `..`).
pub(crate) fn templates(dir: &Path) -> ServeDir<MethodRouter> {
    ServeDir::new(dir).fallback(templates::embedded_core_service())
}

/// Anything else without `--front-end-root`.
pub(crate) async fn not_found() -> ServerError {
    ServerError::not_found("page")
}
