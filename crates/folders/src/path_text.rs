//! Path spelling as Python's `os.path` does it: `abspath`/`normpath` (purely lexical),
//! `expanduser` and `expandvars`.

use std::env;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// `path` made absolute against `current_dir` and normalised lexically, like `os.path.abspath`:
/// `.` dropped, `..` removes the previous component, symlinks are not resolved.
pub(crate) fn absolute(path: &Path, current_dir: &Path) -> PathBuf {
    if path.is_absolute() {
        normalize(path)
    } else {
        normalize(&current_dir.join(path))
    }
}

/// Lexical normalisation, like `os.path.normpath`. `..` never climbs above the root.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    let mut depth_below_anchor: usize = 0;
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => normalized.push(component.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth_below_anchor > 0 {
                    normalized.pop();
                    depth_below_anchor -= 1;
                } else if !path.has_root() {
                    // A relative path keeps leading `..`, as normpath does.
                    normalized.push("..");
                }
            }
            Component::Normal(name) => {
                normalized.push(name);
                depth_below_anchor += 1;
            }
        }
    }
    if normalized.as_os_str().is_empty() {
        normalized.push(".");
    }
    normalized
}

/// `~` and `~/rest` replaced by the home directory, like `os.path.expanduser`. `~user` forms
/// and an unknown home are left as written.
pub(crate) fn expand_user(text: &str) -> String {
    let Some(rest) = text.strip_prefix('~') else {
        return text.to_owned();
    };
    let starts_with_separator =
        rest.is_empty() || rest.starts_with('/') || rest.starts_with(std::path::MAIN_SEPARATOR);
    if !starts_with_separator {
        return text.to_owned();
    }
    match home_directory().and_then(|home| home.into_string().ok()) {
        Some(home) => {
            let expanded = format!(
                "{}{rest}",
                home.trim_end_matches(['/', std::path::MAIN_SEPARATOR])
            );
            // A home of `/` trims to nothing; Python then answers the root itself.
            if expanded.is_empty() {
                std::path::MAIN_SEPARATOR.to_string()
            } else {
                expanded
            }
        }
        None => text.to_owned(),
    }
}

fn home_directory() -> Option<OsString> {
    let variable = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
    env::var_os(variable).filter(|home| !home.is_empty())
}

/// `$NAME` and `${NAME}` replaced by environment variables, like POSIX `os.path.expandvars`:
/// unset variables are left as written.
pub(crate) fn expand_vars(text: &str) -> String {
    let mut expanded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        expanded.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(close) => (&braced[..close], close + 2),
                None => ("", 0),
            }
        } else {
            let length = after
                .find(|character: char| !(character.is_alphanumeric() || character == '_'))
                .unwrap_or(after.len());
            (&after[..length], length)
        };
        match env::var(name).ok().filter(|_| !name.is_empty()) {
            Some(value) => expanded.push_str(&value),
            None => expanded.push_str(&rest[dollar..dollar + 1 + consumed]),
        }
        rest = &rest[dollar + 1 + consumed..];
    }
    expanded.push_str(rest);
    expanded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b/../c/")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/../a")), PathBuf::from("/a"));
        assert_eq!(normalize(Path::new("a/../../b")), PathBuf::from("../b"));
        assert_eq!(normalize(Path::new("./")), PathBuf::from("."));
    }

    #[test]
    fn absolute_joins_the_current_directory() {
        assert_eq!(
            absolute(Path::new("x/../y"), Path::new("/work")),
            PathBuf::from("/work/y")
        );
        assert_eq!(
            absolute(Path::new("/abs"), Path::new("/work")),
            PathBuf::from("/abs")
        );
    }

    #[test]
    fn expand_vars_replaces_set_variables_only() {
        // PATH is set in every test environment; this avoids mutating the environment.
        let path = env::var("PATH").unwrap();
        assert_eq!(expand_vars("$PATH/x"), format!("{path}/x"));
        assert_eq!(expand_vars("${PATH}x"), format!("{path}x"));
        assert_eq!(
            expand_vars("$KILN_SURELY_UNSET_VARIABLE/x"),
            "$KILN_SURELY_UNSET_VARIABLE/x"
        );
        assert_eq!(expand_vars("a$"), "a$");
        assert_eq!(expand_vars("${unclosed"), "${unclosed");
        assert_eq!(expand_vars("no variables"), "no variables");
    }

    #[test]
    fn expand_user_only_touches_a_leading_tilde() {
        assert_eq!(expand_user("models/~x"), "models/~x");
        assert_eq!(expand_user("~other/x"), "~other/x");
        if let Some(home) = home_directory().and_then(|home| home.into_string().ok()) {
            let home = home.trim_end_matches('/').to_owned();
            assert_eq!(expand_user("~/models"), format!("{home}/models"));
            assert_eq!(expand_user("~"), home);
        }
    }
}
