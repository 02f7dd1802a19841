//! The `/jobs` view of the store: queue and history as one list of jobs, filtered by status,
//! newest first, paginated (the shapes the official frontend validates with zod).

use rusqlite::params_from_iter;
use serde_json::{json, Map, Value as Json};

use super::item::{number_json, JobStatus};
use super::store::QueueStore;
use crate::error::ServerError;

/// One page of `/jobs`.
#[derive(Clone, Debug, PartialEq)]
pub struct JobPage {
    /// The list items.
    pub jobs: Vec<Json>,
    /// Jobs matching the filter in all.
    pub total: usize,
}

/// Queue rows and history rows in one shape.
const JOBS_VIEW: &str = "
    SELECT prompt_id AS id,
           CASE state WHEN 'running' THEN 'in_progress' ELSE 'pending' END AS status,
           number, create_time, start_time, NULL AS end_time, NULL AS outputs_count,
           NULL AS preview_output, workflow_id, NULL AS execution_error, seq, 0 AS finished
    FROM queue
    UNION ALL
    SELECT prompt_id, job_status, number, create_time, start_time, end_time, outputs_count,
           preview_output, workflow_id, execution_error, seq, 1
    FROM history";

const LIST_COLUMNS: &str = "id, status, number, create_time, start_time, end_time, \
                            outputs_count, preview_output, workflow_id, execution_error";

impl QueueStore {
    /// Jobs whose status is in `statuses`, by `create_time` (newest first unless
    /// `oldest_first`), `limit` from `offset`.
    pub fn jobs(
        &self,
        statuses: &[JobStatus],
        oldest_first: bool,
        limit: usize,
        offset: usize,
    ) -> Result<JobPage, ServerError> {
        if statuses.is_empty() {
            return Ok(JobPage {
                jobs: Vec::new(),
                total: 0,
            });
        }
        let placeholders = vec!["?"; statuses.len()].join(", ");
        let names: Vec<&str> = statuses.iter().map(|status| status.as_str()).collect();
        let total: i64 = self
            .connection()
            .query_row(
                &format!("SELECT COUNT(*) FROM ({JOBS_VIEW}) WHERE status IN ({placeholders})"),
                params_from_iter(names.iter()),
                |row| row.get(0),
            )
            .map_err(|e| self.db(e))?;
        let order = if oldest_first { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {LIST_COLUMNS} FROM ({JOBS_VIEW}) WHERE status IN ({placeholders})
             ORDER BY create_time {order}, finished {order}, seq {order} LIMIT {} OFFSET {}",
            i64::try_from(limit).unwrap_or(i64::MAX),
            i64::try_from(offset).unwrap_or(i64::MAX),
        );
        let mut statement = self.connection().prepare(&sql).map_err(|e| self.db(e))?;
        let jobs = statement
            .query_map(params_from_iter(names.iter()), list_item)
            .map_err(|e| self.db(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db(e))?;
        Ok(JobPage {
            jobs,
            total: usize::try_from(total).unwrap_or(0),
        })
    }

    /// One job in detail: the list item plus `outputs`, `workflow`, `execution_status` and
    /// `update_time`; `None` when no such job exists.
    pub fn job(&self, prompt_id: &str) -> Result<Option<Json>, ServerError> {
        let item = self
            .connection()
            .query_row(
                &format!("SELECT {LIST_COLUMNS} FROM ({JOBS_VIEW}) WHERE id = ?1"),
                [prompt_id],
                list_item,
            )
            .ok();
        let Some(Json::Object(mut detail)) = item else {
            return Ok(None);
        };
        let history = self.history_entry(prompt_id)?;
        let (outputs, execution_status, prompt, extra_data) = match history.get(prompt_id) {
            Some(entry) => (
                entry["outputs"].clone(),
                entry["status"].clone(),
                entry["prompt"][2].clone(),
                entry["prompt"][3].clone(),
            ),
            None => {
                let (running, pending) = self.queue()?;
                let queued = running
                    .into_iter()
                    .chain(pending)
                    .find(|item| item.prompt_id == prompt_id);
                match queued {
                    Some(item) => (json!({}), Json::Null, item.prompt, item.extra_data),
                    None => return Ok(None),
                }
            }
        };
        let update_time = detail
            .get("execution_end_time")
            .or_else(|| detail.get("execution_start_time"))
            .or_else(|| detail.get("create_time"))
            .cloned()
            .unwrap_or(Json::Null);
        detail.insert("outputs".to_owned(), outputs);
        detail.insert(
            "workflow".to_owned(),
            json!({"prompt": prompt, "extra_data": extra_data}),
        );
        detail.insert("execution_status".to_owned(), execution_status);
        detail.insert("update_time".to_owned(), update_time);
        Ok(Some(Json::Object(detail)))
    }
}

/// A `JobListItem`: absent values are left out rather than sent as `null`, since the
/// frontend's schema has them optional, not nullable.
fn list_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<Json> {
    let mut item = Map::new();
    item.insert("id".to_owned(), Json::String(row.get(0)?));
    item.insert("status".to_owned(), Json::String(row.get(1)?));
    item.insert("priority".to_owned(), number_json(row.get(2)?));
    item.insert("create_time".to_owned(), Json::from(row.get::<_, i64>(3)?));
    if let Some(start) = row.get::<_, Option<i64>>(4)? {
        item.insert("execution_start_time".to_owned(), Json::from(start));
    }
    if let Some(end) = row.get::<_, Option<i64>>(5)? {
        item.insert("execution_end_time".to_owned(), Json::from(end));
    }
    if let Some(count) = row.get::<_, Option<i64>>(6)? {
        item.insert("outputs_count".to_owned(), Json::from(count));
    }
    let embedded = |text: Option<String>| text.and_then(|text| serde_json::from_str(&text).ok());
    if let Some(preview) = embedded(row.get(7)?) {
        item.insert("preview_output".to_owned(), preview);
    }
    if let Some(workflow_id) = row.get::<_, Option<String>>(8)? {
        item.insert("workflow_id".to_owned(), Json::String(workflow_id));
    }
    if let Some(error) = embedded(row.get(9)?) {
        item.insert("execution_error".to_owned(), error);
    }
    Ok(Json::Object(item))
}
