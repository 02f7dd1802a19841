//! [`QueueStore`]: the durable queue and history in one SQLite file (WAL). The engine thread
//! holds the only writing connection; request handlers open read connections.
//!
//! Pending items run in ComfyUI's heap order, `(number, insertion)`. A crash leaves the
//! running item marked `running`; [`QueueStore::requeue_interrupted`] puts it back at the front
//! on the next start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use serde_json::{Map, Value as Json};

use super::item::{HistoryRecord, QueueItem};
use crate::error::ServerError;

/// ComfyUI keeps this many history entries and drops the oldest.
pub const DEFAULT_MAX_HISTORY: usize = 10_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id TEXT NOT NULL UNIQUE,
    number REAL NOT NULL,
    prompt TEXT NOT NULL,
    extra_data TEXT NOT NULL,
    outputs TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    workflow_id TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running')),
    start_time INTEGER
);
CREATE INDEX IF NOT EXISTS queue_order ON queue (state, number, seq);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id TEXT NOT NULL UNIQUE,
    number REAL NOT NULL,
    prompt TEXT NOT NULL,
    extra_data TEXT NOT NULL,
    outputs_to_execute TEXT NOT NULL,
    outputs TEXT NOT NULL,
    status TEXT NOT NULL,
    meta TEXT NOT NULL,
    job_status TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    start_time INTEGER,
    end_time INTEGER NOT NULL,
    outputs_count INTEGER NOT NULL,
    preview_output TEXT,
    workflow_id TEXT,
    execution_error TEXT
);
CREATE INDEX IF NOT EXISTS history_created ON history (create_time);
";

const ITEM_COLUMNS: &str = "number, prompt_id, prompt, extra_data, outputs, create_time";

/// The queue and history database.
pub struct QueueStore {
    connection: Connection,
    path: PathBuf,
}

