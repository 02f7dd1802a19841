//! [`LogBuffer`]: the last log lines, kept for `/internal/logs` (the frontend's terminal
//! panel), filled by a writer the binary hands to its log subscriber.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value as Json};

/// ComfyUI keeps this many log entries.
const MAX_ENTRIES: usize = 300;

/// A shared ring of recent log lines.
#[derive(Clone, Default)]
pub struct LogBuffer {
    entries: Arc<Mutex<VecDeque<(String, String)>>>,
}

impl LogBuffer {
    /// An empty buffer.
    pub fn new() -> LogBuffer {
        LogBuffer::default()
    }

    /// Records one message (a formatted log line).
    pub fn push(&self, message: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() == MAX_ENTRIES {
            entries.pop_front();
        }
        entries.push_back((iso_timestamp(now_seconds()), message.to_owned()));
    }

    /// Every line joined, as `GET /internal/logs` answers.
    pub fn text(&self) -> String {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .map(|(_, message)| message.as_str())
            .collect()
    }

    /// `{"entries": [{"t", "m"}], "size": {"cols", "rows"}}` for `GET /internal/logs/raw`.
    pub fn raw_json(&self) -> Json {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entries: Vec<Json> = entries
            .iter()
            .map(|(time, message)| json!({"t": time, "m": message}))
            .collect();
        json!({"entries": entries, "size": {"cols": 80, "rows": 24}})
    }

    /// A writer that records each write and echoes it to standard error: give it to the log
    /// subscriber (`tracing_subscriber::fmt().with_writer(move || buffer.writer())`).
    pub fn writer(&self) -> LogWriter {
        LogWriter {
            buffer: self.clone(),
            echo_to_stdout: false,
        }
    }

    /// Like [`LogBuffer::writer`], echoing to standard output (`--log-stdout`).
    pub fn stdout_writer(&self) -> LogWriter {
        LogWriter {
            buffer: self.clone(),
            echo_to_stdout: true,
        }
    }
}

/// Records what is written into a [`LogBuffer`] and passes it on to the terminal.
pub struct LogWriter {
    buffer: LogBuffer,
    echo_to_stdout: bool,
}

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.push(&String::from_utf8_lossy(bytes));
        if self.echo_to_stdout {
            io::stdout().write_all(bytes)?;
        } else {
            io::stderr().write_all(bytes)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.echo_to_stdout {
            io::stdout().flush()
        } else {
            io::stderr().flush()
        }
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) for seconds since the epoch.
fn iso_timestamp(seconds: u64) -> String {
    let days = seconds / 86_400;
    let rest = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Howard Hinnant's days-to-civil for days since 1970-01-01 (non-negative).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_calendar_dates() {
        assert_eq!(iso_timestamp(0), "1970-01-01T00:00:00");
        assert_eq!(iso_timestamp(1_709_251_199), "2024-02-29T23:59:59");
    }

    #[test]
    fn the_buffer_keeps_the_last_entries() {
        let buffer = LogBuffer::new();
        for n in 0..(MAX_ENTRIES + 5) {
            buffer.push(&format!("{n}\n"));
        }
        let raw = buffer.raw_json();
        assert_eq!(raw["entries"].as_array().unwrap().len(), MAX_ENTRIES);
        assert_eq!(raw["entries"][0]["m"], "5\n");
        assert!(buffer.text().ends_with("304\n"));
    }
}
