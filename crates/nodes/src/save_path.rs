//! `folder_paths.get_save_image_path`: the folder, file stem and first free counter for a
//! `filename_prefix` — `%width%`-style tokens, `/` subfolders that must stay inside the output
//! folder, and the scan for `<prefix>_<digits>_…` names already there.

use std::path::{Component, Path, PathBuf};

use crate::error::NodesError;

/// The local date and time `%year%`, `%month%`, ... expand to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    /// Year.
    pub year: i32,
    /// Month, 1..=12.
    pub month: u32,
    /// Day of the month.
    pub day: u32,
    /// Hour.
    pub hour: u32,
    /// Minute.
    pub minute: u32,
    /// Second.
    pub second: u32,
}

impl LocalTime {
    /// The current local time.
    pub fn now() -> Self {
        use chrono::{Datelike, Timelike};
        let now = chrono::Local::now();
        LocalTime {
            year: now.year(),
            month: now.month(),
            day: now.day(),
            hour: now.hour(),
            minute: now.minute(),
            second: now.second(),
        }
    }
}

/// Where a batch of images goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaveTarget {
    /// The folder the files go in (created if missing).
    pub folder: PathBuf,
    /// The file stem, before `_<counter>_.png` (may still hold `%batch_num%`).
    pub filename: String,
    /// The first counter to use.
    pub counter: u64,
    /// The subfolder relative to the output folder, as the UI reports it (`""` for none).
    pub subfolder: String,
}

impl SaveTarget {
    /// The file name of image `batch_number` of the batch, with `counter` already advanced
    /// `batch_number` times: `<filename>_<counter:05>_.png`.
    pub fn file_name(&self, batch_number: usize) -> String {
        let stem = self
            .filename
            .replace("%batch_num%", &batch_number.to_string());
        format!("{stem}_{:05}_.png", self.counter + batch_number as u64)
    }
}

/// Expands `%width%`, `%height%`, `%year%`, `%month%`, `%day%`, `%hour%`, `%minute%`,
/// `%second%` (zero-padded to two digits where ComfyUI pads).
pub fn expand_tokens(prefix: &str, width: usize, height: usize, now: &LocalTime) -> String {
    if !prefix.contains('%') {
        return prefix.to_owned();
    }
    prefix
        .replace("%width%", &width.to_string())
        .replace("%height%", &height.to_string())
        .replace("%year%", &now.year.to_string())
        .replace("%month%", &format!("{:02}", now.month))
        .replace("%day%", &format!("{:02}", now.day))
        .replace("%hour%", &format!("{:02}", now.hour))
        .replace("%minute%", &format!("{:02}", now.minute))
        .replace("%second%", &format!("{:02}", now.second))
}

