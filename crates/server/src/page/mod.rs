//! The built-in page: a small txt2img page (one HTML, one script, one stylesheet, embedded in
//! the binary) served at `/` when no `--front-end-root` is given. It speaks only the public
//! ComfyUI API, so it needs nothing from the server beyond what scripts already use.
//!
//! Every answer is `no-cache` (an upgraded binary serves its new page at once) and `nosniff`;
//! the HTML carries a Content-Security-Policy that allows only this origin's script, style,
//! images (plus `blob:` for live previews) and connections (the WebSocket included).

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::response::{Html, IntoResponse, Response};

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// No inline script or style, no plugins, no framing, no foreign connections. `data:` images
/// only for the empty favicon that stops the browser asking for `/favicon.ico`.
const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page's HTML, as served at `/` when no frontend folder is given. Its script and
/// stylesheet are at `/page/app.js` and `/page/style.css`.
pub fn builtin_page() -> Html<&'static str> {
    Html(INDEX_HTML)
}

/// `GET /`.
pub(crate) async fn index() -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (REFERRER_POLICY, "no-referrer"),
            (X_FRAME_OPTIONS, "DENY"),
            (CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE),
        ],
        builtin_page(),
    )
        .into_response()
}

/// `GET /page/app.js`.
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /page/style.css`.
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
