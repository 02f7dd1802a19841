//! The durable queue: [`QueueItem`]s waiting or running, [`HistoryRecord`]s of finished
//! prompts, and the `/jobs` view over both, all in one SQLite file ([`QueueStore`]).

mod item;
mod jobs;
mod store;

pub(crate) use item::stored_extra_data;
pub use item::{number_json, HistoryRecord, JobStatus, QueueItem};
pub use jobs::JobPage;
pub use store::{QueueStore, DEFAULT_MAX_HISTORY};