impl QueueStore {
    /// Opens (creating if needed) the database at `path` for writing: WAL journal, schema.
    pub fn open(path: &Path) -> Result<QueueStore, ServerError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(ServerError::io(parent))?;
        }
        let store = QueueStore::connect(path, OpenFlags::default())?;
        store
            .connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
            )
            .map_err(|e| store.db_error(e))?;
        store
            .connection
            .execute_batch(SCHEMA)
            .map_err(|e| store.db_error(e))?;
        Ok(store)
    }

    /// Opens an existing database read-only (request handlers).
    pub fn open_reader(path: &Path) -> Result<QueueStore, ServerError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        QueueStore::connect(path, flags)
    }

    fn connect(path: &Path, flags: OpenFlags) -> Result<QueueStore, ServerError> {
        let connection =
            Connection::open_with_flags(path, flags).map_err(|source| ServerError::Database {
                path: path.to_path_buf(),
                source,
            })?;
        let store = QueueStore {
            connection,
            path: path.to_path_buf(),
        };
        store
            .connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(|e| store.db_error(e))?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_error(&self, source: rusqlite::Error) -> ServerError {
        ServerError::Database {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, prompt_id: &str, reason: impl ToString) -> ServerError {
        ServerError::CorruptRow {
            path: self.path.clone(),
            prompt_id: prompt_id.to_owned(),
            reason: reason.to_string(),
        }
    }

    // ----- writes (engine thread) -----

    /// The next value of ComfyUI's queue counter (persisted, so numbers keep growing across
    /// restarts).
    pub fn next_number(&mut self) -> Result<i64, ServerError> {
        let value: i64 = self
            .connection
            .query_row(
                "INSERT INTO counters (name, value) VALUES ('number', 1)
                 ON CONFLICT (name) DO UPDATE SET value = value + 1
                 RETURNING value - 1",
                [],
                |row| row.get(0),
            )
            .map_err(|e| self.db_error(e))?;
        Ok(value)
    }

    /// Adds a pending item. Fails with [`ServerError::DuplicatePrompt`] when the prompt id is
    /// already queued or running.
    pub fn insert_pending(&mut self, item: &QueueItem) -> Result<(), ServerError> {
        let result = self.connection.execute(
            "INSERT INTO queue (number, prompt_id, prompt, extra_data, outputs, create_time,
                                workflow_id, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending')",
            params![
                item.number,
                item.prompt_id,
                item.prompt.to_string(),
                item.extra_data.to_string(),
                Json::from(item.outputs.clone()).to_string(),
                to_sql_int(item.create_time),
                item.workflow_id(),
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ServerError::DuplicatePrompt {
                    prompt_id: item.prompt_id.clone(),
                })
            }
            Err(error) => Err(self.db_error(error)),
        }
    }

    /// Puts items left `running` by a crash back at the front of the queue; returns how many.
    pub fn requeue_interrupted(&mut self) -> Result<usize, ServerError> {
        let running: Vec<String> = {
            let mut statement = self
                .connection
                .prepare("SELECT prompt_id FROM queue WHERE state = 'running' ORDER BY seq")
                .map_err(|e| self.db_error(e))?;
            let rows = statement
                .query_map([], |row| row.get(0))
                .map_err(|e| self.db_error(e))?;
            rows.collect::<Result<_, _>>()
                .map_err(|e| self.db_error(e))?
        };
        for prompt_id in &running {
            // Ahead of everything pending, `front` items included.
            let lowest: Option<f64> = self
                .connection
                .query_row(
                    "SELECT MIN(number) FROM queue WHERE state = 'pending'",
                    [],
                    |row| row.get(0),
                )
                .map_err(|e| self.db_error(e))?;
            let number = lowest.unwrap_or(0.0).min(0.0) - 1.0;
            self.connection
                .execute(
                    "UPDATE queue SET state = 'pending', number = ?1, start_time = NULL
                     WHERE prompt_id = ?2",
                    params![number, prompt_id],
                )
                .map_err(|e| self.db_error(e))?;
        }
        Ok(running.len())
    }

    /// Marks the first pending item (lowest number, then earliest) running and returns it.
    pub fn start_next(&mut self, now_ms: u64) -> Result<Option<QueueItem>, ServerError> {
        let next = self
            .connection
            .query_row(
                &format!(
                    "SELECT {ITEM_COLUMNS} FROM queue WHERE state = 'pending'
                     ORDER BY number, seq LIMIT 1"
                ),
                [],
                raw_item,
            )
            .optional()
            .map_err(|e| self.db_error(e))?;
        let Some(raw) = next else {
            return Ok(None);
        };
        let item = self.parse_item(raw)?;
        self.connection
            .execute(
                "UPDATE queue SET state = 'running', start_time = ?1 WHERE prompt_id = ?2",
                params![to_sql_int(now_ms), item.prompt_id],
            )
            .map_err(|e| self.db_error(e))?;
        Ok(Some(item))
    }

    /// Moves a finished item from the queue into history, dropping the oldest entries beyond
    /// `max_history`, in one transaction.
    pub fn finish(
        &mut self,
        record: &HistoryRecord,
        max_history: usize,
    ) -> Result<(), ServerError> {
        let path = self.path.clone();
        let db_error = |source| ServerError::Database {
            path: path.clone(),
            source,
        };
        let transaction = self.connection.transaction().map_err(db_error)?;
        let item = &record.item;
        transaction
            .execute(
                "DELETE FROM queue WHERE prompt_id = ?1",
                params![item.prompt_id],
            )
            .map_err(db_error)?;
        transaction
            .execute(
                "INSERT OR REPLACE INTO history (prompt_id, number, prompt, extra_data,
                     outputs_to_execute, outputs, status, meta, job_status, create_time,
                     start_time, end_time, outputs_count, preview_output, workflow_id,
                     execution_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                params![
                    item.prompt_id,
                    item.number,
                    item.prompt.to_string(),
                    item.extra_data.to_string(),
                    Json::from(item.outputs.clone()).to_string(),
                    record.outputs.to_string(),
                    record.status_json().to_string(),
                    record.meta.to_string(),
                    record.status.as_str(),
                    to_sql_int(item.create_time),
                    record.start_time.map(to_sql_int),
                    to_sql_int(record.end_time),
                    i64::try_from(record.outputs_count()).unwrap_or(i64::MAX),
                    record.preview_output().map(|preview| preview.to_string()),
                    item.workflow_id(),
                    record.execution_error.as_ref().map(Json::to_string),
                ],
            )
            .map_err(db_error)?;
        let keep = i64::try_from(max_history).unwrap_or(i64::MAX);
        transaction
            .execute(
                "DELETE FROM history WHERE seq NOT IN
                     (SELECT seq FROM history ORDER BY seq DESC LIMIT ?1)",
                params![keep],
            )
            .map_err(db_error)?;
        transaction.commit().map_err(db_error)
    }

    /// Deletes pending items by id (running ones are left alone); returns how many.
    pub fn delete_pending(&mut self, prompt_ids: &[String]) -> Result<usize, ServerError> {
        let mut deleted = 0;
        for prompt_id in prompt_ids {
            deleted += self
                .connection
                .execute(
                    "DELETE FROM queue WHERE prompt_id = ?1 AND state = 'pending'",
                    params![prompt_id],
                )
                .map_err(|e| self.db_error(e))?;
        }
        Ok(deleted)
    }

    /// Deletes every pending item; returns how many.
    pub fn clear_pending(&mut self) -> Result<usize, ServerError> {
        self.connection
            .execute("DELETE FROM queue WHERE state = 'pending'", [])
            .map_err(|e| self.db_error(e))
    }

    /// Deletes history entries by id.
    pub fn delete_history(&mut self, prompt_ids: &[String]) -> Result<usize, ServerError> {
        let mut deleted = 0;
        for prompt_id in prompt_ids {
            deleted += self
                .connection
                .execute(
                    "DELETE FROM history WHERE prompt_id = ?1",
                    params![prompt_id],
                )
                .map_err(|e| self.db_error(e))?;
        }
        Ok(deleted)
    }

    /// Deletes every history entry.
    pub fn clear_history(&mut self) -> Result<usize, ServerError> {
        self.connection
            .execute("DELETE FROM history", [])
            .map_err(|e| self.db_error(e))
    }

    // ----- reads -----

    /// Pending plus running items (`queue_remaining`).
    pub fn remaining(&self) -> Result<usize, ServerError> {
        let count: i64 = self
            .connection
            .query_row("SELECT COUNT(*) FROM queue", [], |row| row.get(0))
            .map_err(|e| self.db_error(e))?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// `(running, pending)` items, pending in the order they will run.
    pub fn queue(&self) -> Result<(Vec<QueueItem>, Vec<QueueItem>), ServerError> {
        let running = self.items("state = 'running' ORDER BY seq")?;
        let pending = self.items("state = 'pending' ORDER BY number, seq")?;
        Ok((running, pending))
    }

    fn items(&self, condition: &str) -> Result<Vec<QueueItem>, ServerError> {
        let mut statement = self
            .connection
            .prepare(&format!(
                "SELECT {ITEM_COLUMNS} FROM queue WHERE {condition}"
            ))
            .map_err(|e| self.db_error(e))?;
        let raws: Vec<RawItem> = statement
            .query_map([], raw_item)
            .map_err(|e| self.db_error(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.db_error(e))?;
        raws.into_iter().map(|raw| self.parse_item(raw)).collect()
    }

    /// History entries `{prompt_id: entry}` in insertion order, as ComfyUI's
    /// `get_history(max_items, offset)`: with `max_items` and no (or a negative) offset, the
    /// last `max_items`.
    pub fn history(
        &self,
        max_items: Option<usize>,
        offset: Option<i64>,
    ) -> Result<Map<String, Json>, ServerError> {
        let total = self.history_len()?;
        let offset = match (offset, max_items) {
            (Some(offset), _) if offset >= 0 => usize::try_from(offset).unwrap_or(usize::MAX),
            (_, Some(max_items)) => total.saturating_sub(max_items),
            _ => 0,
        };
        let limit = max_items.map_or(-1, |max| i64::try_from(max).unwrap_or(i64::MAX));
        self.history_rows(
            "1 = 1 ORDER BY seq LIMIT ?1 OFFSET ?2",
            params![limit, i64::try_from(offset).unwrap_or(i64::MAX)],
        )
    }

    /// `{prompt_id: entry}` for one prompt, or an empty map.
    pub fn history_entry(&self, prompt_id: &str) -> Result<Map<String, Json>, ServerError> {
        self.history_rows("prompt_id = ?1", params![prompt_id])
    }

    /// How many history entries there are.
    pub fn history_len(&self) -> Result<usize, ServerError> {
        let count: i64 = self
            .connection
            .query_row("SELECT COUNT(*) FROM history", [], |row| row.get(0))
            .map_err(|e| self.db_error(e))?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    fn history_rows(
        &self,
        condition: &str,
        parameters: &[&dyn rusqlite::ToSql],
    ) -> Result<Map<String, Json>, ServerError> {
        let mut statement = self
            .connection
            .prepare(&format!(
                "SELECT number, prompt_id, prompt, extra_data, outputs_to_execute, create_time,
                        outputs, status, meta
                 FROM history WHERE {condition}"
            ))
            .map_err(|e| self.db_error(e))?;
        let rows: Vec<(RawItem, [String; 3])> = statement
            .query_map(parameters, |row| {
                Ok((raw_item(row)?, [row.get(6)?, row.get(7)?, row.get(8)?]))
            })
            .map_err(|e| self.db_error(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.db_error(e))?;
        let mut entries = Map::new();
        for (raw, [outputs, status, meta]) in rows {
            let item = self.parse_item(raw)?;
            let parse = |text: &str| {
                serde_json::from_str::<Json>(text).map_err(|e| self.corrupt(&item.prompt_id, e))
            };
            let entry = serde_json::json!({
                "prompt": item.to_json(),
                "outputs": parse(&outputs)?,
                "status": parse(&status)?,
                "meta": parse(&meta)?,
            });
            entries.insert(item.prompt_id.clone(), entry);
        }
        Ok(entries)
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.connection
    }

    pub(crate) fn parse_item(&self, raw: RawItem) -> Result<QueueItem, ServerError> {
        let parse = |text: &str| {
            serde_json::from_str::<Json>(text).map_err(|e| self.corrupt(&raw.prompt_id, e))
        };
        let outputs = match parse(&raw.outputs)? {
            Json::Array(ids) => ids
                .into_iter()
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect(),
            _ => return Err(self.corrupt(&raw.prompt_id, "outputs is not a list")),
        };
        Ok(QueueItem {
            number: raw.number,
            prompt: parse(&raw.prompt)?,
            extra_data: parse(&raw.extra_data)?,
            outputs,
            create_time: u64::try_from(raw.create_time).unwrap_or(0),
            prompt_id: raw.prompt_id,
        })
    }

    pub(crate) fn db(&self, source: rusqlite::Error) -> ServerError {
        self.db_error(source)
    }
}

/// A queue row before its JSON columns are parsed.
pub(crate) struct RawItem {
    number: f64,
    prompt_id: String,
    prompt: String,
    extra_data: String,
    outputs: String,
    create_time: i64,
}

/// Reads the [`ITEM_COLUMNS`] (in that order) of a row.
fn raw_item(row: &Row<'_>) -> rusqlite::Result<RawItem> {
    Ok(RawItem {
        number: row.get(0)?,
        prompt_id: row.get(1)?,
        prompt: row.get(2)?,
        extra_data: row.get(3)?,
        outputs: row.get(4)?,
        create_time: row.get(5)?,
    })
}

/// Milliseconds as SQLite's signed integer (saturating; epochs fit for 292 million years).
pub(crate) fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::JobStatus;
    use serde_json::json;

    fn item(prompt_id: &str, number: f64) -> QueueItem {
        QueueItem {
            number,
            prompt_id: prompt_id.to_owned(),
            prompt: json!({"1": {"class_type": "X", "inputs": {}}}),
            extra_data: json!({"create_time": 5}),
            outputs: vec!["1".to_owned()],
            create_time: 5,
        }
    }

    fn finished(item: QueueItem) -> HistoryRecord {
        HistoryRecord {
            item,
            outputs: json!({}),
            meta: json!({}),
            messages: vec![],
            status: JobStatus::Completed,
            start_time: Some(6),
            end_time: 7,
            execution_error: None,
        }
    }

    #[test]
    fn pending_items_run_by_number_then_insertion() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = QueueStore::open(&dir.path().join("q.db")).unwrap();
        for (id, number) in [("a", 2.0), ("b", 1.0), ("c", 2.0), ("d", -3.0)] {
            store.insert_pending(&item(id, number)).unwrap();
        }
        let order: Vec<String> = std::iter::from_fn(|| {
            let next = store.start_next(1).unwrap()?;
            store.finish(&finished(next.clone()), 10).unwrap();
            Some(next.prompt_id)
        })
        .collect();
        assert_eq!(order, ["d", "b", "a", "c"]);
        assert_eq!(store.history_len().unwrap(), 4);
    }

    #[test]
    fn duplicates_are_refused_and_history_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = QueueStore::open(&dir.path().join("q.db")).unwrap();
        store.insert_pending(&item("a", 0.0)).unwrap();
        assert!(matches!(
            store.insert_pending(&item("a", 1.0)),
            Err(ServerError::DuplicatePrompt { .. })
        ));
        for n in 0..5 {
            let id = format!("h{n}");
            store
                .insert_pending(&item(&id, f64::from(n) + 1.0))
                .unwrap();
        }
        while let Some(next) = store.start_next(1).unwrap() {
            store.finish(&finished(next), 3).unwrap();
        }
        let history = store.history(None, None).unwrap();
        assert_eq!(history.keys().collect::<Vec<_>>(), ["h2", "h3", "h4"]);
        let last_two = store.history(Some(2), None).unwrap();
        assert_eq!(last_two.keys().collect::<Vec<_>>(), ["h3", "h4"]);
        let from_one = store.history(Some(1), Some(1)).unwrap();
        assert_eq!(from_one.keys().collect::<Vec<_>>(), ["h3"]);
        assert_eq!(history["h2"]["prompt"][0], json!(3));
        assert_eq!(history["h2"]["status"]["status_str"], "success");
    }

    #[test]
    fn a_crashed_running_item_goes_back_to_the_front() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        {
            let mut store = QueueStore::open(&path).unwrap();
            store.insert_pending(&item("first", 0.0)).unwrap();
            store.insert_pending(&item("second", 1.0)).unwrap();
            store.insert_pending(&item("front", -1.0)).unwrap();
            assert_eq!(store.start_next(1).unwrap().unwrap().prompt_id, "front");
        }
        let mut store = QueueStore::open(&path).unwrap();
        assert_eq!(store.requeue_interrupted().unwrap(), 1);
        let (running, pending) = store.queue().unwrap();
        assert!(running.is_empty());
        let ids: Vec<_> = pending.iter().map(|item| item.prompt_id.as_str()).collect();
        assert_eq!(ids, ["front", "first", "second"]);
        assert!(pending[0].number < 0.0);
        let reader = QueueStore::open_reader(&path).unwrap();
        assert_eq!(reader.remaining().unwrap(), 3);
    }
}
