//! The web root: the official frontend from `--front-end-root` (correct MIME types, no-cache
//! on pages, scripts and styles), `/templates/*` from a templates folder, and otherwise the
//! built-in page.

use std::path::Path;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, Response};
use axum::response::{Html, IntoResponse};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeader;

use crate::error::ServerError;

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

/// The templates folder (`/templates/index.json`, `/templates/<id>.json`, thumbnails).
pub(crate) fn templates(dir: &Path) -> ServeDir {
    ServeDir::new(dir)
}

/// `GET /` without `--front-end-root`.
pub(crate) async fn index() -> impl IntoResponse {
    ([(CACHE_CONTROL, "no-cache")], builtin_page())
}

/// Anything else without `--front-end-root`.
pub(crate) async fn not_found() -> ServerError {
    ServerError::not_found("page")
}

/// The page Kiln serves when no frontend folder is given. A placeholder until the built-in
/// generation page lands; replace the body here and nothing else changes.
pub fn builtin_page() -> Html<&'static str> {
    Html(BUILTIN_PAGE)
}

const BUILTIN_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Kiln</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;line-height:1.5}code{background:#eee;padding:0 .3em}</style>
</head>
<body>
<h1>Kiln is running</h1>
<p>The built-in generation page is coming. Meanwhile the ComfyUI API is served here:
<code>POST /prompt</code>, <code>GET /history</code>, <code>GET /view</code> and the WebSocket at <code>/ws</code>.</p>
<p>To use the official ComfyUI frontend, install <code>comfyui-frontend-package</code> and start Kiln with
<code>--front-end-root &lt;site-packages&gt;/comfyui_frontend_package/static</code>.</p>
</body>
</html>
"#;
