//! Request shapes of the JSON routes, parsed from loose JSON the way ComfyUI reads them
//! (missing or ill-typed optional fields are ignored), and query-string helpers.

use std::collections::HashMap;

use serde_json::Value as Json;

use crate::error::ServerError;

/// The body of `POST /prompt`.
pub(crate) struct PromptRequest {
    pub(crate) prompt: Json,
    pub(crate) prompt_id: String,
    pub(crate) client_id: Option<String>,
    pub(crate) extra_data: Option<Json>,
    pub(crate) number: Option<f64>,
    pub(crate) front: bool,
    pub(crate) partial_execution_targets: Option<Vec<String>>,
}

impl PromptRequest {
    /// Reads the body; [`ServerError::NoPrompt`] without a `prompt`.
    pub(crate) fn from_json(mut body: Json) -> Result<PromptRequest, ServerError> {
        let Some(prompt) = body.get_mut("prompt").map(Json::take) else {
            return Err(ServerError::NoPrompt);
        };
        let text = |key: &str| {
            body.get(key)
                .and_then(Json::as_str)
                .filter(|text| !text.is_empty())
                .map(str::to_owned)
        };
        let prompt_id = text("prompt_id").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let client_id = text("client_id");
        let number = body.get("number").and_then(Json::as_f64);
        let front = body.get("front").and_then(Json::as_bool).unwrap_or(false);
        let partial_execution_targets = body
            .get("partial_execution_targets")
            .and_then(Json::as_array)
            .map(|targets| {
                targets
                    .iter()
                    .filter_map(|target| target.as_str().map(str::to_owned))
                    .collect()
            });
        Ok(PromptRequest {
            prompt,
            prompt_id,
            client_id,
            number,
            front,
            partial_execution_targets,
            extra_data: body.get_mut("extra_data").map(Json::take),
        })
    }
}

/// `{"delete": [ids]}` of `POST /queue` and `POST /history`.
pub(crate) fn delete_ids(body: &Json) -> Option<Vec<String>> {
    body.get("delete").and_then(Json::as_array).map(|ids| {
        ids.iter()
            .filter_map(|id| id.as_str().map(str::to_owned))
            .collect()
    })
}

/// `{"clear": true}`.
pub(crate) fn wants_clear(body: &Json) -> bool {
    body.get("clear").and_then(Json::as_bool).unwrap_or(false)
}

/// Query-string values as ComfyUI reads them.
pub(crate) struct QueryArgs(pub(crate) HashMap<String, String>);

impl QueryArgs {
    pub(crate) fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// `true`/`1` (any case) is true; anything else, or absence, is `default` only when absent.
    pub(crate) fn flag(&self, key: &str, default: bool) -> bool {
        match self.text(key) {
            Some(value) => matches!(value.to_ascii_lowercase().as_str(), "true" | "1"),
            None => default,
        }
    }

    /// A number, or 400 when present but not one.
    pub(crate) fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ServerError> {
        self.text(key)
            .map(|value| {
                value
                    .trim()
                    .parse()
                    .map_err(|_| ServerError::bad_request(format!("{key} must be a number")))
            })
            .transpose()
    }
}
