//! The records the queue stores: a [`QueueItem`] (ComfyUI's 5-element queue tuple), the
//! [`HistoryRecord`] written when it finishes, and the [`JobStatus`] `/jobs` reports.

use serde_json::{json, Map, Value as Json};

/// `extra_data` keys ComfyUI never echoes back (comfy.org credentials).
const SENSITIVE_KEYS: &[&str] = &["auth_token_comfy_org", "api_key_comfy_org"];

/// One queued prompt: `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueItem {
    /// Priority: the lower, the sooner (negative for `front`).
    pub number: f64,
    /// The prompt id.
    pub prompt_id: String,
    /// The validated API prompt (literals coerced, as ComfyUI writes them back).
    pub prompt: Json,
    /// `extra_data` with `client_id` and `create_time`, credentials removed.
    pub extra_data: Json,
    /// Output node ids to run.
    pub outputs: Vec<String>,
    /// When it was queued, milliseconds since the Unix epoch.
    pub create_time: u64,
}

impl QueueItem {
    /// The item as ComfyUI's JSON array.
    pub fn to_json(&self) -> Json {
        json!([
            number_json(self.number),
            self.prompt_id,
            self.prompt,
            self.extra_data,
            self.outputs
        ])
    }

    /// `extra_data.client_id`, if it names a socket (an empty id names none).
    pub fn client_id(&self) -> Option<&str> {
        self.extra_data
            .get("client_id")
            .and_then(Json::as_str)
            .filter(|id| !id.is_empty())
    }

    /// `extra_data.extra_pnginfo.workflow.id`: the UI workflow the prompt came from.
    pub fn workflow_id(&self) -> Option<String> {
        self.extra_data
            .pointer("/extra_pnginfo/workflow/id")
            .and_then(Json::as_str)
            .map(str::to_owned)
    }
}

/// `extra_data` as stored: the request's object without credentials, plus `client_id` and
/// `create_time` as ComfyUI adds them.
pub(crate) fn stored_extra_data(
    extra_data: Option<&Json>,
    client_id: Option<&str>,
    create_time: u64,
) -> Json {
    let mut map = match extra_data {
        Some(Json::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    for key in SENSITIVE_KEYS {
        map.remove(*key);
    }
    if let Some(client_id) = client_id {
        map.insert("client_id".to_owned(), Json::String(client_id.to_owned()));
    }
    map.insert("create_time".to_owned(), Json::from(create_time));
    Json::Object(map)
}

/// A queue number as JSON: integral numbers as integers (`3`, `-2`), others as floats, as
/// Python prints the int counter and a float `number` given by the client.
pub fn number_json(number: f64) -> Json {
    if number.fract() == 0.0 && number.abs() < 9.0e15 {
        // Integral and well inside i64: exact.
        Json::from(number as i64)
    } else {
        serde_json::Number::from_f64(number)
            .map(Json::Number)
            .unwrap_or(Json::Null)
    }
}

/// A job's state as `/jobs` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    /// Queued.
    Pending,
    /// Running now.
    InProgress,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
    /// Interrupted.
    Cancelled,
}

impl JobStatus {
    /// Every status, in `/jobs` order.
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Pending,
        JobStatus::InProgress,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::InProgress => "in_progress",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// The status called `name`.
    pub fn parse(name: &str) -> Option<JobStatus> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == name)
    }
}

/// What a finished prompt leaves in history.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryRecord {
    /// The item that ran.
    pub item: QueueItem,
    /// `outputs`: UI dicts by node id.
    pub outputs: Json,
    /// `meta` by node id.
    pub meta: Json,
    /// `status.messages`: `[[event, data], ...]` of the `execution_*` events.
    pub messages: Vec<Json>,
    /// How it ended.
    pub status: JobStatus,
    /// When it started, ms since the epoch.
    pub start_time: Option<u64>,
    /// When it ended, ms since the epoch.
    pub end_time: u64,
    /// The `execution_error` data, if it failed.
    pub execution_error: Option<Json>,
}

impl HistoryRecord {
    /// `status`: `{"status_str", "completed", "messages"}`.
    pub fn status_json(&self) -> Json {
        let success = self.status == JobStatus::Completed;
        json!({
            "status_str": if success { "success" } else { "error" },
            "completed": success,
            "messages": self.messages,
        })
    }

    /// How many media items the outputs hold (`outputs_count`).
    pub fn outputs_count(&self) -> usize {
        media_items(&self.outputs).count()
    }

    /// The first media item (`preview_output`), preferring saved outputs over temp previews.
    pub fn preview_output(&self) -> Option<Json> {
        let mut items: Vec<_> = media_items(&self.outputs).collect();
        items.sort_by_key(|(_, _, item)| item.get("type").and_then(Json::as_str) != Some("output"));
        let (node_id, media_type, item) = items.into_iter().next()?;
        let mut preview = item.as_object().cloned().unwrap_or_default();
        preview.insert("nodeId".to_owned(), Json::String(node_id.to_owned()));
        preview.insert("mediaType".to_owned(), Json::String(media_type.to_owned()));
        Some(Json::Object(preview))
    }
}

/// `(node_id, media type, item)` for each file in a history `outputs` object.
fn media_items(outputs: &Json) -> impl Iterator<Item = (&str, &'static str, &Json)> {
    const MEDIA: [(&str, &str); 4] = [
        ("images", "images"),
        ("video", "video"),
        ("audio", "audio"),
        ("3d", "3d"),
    ];
    outputs
        .as_object()
        .into_iter()
        .flat_map(|map| map.iter())
        .flat_map(|(node_id, ui)| {
            MEDIA.iter().flat_map(move |(key, media_type)| {
                ui.get(*key)
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|item| item.get("filename").is_some())
                    .map(move |item| (node_id.as_str(), *media_type, item))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_like_python() {
        assert_eq!(number_json(3.0), json!(3));
        assert_eq!(number_json(-2.0), json!(-2));
        assert_eq!(number_json(1.5), json!(1.5));
    }

    #[test]
    fn extra_data_loses_credentials_and_gains_ids() {
        let stored = stored_extra_data(
            Some(&json!({"auth_token_comfy_org": "secret", "extra_pnginfo": {}})),
            Some("abc"),
            7,
        );
        assert_eq!(
            stored,
            json!({"extra_pnginfo": {}, "client_id": "abc", "create_time": 7})
        );
    }

    #[test]
    fn preview_prefers_saved_images() {
        let item = QueueItem {
            number: 0.0,
            prompt_id: "p".into(),
            prompt: json!({}),
            extra_data: json!({}),
            outputs: vec![],
            create_time: 0,
        };
        let record = HistoryRecord {
            item,
            outputs: json!({
                "3": {"images": [{"filename": "a.png", "subfolder": "", "type": "temp"}]},
                "9": {"images": [{"filename": "b.png", "subfolder": "", "type": "output"}],
                      "text": ["x"]},
            }),
            meta: json!({}),
            messages: vec![],
            status: JobStatus::Completed,
            start_time: None,
            end_time: 0,
            execution_error: None,
        };
        assert_eq!(record.outputs_count(), 2);
        assert_eq!(
            record.preview_output().unwrap(),
            json!({"filename": "b.png", "subfolder": "", "type": "output", "nodeId": "9",
                   "mediaType": "images"})
        );
    }
}
