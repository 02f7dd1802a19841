//! Request bodies with bounds: [`RawBody`] (any bytes, size-limited by the router) and
//! [`JsonBody`] (JSON whatever the `Content-Type`, nesting checked before parsing), both
//! rejecting in the server's own error format.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::Value as Json;

use crate::error::ServerError;

/// The deepest JSON nesting accepted. serde_json stops at 128 on its own; checking first gives
/// a clear error and keeps every recursive walk over the value shallow.
pub(crate) const MAX_JSON_DEPTH: usize = 100;

/// The raw request body.
pub(crate) struct RawBody(pub(crate) Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ServerError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ServerError::PayloadTooLarge)
            }
            Err(rejection) => Err(ServerError::bad_request(rejection.body_text())),
        }
    }
}

/// A JSON body, accepted whatever its `Content-Type` (the frontend sends settings and
/// userdata without one). An empty body is JSON `null`.
pub(crate) struct JsonBody(pub(crate) Json);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ServerError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(Json::Null));
        }
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON after checking its nesting depth.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Json, ServerError> {
    if nesting_depth(bytes) > MAX_JSON_DEPTH {
        return Err(ServerError::JsonTooDeep {
            limit: MAX_JSON_DEPTH,
        });
    }
    serde_json::from_slice(bytes).map_err(|error| ServerError::InvalidJson {
        reason: error.to_string(),
    })
}

/// The deepest `[`/`{` nesting outside strings (an upper bound for malformed input).
fn nesting_depth(bytes: &[u8]) -> usize {
    let mut depth = 0_usize;
    let mut deepest = 0;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(nesting_depth(br#"{"a": "[[[{{\"[", "b": [1, [2]]}"#), 3);
        assert_eq!(nesting_depth(b"1"), 0);
    }

    #[test]
    fn deep_json_is_refused_before_parsing() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(matches!(
            parse_json(deep.as_bytes()),
            Err(ServerError::JsonTooDeep { .. })
        ));
        let fine = "[".repeat(MAX_JSON_DEPTH) + &"]".repeat(MAX_JSON_DEPTH);
        assert!(parse_json(fine.as_bytes()).is_ok());
    }
}
