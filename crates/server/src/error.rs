//! [`ServerError`]: every way a request or the server itself can fail, and the one place that
//! decides the HTTP status and the (safe) body a client sees.

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kiln_graph::{ValidationError, ValidationFailure};
use serde_json::json;

use crate::security::PathError;

/// Everything that can go wrong in the server. Handlers return it; [`IntoResponse`] maps it to
/// a status code here and nowhere else.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A request that is malformed (missing or ill-typed parameter, field or part).
    #[error("bad request: {reason}")]
    BadRequest {
        /// What is wrong, safe to show.
        reason: String,
    },
    /// A body that is not JSON.
    #[error("invalid JSON body: {reason}")]
    InvalidJson {
        /// The parser's message.
        reason: String,
    },
    /// A JSON body nested deeper than the server accepts.
    #[error("JSON body nested deeper than {limit} levels")]
    JsonTooDeep {
        /// The accepted depth.
        limit: usize,
    },
    /// `POST /prompt` without a `prompt`.
    #[error("no prompt provided")]
    NoPrompt,
    /// A prompt that failed validation (ComfyUI's 400 body).
    #[error("prompt failed validation: {0}")]
    Validation(Box<ValidationFailure>),
    /// A client-supplied path that would leave its folder.
    #[error("{field}: {source}")]
    Path {
        /// Which parameter held the path (`filename`, `subfolder`, `file`, ...).
        field: &'static str,
        /// Why it was refused.
        source: PathError,
    },
    /// An unknown `type` (`output`, `input`, `temp` are known).
    #[error("unknown folder type '{type_name}'")]
    UnknownFolderType {
        /// The given type.
        type_name: String,
    },
    /// Nothing at that path, id or key.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, safe to show.
        what: String,
    },
    /// The target exists and overwriting was not asked for.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What exists.
        what: String,
    },
    /// A prompt id that is already queued or running.
    #[error("prompt {prompt_id} is already queued")]
    DuplicatePrompt {
        /// The prompt id.
        prompt_id: String,
    },
    /// An upload that does not decode as an image.
    #[error("upload '{name}' is not an image: {reason}")]
    NotAnImage {
        /// The uploaded file name.
        name: String,
        /// The decoder's message.
        reason: String,
    },
    /// A body over its limit (`--max-upload-size` for uploads).
    #[error("request body too large")]
    PayloadTooLarge,
    /// A cross-site request refused by the origin check (CSRF guard).
    #[error("origin '{origin}' does not match host '{host}'")]
    CrossOrigin {
        /// The request's `Origin` host.
        origin: String,
        /// The request's `Host`.
        host: String,
    },
    /// The engine's command queue is full.
    #[error("the engine is busy; try again")]
    Overloaded,
    /// The engine thread is gone (shutting down).
    #[error("the engine has stopped")]
    EngineStopped,
    /// A database operation failed.
    #[error("database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A stored row that does not parse (a damaged database).
    #[error("database {path}: corrupt row for {prompt_id}: {reason}")]
    CorruptRow {
        /// The database file.
        path: PathBuf,
        /// The row's prompt id.
        prompt_id: String,
        /// What did not parse.
        reason: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Encoding an image failed.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// The encoder's message.
        reason: String,
    },
    /// Binding a listening socket failed.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration is inconsistent.
    #[error("invalid server configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// A background task or thread failed unexpectedly.
    #[error("internal task failed: {reason}")]
    Internal {
        /// What failed.
        reason: String,
    },
}

