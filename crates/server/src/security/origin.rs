//! The two cross-origin middlewares, one of which is always on: ComfyUI's origin check (a
//! request whose `Origin` host differs from a loopback `Host` is refused with 403, so a web
//! page cannot drive a local server) when CORS is off, or the CORS headers of
//! `--enable-cors-header` when it is on.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ServerError;

/// The origin check (ComfyUI's `create_origin_only_middleware`). `OPTIONS` gets an empty 200.
pub(crate) async fn origin_guard(request: Request, next: Next) -> Response {
    let refused = {
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|value: &HeaderValue| value.to_str().ok())
        };
        cross_origin(header(HOST), header(ORIGIN))
    };
    if let Some((origin, host)) = refused {
        tracing::warn!(%origin, %host, "request with non matching host and origin; refused");
        return ServerError::CrossOrigin { origin, host }.into_response();
    }
    if request.method() == Method::OPTIONS {
        return Response::default();
    }
    next.run(request).await
}

/// `--enable-cors-header ORIGIN`: ComfyUI's `create_cors_middleware`.
pub(crate) async fn cors_headers(
    State(allowed_origin): State<HeaderValue>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = if request.method() == Method::OPTIONS {
        Response::default()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert("Access-Control-Allow-Origin", allowed_origin);
    headers.insert(
        "Access-Control-Allow-Methods",
        HeaderValue::from_static("POST, GET, DELETE, PUT, OPTIONS, PATCH"),
    );
    headers.insert(
        "Access-Control-Allow-Headers",
        HeaderValue::from_static("Content-Type, Authorization"),
    );
    headers.insert(
        "Access-Control-Allow-Credentials",
        HeaderValue::from_static("true"),
    );
    response
}

/// `Some((origin, host))` when the request must be refused.
///
/// As ComfyUI: only when `Host` is a loopback name; ports are compared only when both sides
/// carry one. Stricter than ComfyUI: an opaque `Origin: null` (sandboxed frames, `file:`
/// pages) counts as foreign, and names other than `localhost` are not resolved (a DNS lookup
/// per request would block), so they are not treated as loopback.
fn cross_origin(host: Option<&str>, origin: Option<&str>) -> Option<(String, String)> {
    let (host, origin) = (host?, origin?);
    let host_lower = host.to_ascii_lowercase();
    let host_parts = split_authority(&host_lower);
    if !host_parts.hostname.as_deref().is_some_and(is_loopback) {
        return None;
    }
    let refused = || Some((origin.to_owned(), host.to_owned()));
    let origin_lower = origin.to_ascii_lowercase();
    if origin_lower == "null" {
        return refused();
    }
    let origin_netloc = netloc(&origin_lower);
    let origin_parts = split_authority(origin_netloc);
    let host_side = match origin_parts.port {
        None => host_parts.hostname.clone().unwrap_or_default(),
        Some(_) => host_lower.clone(),
    };
    let origin_side = match host_parts.port {
        None => origin_parts.hostname.clone().unwrap_or_default(),
        Some(_) => origin_netloc.to_owned(),
    };
    if host_side.is_empty() || origin_side.is_empty() || host_side == origin_side {
        None
    } else {
        refused()
    }
}

/// `scheme://netloc/path` → `netloc` (Python's `urlparse(...).netloc`).
fn netloc(url: &str) -> &str {
    let Some((_, rest)) = url.split_once("://") else {
        return "";
    };
    rest.split(['/', '?', '#']).next().unwrap_or("")
}

/// A netloc's host name (brackets removed, user info dropped) and port.
struct Authority {
    hostname: Option<String>,
    port: Option<u16>,
}

fn split_authority(netloc: &str) -> Authority {
    let host_port = netloc.rsplit_once('@').map_or(netloc, |(_, rest)| rest);
    let (hostname, port) = if let Some(rest) = host_port.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, after)) => (inside, after.strip_prefix(':')),
            None => (rest, None),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host_port, None),
        }
    };
    Authority {
        hostname: (!hostname.is_empty()).then(|| hostname.to_owned()),
        port: port.and_then(|port| port.parse().ok()),
    }
}

fn is_loopback(hostname: &str) -> bool {
    match hostname.parse::<IpAddr>() {
        Ok(address) => address.is_loopback(),
        Err(_) => hostname == "localhost" || hostname.ends_with(".localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_and_non_browser_requests_pass() {
        assert!(cross_origin(Some("127.0.0.1:8188"), None).is_none());
        assert!(cross_origin(Some("127.0.0.1:8188"), Some("http://127.0.0.1:8188")).is_none());
        assert!(cross_origin(Some("localhost:8188"), Some("http://localhost:8188")).is_none());
        assert!(cross_origin(Some("[::1]:8188"), Some("http://[::1]:8188")).is_none());
        // ComfyUI compares host names only when one side has no port.
        assert!(cross_origin(Some("localhost"), Some("http://localhost:3000")).is_none());
        // A LAN host name is not checked (ComfyUI limits the check to loopback hosts).
        assert!(cross_origin(Some("192.168.1.5:8188"), Some("http://evil.example")).is_none());
    }

    #[test]
    fn foreign_origins_on_loopback_are_refused() {
        assert!(cross_origin(Some("127.0.0.1:8188"), Some("http://evil.example")).is_some());
        assert!(cross_origin(Some("127.0.0.1:8188"), Some("http://localhost:8188")).is_some());
        assert!(cross_origin(Some("localhost:8188"), Some("https://evil.example:8188")).is_some());
        assert!(cross_origin(Some("127.0.0.1:8188"), Some("null")).is_some());
    }
}
