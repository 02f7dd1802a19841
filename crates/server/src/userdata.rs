//! [`UserStore`]: the single user's files under `<user dir>/default/` — settings
//! (`comfy.settings.json`), saved workflows and other userdata — plus `users.json`. Every path
//! goes through [`confine`]. Blocking IO; handlers call it from the blocking pool.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::UNIX_EPOCH;

use serde_json::{json, Map, Value as Json};

use crate::error::ServerError;
use crate::security::{confine, PathError};

const SETTINGS_FILE: &str = "comfy.settings.json";
const USERS_FILE: &str = "users.json";

/// One user's storage.
pub struct UserStore {
    /// `<user dir>/default`.
    root: PathBuf,
    /// Serialises read-modify-write of the settings and users files.
    write_lock: Mutex<()>,
}

impl UserStore {
    /// Storage under `root` (created on first use).
    pub fn new(root: PathBuf) -> UserStore {
        UserStore {
            root,
            write_lock: Mutex::new(()),
        }
    }

    fn ensure_root(&self) -> Result<&Path, ServerError> {
        fs::create_dir_all(&self.root).map_err(ServerError::io(&self.root))?;
        Ok(&self.root)
    }

    /// `relative` under the user's root, confined.
    pub(crate) fn path(&self, field: &'static str, relative: &str) -> Result<PathBuf, ServerError> {
        let root = self.ensure_root()?;
        confine(root, relative).map_err(|source| ServerError::Path { field, source })
    }

    // ----- settings -----

    /// Every setting (`{}` for a new user).
    pub fn settings(&self) -> Result<Map<String, Json>, ServerError> {
        let path = self.path("settings", SETTINGS_FILE)?;
        read_json_object(&path)
    }

    /// One setting, `null` when unset.
    pub fn setting(&self, id: &str) -> Result<Json, ServerError> {
        Ok(self.settings()?.remove(id).unwrap_or(Json::Null))
    }

    /// Merges `values` into the settings.
    pub fn merge_settings(&self, values: Map<String, Json>) -> Result<(), ServerError> {
        self.update_settings(|settings| settings.extend(values))
    }

    /// Sets one setting; `null` removes it (the frontend unsets keys with an empty body).
    pub fn set_setting(&self, id: &str, value: Json) -> Result<(), ServerError> {
        self.update_settings(|settings| {
            if value.is_null() {
                settings.remove(id);
            } else {
                settings.insert(id.to_owned(), value);
            }
        })
    }

