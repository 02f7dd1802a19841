//! [`confine`]: the one function every route uses to turn a client-supplied relative path
//! (`filename`, `subfolder`, userdata paths) into a path that provably stays inside its base
//! directory, symlinks included.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Why a client-supplied path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// The path is absolute (`/etc/passwd`, `C:\x`, `\\server\share`).
    #[error("path '{path}' is absolute")]
    Absolute {
        /// The refused path.
        path: String,
    },
    /// The path has a `..` component.
    #[error("path '{path}' leaves its folder")]
    ParentComponent {
        /// The refused path.
        path: String,
    },
    /// The path holds something that means another place on another platform or to the OS:
    /// NUL, a backslash, a drive prefix (`C:`).
    #[error("path '{path}' contains a forbidden character")]
    ForbiddenCharacter {
        /// The refused path.
        path: String,
    },
    /// The path resolves (through a symlink) to a place outside its base directory.
    #[error("path '{path}' resolves outside its folder")]
    Escapes {
        /// The refused path.
        path: String,
    },
    /// The base directory itself cannot be resolved.
    #[error("base directory {base} is unavailable: {reason}")]
    BaseUnavailable {
        /// The base directory.
        base: PathBuf,
        /// The OS error.
        reason: String,
    },
}

/// `base` joined with the client-supplied `relative`, refused unless it stays inside `base`.
///
/// `relative` is taken after percent-decoding (the router and query extractors decode), so
/// `%2F..%2F` arrives here as `/../` and is refused like any other `..`. Refused outright:
/// absolute paths, `..` components, NUL, backslashes and drive prefixes (`C:`). Then the deepest
/// existing ancestor of the result is canonicalised (following symlinks) and must lie inside
/// the canonical `base`; so a symlink inside `base` that points elsewhere is refused too. An
/// empty `relative` (or only `.` components) is `base` itself.
///
/// The returned path is `canonical(base)` joined with the normal components of `relative`.
pub fn confine(base: &Path, relative: &str) -> Result<PathBuf, PathError> {
    let refused = |make: fn(String) -> PathError| make(relative.to_owned());
    if relative.contains(['\0', '\\']) || has_drive_prefix(relative) {
        return Err(refused(|path| PathError::ForbiddenCharacter { path }));
    }
    let mut parts = Vec::new();
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(refused(|path| PathError::ParentComponent { path }))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused(|path| PathError::Absolute { path }))
            }
        }
    }
    let canonical_base = base
        .canonicalize()
        .map_err(|error| PathError::BaseUnavailable {
            base: base.to_path_buf(),
            reason: error.to_string(),
        })?;
    let mut joined = canonical_base.clone();
    joined.extend(&parts);
    match deepest_existing(&joined) {
        Ok(existing) if existing.starts_with(&canonical_base) => Ok(joined),
        Ok(_) => Err(refused(|path| PathError::Escapes { path })),
        Err(_) => Err(refused(|path| PathError::Escapes { path })),
    }
}

/// `C:...`: a Windows drive, absolute or drive-relative there, and never a plain name.
fn has_drive_prefix(relative: &str) -> bool {
    let bytes = relative.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

/// The canonical form of the deepest ancestor of `path` (itself included) that exists.
fn deepest_existing(path: &Path) -> io::Result<PathBuf> {
    let mut current = path;
    loop {
        match current.canonicalize() {
            Ok(canonical) => return Ok(canonical),
            // A dangling symlink is a link that exists: refuse rather than guess.
            Err(_) if current.symlink_metadata().is_ok() => {
                return Err(io::Error::new(io::ErrorKind::NotFound, "dangling symlink"))
            }
            Err(error) => match current.parent() {
                Some(parent) => current = parent,
                None => return Err(error),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_paths_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        assert_eq!(confine(&base, "").unwrap(), base);
        assert_eq!(confine(&base, "./a/b.png").unwrap(), base.join("a/b.png"));
        assert_eq!(confine(&base, "a//b").unwrap(), base.join("a/b"));
        assert_eq!(
            confine(&base, "57:3 x.json").unwrap(),
            base.join("57:3 x.json")
        );
    }

    #[test]
    fn tricks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for bad in ["../x", "a/../../x", "a/.."] {
            assert!(
                matches!(confine(base, bad), Err(PathError::ParentComponent { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            confine(base, "/etc/passwd"),
            Err(PathError::Absolute { .. })
        ));
        for bad in ["..\\x", "C:x", "a\0b"] {
            assert!(
                matches!(
                    confine(base, bad),
                    Err(PathError::ForbiddenCharacter { .. })
                ),
                "{bad}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_of_the_base_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::os::unix::fs::symlink(outside.path(), base.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("nothing"), base.join("dangling")).unwrap();
        std::fs::create_dir(base.join("inner")).unwrap();
        std::os::unix::fs::symlink(base.join("inner"), base.join("inside")).unwrap();
        assert!(matches!(
            confine(base, "link/x.png"),
            Err(PathError::Escapes { .. })
        ));
        assert!(matches!(
            confine(base, "link"),
            Err(PathError::Escapes { .. })
        ));
        assert!(matches!(
            confine(base, "dangling"),
            Err(PathError::Escapes { .. })
        ));
        assert!(confine(base, "inside/new.png").is_ok());
    }
}