/// POSIX `os.path.normpath` on text: collapses `//` and `.`, resolves `..` against earlier
/// parts, keeps leading `..` of relative paths, and gives `"."` for an empty result.
pub fn normpath(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// `os.path.dirname` / `os.path.basename` of a normalised path.
fn split_dir_base(path: &str) -> (String, String) {
    match path.rfind('/') {
        Some(at) => {
            let dir = &path[..at];
            let dir = if dir.is_empty() { "/" } else { dir };
            (dir.to_owned(), path[at + 1..].to_owned())
        }
        None => (String::new(), path.to_owned()),
    }
}

/// A path made absolute against the current directory and lexically normalised (no symlink
/// resolution), as `os.path.abspath`.
fn lexical_absolute(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// ComfyUI's counter for existing file `name`: `(digits after "<prefix>_" up to the next "_",
/// the first len(prefix)+1 characters)`; unparsable digits count as 0.
fn map_filename(name: &str, prefix_chars: usize) -> (i128, String) {
    let head: String = name.chars().take(prefix_chars + 1).collect();
    let rest: String = name.chars().skip(prefix_chars + 1).collect();
    let digits = rest.split('_').next().map_or(0, python_int);
    (digits, head)
}

/// Python's `int(text)` for what `map_filename` sees: optional whitespace and sign around ASCII
/// digits; anything else is 0 (ComfyUI catches the error).
fn python_int(text: &str) -> i128 {
    let trimmed = text.trim();
    let (negative, digits) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    let value = digits.parse::<i128>().unwrap_or(0);
    if negative {
        -value
    } else {
        value
    }
}

/// `get_save_image_path(filename_prefix, output_dir, width, height)`.
pub fn save_image_path(
    filename_prefix: &str,
    output_dir: &Path,
    width: usize,
    height: usize,
    now: &LocalTime,
) -> Result<SaveTarget, NodesError> {
    let prefix = expand_tokens(filename_prefix, width, height, now);
    let normalized = normpath(&prefix);
    let (subfolder, filename) = split_dir_base(&normalized);
    let output_dir = lexical_absolute(output_dir);
    let folder = lexical_absolute(&output_dir.join(&subfolder));
    if !folder.starts_with(&output_dir) {
        return Err(NodesError::OutsideOutputFolder { folder, output_dir });
    }
    let prefix_chars = filename.chars().count();
    let counter = match std::fs::read_dir(&folder) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().into_string().ok())
            .map(|name| map_filename(&name, prefix_chars))
            .filter(|(_, head)| head.strip_suffix('_').is_some_and(|stem| stem == filename))
            .max()
            .map_or(1, |(digits, _)| digits + 1),
        Err(_) => {
            std::fs::create_dir_all(&folder).map_err(|source| NodesError::Io {
                path: folder.clone(),
                source,
            })?;
            1
        }
    };
    Ok(SaveTarget {
        folder,
        filename,
        counter: u64::try_from(counter.max(0)).unwrap_or(0),
        subfolder,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: LocalTime = LocalTime {
        year: 2025,
        month: 3,
        day: 7,
        hour: 9,
        minute: 5,
        second: 1,
    };

    #[test]
    fn normpath_matches_posixpath() {
        for (input, want) in [
            ("ComfyUI", "ComfyUI"),
            ("a//b/./c", "a/b/c"),
            ("a/../b", "b"),
            ("../x", "../x"),
            ("a/../../x", "../x"),
            ("/a/../../x", "/x"),
            ("", "."),
            ("a/", "a"),
        ] {
            assert_eq!(normpath(input), want, "{input}");
        }
    }

    #[test]
    fn tokens_expand_with_padding() {
        assert_eq!(
            expand_tokens(
                "%year%-%month%-%day%_%hour%%minute%%second%_%width%x%height%",
                64,
                32,
                &NOON
            ),
            "2025-03-07_090501_64x32"
        );
        assert_eq!(expand_tokens("plain", 1, 1, &NOON), "plain");
    }

    #[test]
    fn counter_continues_after_the_highest_matching_file() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "ComfyUI_00003_.png",
            "ComfyUI_00010_.png",
            "ComfyUI_x_00099_.png",
            "ComfyUIa_00050_.png",
            "Other_00077_.png",
            "ComfyUI_garbage.png",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let target = save_image_path("ComfyUI", dir.path(), 8, 8, &NOON).unwrap();
        assert_eq!(target.counter, 11);
        assert_eq!(target.subfolder, "");
        assert_eq!(target.file_name(0), "ComfyUI_00011_.png");
        assert_eq!(target.file_name(2), "ComfyUI_00013_.png");
    }

    #[test]
    fn subfolders_are_created_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let target =
            save_image_path("renders/day1/cat_%batch_num%", dir.path(), 8, 8, &NOON).unwrap();
        assert_eq!(target.subfolder, "renders/day1");
        assert!(target.folder.is_dir());
        assert_eq!(target.counter, 1);
        assert_eq!(target.file_name(1), "cat_1_00002_.png");
    }

    #[test]
    fn escaping_the_output_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("output");
        for prefix in ["../evil", "/etc/evil", "a/../../evil"] {
            let err = save_image_path(prefix, &out, 8, 8, &NOON).unwrap_err();
            assert!(
                matches!(err, NodesError::OutsideOutputFolder { .. }),
                "{prefix}"
            );
        }
        assert!(!dir.path().join("evil").exists());
    }

    #[test]
    fn map_filename_reads_digits_like_python_int() {
        assert_eq!(
            map_filename("ComfyUI_00012_.png", 7),
            (12, "ComfyUI_".into())
        );
        assert_eq!(map_filename("ComfyUI_abc_.png", 7), (0, "ComfyUI_".into()));
        assert_eq!(map_filename("Co", 7), (0, "Co".into()));
    }
}