    fn update_settings(
        &self,
        change: impl FnOnce(&mut Map<String, Json>),
    ) -> Result<(), ServerError> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let path = self.path("settings", SETTINGS_FILE)?;
        let mut settings = read_json_object(&path)?;
        change(&mut settings);
        write_atomically(&path, &json_bytes(&Json::Object(settings)))
    }

    // ----- users -----

    /// `GET /users` for a single-user server.
    pub fn users_json(&self) -> Json {
        json!({"storage": "server", "migrated": true})
    }

    /// `POST /users`: records `username`, returns its new id; a taken name is refused.
    pub fn add_user(&self, username: &str) -> Result<String, ServerError> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let users_dir = self
            .root
            .parent()
            .ok_or_else(|| ServerError::Config {
                reason: "the user directory has no parent".to_owned(),
            })?
            .to_path_buf();
        fs::create_dir_all(&users_dir).map_err(ServerError::io(&users_dir))?;
        let path = users_dir.join(USERS_FILE);
        let mut users = read_json_object(&path)?;
        if users.values().any(|name| name.as_str() == Some(username)) {
            return Err(ServerError::AlreadyExists {
                what: "username".to_owned(),
            });
        }
        let cleaned: String = username
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let id = format!("{cleaned}_{}", uuid::Uuid::new_v4());
        users.insert(id.clone(), Json::String(username.to_owned()));
        write_atomically(&path, &json_bytes(&Json::Object(users)))?;
        Ok(id)
    }

    // ----- userdata files -----

    /// `GET /userdata?dir=`: files under `dir` (hidden ones skipped), relative to it with `/`,
    /// sorted; as `{"path","size","modified"}` with `full_info`, or `[path, ...parts]` with
    /// `split`. `NotFound` when `dir` does not exist.
    pub fn list(
        &self,
        dir: &str,
        recurse: bool,
        full_info: bool,
        split: bool,
    ) -> Result<Json, ServerError> {
        let base = self.path("dir", dir)?;
        if !base.is_dir() {
            return Err(ServerError::not_found(format!("userdata folder '{dir}'")));
        }
        let mut files = Vec::new();
        walk(&base, "", recurse, &mut files)?;
        files.sort();
        let entries = files
            .into_iter()
            .map(|relative| {
                if full_info {
                    file_info(&base.join(&relative), &relative)
                } else if split {
                    let mut parts = vec![Json::String(relative.clone())];
                    parts.extend(
                        relative
                            .split('/')
                            .map(|part| Json::String(part.to_owned())),
                    );
                    Json::Array(parts)
                } else {
                    Json::String(relative)
                }
            })
            .collect();
        Ok(Json::Array(entries))
    }

    /// `GET /v2/userdata?path=`: the entries of one folder, folders first, then by name.
    pub fn list_v2(&self, relative: &str) -> Result<Json, ServerError> {
        let base = self.path("path", relative)?;
        if !base.is_dir() {
            return Err(ServerError::not_found(format!(
                "userdata folder '{relative}'"
            )));
        }
        let prefix = relative.trim_matches('/');
        let mut entries = Vec::new();
        for entry in fs::read_dir(&base).map_err(ServerError::io(&base))? {
            let entry = entry.map_err(ServerError::io(&base))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().map_err(ServerError::io(entry.path()))?;
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            if kind.is_dir() {
                entries.push((0, json!({"name": name, "path": path, "type": "directory"})));
            } else if kind.is_file() {
                let mut info = file_info(&entry.path(), &path);
                if let Json::Object(map) = &mut info {
                    map.insert("name".to_owned(), Json::String(name));
                    map.insert("type".to_owned(), Json::String("file".to_owned()));
                }
                entries.push((1, info));
            }
        }
        entries.sort_by(|(kind_a, a), (kind_b, b)| {
            kind_a
                .cmp(kind_b)
                .then_with(|| a["name"].as_str().cmp(&b["name"].as_str()))
        });
        Ok(Json::Array(
            entries.into_iter().map(|(_, entry)| entry).collect(),
        ))
    }

    /// The bytes of a userdata file.
    pub fn read(&self, relative: &str) -> Result<(PathBuf, Vec<u8>), ServerError> {
        let path = self.path("file", relative)?;
        if !path.is_file() {
            return Err(ServerError::not_found(format!(
                "userdata file '{relative}'"
            )));
        }
        let bytes = fs::read(&path).map_err(ServerError::io(&path))?;
        Ok((path, bytes))
    }

    /// Writes a userdata file (creating folders); `AlreadyExists` when it exists and
    /// `overwrite` is off. Returns the path relative to the user root, or its info.
    pub fn write(
        &self,
        relative: &str,
        bytes: &[u8],
        overwrite: bool,
        full_info: bool,
    ) -> Result<Json, ServerError> {
        let path = self.writable_file("file", relative)?;
        if path.exists() && !overwrite {
            return Err(ServerError::AlreadyExists {
                what: format!("userdata file '{relative}'"),
            });
        }
        create_parent(&path)?;
        write_atomically(&path, bytes)?;
        Ok(self.describe(&path, full_info))
    }

    /// Deletes a userdata file.
    pub fn delete(&self, relative: &str) -> Result<(), ServerError> {
        let path = self.path("file", relative)?;
        if !path.is_file() {
            return Err(ServerError::not_found(format!(
                "userdata file '{relative}'"
            )));
        }
        fs::remove_file(&path).map_err(ServerError::io(&path))
    }

    /// Renames a userdata file (creating the destination's folders).
    pub fn rename(
        &self,
        source: &str,
        destination: &str,
        overwrite: bool,
        full_info: bool,
    ) -> Result<Json, ServerError> {
        let from = self.path("file", source)?;
        if !from.is_file() {
            return Err(ServerError::not_found(format!("userdata file '{source}'")));
        }
        let to = self.writable_file("dest", destination)?;
        if to.exists() && !overwrite {
            return Err(ServerError::AlreadyExists {
                what: format!("userdata file '{destination}'"),
            });
        }
        create_parent(&to)?;
        fs::rename(&from, &to).map_err(ServerError::io(&to))?;
        Ok(self.describe(&to, full_info))
    }

    /// A file path to write: confined, not the root itself, not a symlink (writing through
    /// one would land wherever it points).
    fn writable_file(&self, field: &'static str, relative: &str) -> Result<PathBuf, ServerError> {
        let path = self.path(field, relative)?;
        if path == self.root || relative.ends_with('/') {
            return Err(ServerError::bad_request(format!(
                "{field} must name a file"
            )));
        }
        if path
            .symlink_metadata()
            .is_ok_and(|meta| meta.file_type().is_symlink())
        {
            return Err(ServerError::Path {
                field,
                source: PathError::Escapes {
                    path: relative.to_owned(),
                },
            });
        }
        Ok(path)
    }

    /// The path relative to the user root (a JSON string), or its file info.
    fn describe(&self, path: &Path, full_info: bool) -> Json {
        let root = self
            .root
            .canonicalize()
            .unwrap_or_else(|_| self.root.clone());
        let relative = path
            .strip_prefix(&root)
            .map(|relative| {
                relative
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_default();
        if full_info {
            file_info(path, &relative)
        } else {
            Json::String(relative)
        }
    }
}

/// `{"path", "size", "modified"}` with `modified` in milliseconds since the epoch.
fn file_info(path: &Path, relative: &str) -> Json {
    let metadata = fs::metadata(path).ok();
    let size = metadata.as_ref().map_or(0, fs::Metadata::len);
    let modified = metadata
        .and_then(|meta| meta.modified().ok())
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        });
    json!({"path": relative, "size": size, "modified": modified})
}

