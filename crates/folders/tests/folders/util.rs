//! A temp-dir tree builder for the tests.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// A temp directory that removes itself, with helpers to fill it.
pub(crate) struct Tree {
    dir: TempDir,
}

impl Tree {
    pub(crate) fn new() -> Tree {
        Tree {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Creates every file (with parents); a name ending in `/` creates a directory.
    pub(crate) fn files(&self, names: &[&str]) -> &Tree {
        for name in names {
            let path = self.path(name);
            if name.ends_with('/') {
                fs::create_dir_all(&path).unwrap();
            } else {
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, b"x").unwrap();
            }
        }
        self
    }

    pub(crate) fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap();
        path
    }

    #[cfg(unix)]
    pub(crate) fn symlink(&self, target: &str, link: &str) {
        let link = self.path(link);
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(self.path(target), link).unwrap();
    }
}

/// `a/b/c` with the OS separator, as listings return names.
pub(crate) fn os(name: &str) -> String {
    name.replace('/', std::path::MAIN_SEPARATOR_STR)
}