impl ServerError {
    /// `Io` for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ServerError {
        let path = path.into();
        move |source| ServerError::Io { path, source }
    }

    /// `BadRequest` with `reason`.
    pub(crate) fn bad_request(reason: impl Into<String>) -> ServerError {
        ServerError::BadRequest {
            reason: reason.into(),
        }
    }

    /// `NotFound` for `what`.
    pub(crate) fn not_found(what: impl Into<String>) -> ServerError {
        ServerError::NotFound { what: what.into() }
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::BadRequest { .. }
            | ServerError::InvalidJson { .. }
            | ServerError::JsonTooDeep { .. }
            | ServerError::NoPrompt
            | ServerError::Validation(_)
            | ServerError::UnknownFolderType { .. }
            | ServerError::DuplicatePrompt { .. }
            | ServerError::NotAnImage { .. } => StatusCode::BAD_REQUEST,
            // ComfyUI answers 403 when a path would leave its folder.
            ServerError::Path { source, .. } => match source {
                PathError::ForbiddenCharacter { .. } => StatusCode::BAD_REQUEST,
                PathError::BaseUnavailable { .. } => StatusCode::NOT_FOUND,
                _ => StatusCode::FORBIDDEN,
            },
            ServerError::CrossOrigin { .. } => StatusCode::FORBIDDEN,
            ServerError::NotFound { .. } => StatusCode::NOT_FOUND,
            ServerError::AlreadyExists { .. } => StatusCode::CONFLICT,
            ServerError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::Overloaded | ServerError::EngineStopped => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::Database { .. }
            | ServerError::CorruptRow { .. }
            | ServerError::Io { .. }
            | ServerError::Encode { .. }
            | ServerError::Bind { .. }
            | ServerError::Config { .. }
            | ServerError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The short machine-readable `error.type`.
    fn kind(&self) -> &'static str {
        match self {
            ServerError::BadRequest { .. } => "bad_request",
            ServerError::InvalidJson { .. } => "invalid_json",
            ServerError::JsonTooDeep { .. } => "json_too_deep",
            ServerError::NoPrompt => "no_prompt",
            ServerError::Validation(_) => "prompt_outputs_failed_validation",
            ServerError::Path { .. } => "invalid_path",
            ServerError::UnknownFolderType { .. } => "invalid_type",
            ServerError::NotFound { .. } => "not_found",
            ServerError::AlreadyExists { .. } => "already_exists",
            ServerError::DuplicatePrompt { .. } => "duplicate_prompt",
            ServerError::NotAnImage { .. } => "not_an_image",
            ServerError::PayloadTooLarge => "payload_too_large",
            ServerError::CrossOrigin { .. } => "cross_origin",
            ServerError::Overloaded => "overloaded",
            ServerError::EngineStopped => "engine_stopped",
            ServerError::Database { .. }
            | ServerError::CorruptRow { .. }
            | ServerError::Io { .. }
            | ServerError::Encode { .. }
            | ServerError::Bind { .. }
            | ServerError::Config { .. }
            | ServerError::Internal { .. } => "server_error",
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ServerError::Validation(failure) => failure.to_json(),
            ServerError::NoPrompt => {
                json!({"error": ValidationError::no_prompt().to_json(), "node_errors": {}})
            }
            _ if status.is_server_error() => {
                // Internals (paths, SQLite messages) stay in the log.
                tracing::error!(error = %self, "request failed");
                json!({"error": {"type": self.kind(), "message": "internal server error",
                                 "details": "", "extra_info": {}}, "node_errors": {}})
            }
            _ => {
                tracing::debug!(error = %self, "request refused");
                json!({"error": {"type": self.kind(), "message": self.to_string(),
                                 "details": "", "extra_info": {}}, "node_errors": {}})
            }
        };
        (status, Json(body)).into_response()
    }
}

/// A handler's result.
pub(crate) type ApiResult<T> = Result<T, ServerError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_variant() {
        let escape = ServerError::Path {
            field: "subfolder",
            source: PathError::Escapes { path: "x".into() },
        };
        assert_eq!(escape.status(), StatusCode::FORBIDDEN);
        let backslash = ServerError::Path {
            field: "filename",
            source: PathError::ForbiddenCharacter {
                path: "a\\b".into(),
            },
        };
        assert_eq!(backslash.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            ServerError::Overloaded.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ServerError::PayloadTooLarge.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