/// Regular files under `dir`, skipping hidden entries and symlinks.
fn walk(dir: &Path, prefix: &str, recurse: bool, out: &mut Vec<String>) -> Result<(), ServerError> {
    for entry in fs::read_dir(dir).map_err(ServerError::io(dir))? {
        let entry = entry.map_err(ServerError::io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let kind = entry.file_type().map_err(ServerError::io(entry.path()))?;
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if kind.is_file() {
            out.push(relative);
        } else if kind.is_dir() && recurse {
            walk(&entry.path(), &relative, recurse, out)?;
        }
    }
    Ok(())
}

fn read_json_object(path: &Path) -> Result<Map<String, Json>, ServerError> {
    match fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(Json::Object(map)) => Ok(map),
            _ => {
                tracing::warn!(path = %path.display(), "not a JSON object; starting empty");
                Ok(Map::new())
            }
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(error) => Err(ServerError::Io {
            path: path.to_path_buf(),
            source: error,
        }),
    }
}

fn json_bytes(value: &Json) -> Vec<u8> {
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

fn create_parent(path: &Path) -> Result<(), ServerError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(ServerError::io(parent))?;
    }
    Ok(())
}

/// Writes through a temporary sibling and a rename, so readers never see half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.{}.tmp", uuid::Uuid::new_v4()));
    fs::write(&temporary, bytes).map_err(ServerError::io(&temporary))?;
    fs::rename(&temporary, path).map_err(|source| {
        let _ = fs::remove_file(&temporary);
        ServerError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_merge_and_unset() {
        let dir = tempfile::tempdir().unwrap();
        let store = UserStore::new(dir.path().join("default"));
        assert!(store.settings().unwrap().is_empty());
        store
            .merge_settings(json!({"a": 1, "b": true}).as_object().unwrap().clone())
            .unwrap();
        store.set_setting("c", json!("x")).unwrap();
        store.set_setting("a", Json::Null).unwrap();
        assert_eq!(
            Json::Object(store.settings().unwrap()),
            json!({"b": true, "c": "x"})
        );
        assert_eq!(store.setting("missing").unwrap(), Json::Null);
    }

    #[test]
    fn files_are_written_listed_moved_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = UserStore::new(dir.path().join("default"));
        assert!(matches!(
            store.list("workflows", true, false, false),
            Err(ServerError::NotFound { .. })
        ));
        assert_eq!(
            store
                .write("workflows/a.json", b"{}", false, false)
                .unwrap(),
            json!("workflows/a.json")
        );
        store
            .write("workflows/sub/b.json", b"[]", true, false)
            .unwrap();
        store
            .write("workflows/.index.json", b"{}", true, false)
            .unwrap();
        assert!(matches!(
            store.write("workflows/a.json", b"{}", false, false),
            Err(ServerError::AlreadyExists { .. })
        ));
        assert_eq!(
            store.list("workflows", true, false, false).unwrap(),
            json!(["a.json", "sub/b.json"])
        );
        assert_eq!(
            store.list("workflows", false, false, true).unwrap(),
            json!([["a.json", "a.json"]])
        );
        let info = store.list("workflows", true, true, false).unwrap();
        assert_eq!(info[0]["size"], 2);
        let moved = store
            .rename("workflows/a.json", "workflows/c.json", false, true)
            .unwrap();
        assert_eq!(moved["path"], "workflows/c.json");
        let listing = store.list_v2("workflows").unwrap();
        assert_eq!(listing[0]["type"], "directory");
        assert_eq!(listing[1]["name"], ".index.json");
        store.delete("workflows/c.json").unwrap();
        assert!(matches!(
            store.read("workflows/c.json"),
            Err(ServerError::NotFound { .. })
        ));
    }
}
