//! `extra_model_paths.yaml`: reading ComfyUI's format (`utils/extra_config.py`) into an ordered
//! list of `(folder key, path, is_default)` additions.
//!
//! Each top-level section may set `base_path` (`~` and `$VARS` expanded; relative to the YAML
//! file's directory) and `is_default` (prepend instead of append); every other entry is a folder
//! key whose value is one path or a `|` block of one path per line. Paths are relative to
//! `base_path`, or to the YAML file's directory when the section has none.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::error::FoldersError;
use crate::path_text::{absolute, expand_user, expand_vars, normalize};

/// One search path an extra model paths file adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtraPath {
    /// The folder key as written (legacy names not yet mapped).
    pub(crate) key: String,
    /// Absolute, normalised path.
    pub(crate) path: PathBuf,
    /// Whether the section asked for its paths to come first.
    pub(crate) is_default: bool,
}

/// Reads `config_path` (absolute) and returns its additions in file order.
pub(crate) fn load_extra_paths(config_path: &Path) -> Result<Vec<ExtraPath>, FoldersError> {
    let text = fs::read_to_string(config_path).map_err(|source| FoldersError::ReadConfig {
        path: config_path.to_path_buf(),
        source,
    })?;
    let file: ConfigFile = serde_yaml_ng::from_str(&text)
        .map_err(|error| FoldersError::invalid_config(config_path.to_path_buf(), &error))?;
    let config_directory = config_path
        .parent()
        .map_or_else(|| config_path.to_path_buf(), Path::to_path_buf);
    Ok(file.extra_paths(&config_directory))
}

/// The whole file: sections in order. An empty file has none.
#[derive(Debug, Default)]
struct ConfigFile {
    sections: Vec<Section>,
}

/// One top-level section, such as `comfyui:` or `a111:`.
#[derive(Debug, Default)]
struct Section {
    base_path: Option<String>,
    is_default: bool,
    /// `(folder key, raw value)`, in file order.
    folders: Vec<(String, String)>,
}

impl ConfigFile {
    fn extra_paths(&self, config_directory: &Path) -> Vec<ExtraPath> {
        let mut extra_paths = Vec::new();
        for section in &self.sections {
            let anchor = match &section.base_path {
                Some(base_path) => {
                    let expanded = expand_vars(&expand_user(base_path));
                    absolute(Path::new(&expanded), config_directory)
                }
                None => config_directory.to_path_buf(),
            };
            for (key, value) in &section.folders {
                // Lines are trimmed, unlike ComfyUI: stray indentation or a trailing space in a
                // `|` block would otherwise become part of a directory name nobody meant.
                for line in value.lines().map(str::trim).filter(|line| !line.is_empty()) {
                    extra_paths.push(ExtraPath {
                        key: key.clone(),
                        path: normalize(&anchor.join(line)),
                        is_default: section.is_default,
                    });
                }
            }
        }
        extra_paths
    }
}

impl<'de> Deserialize<'de> for ConfigFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_option(ConfigFileVisitor)
    }
}

struct ConfigFileVisitor;

impl<'de> Visitor<'de> for ConfigFileVisitor {
    type Value = ConfigFile;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a mapping of sections (such as `comfyui:` or `a111:`)")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(ConfigFile::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(ConfigFile::default())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut sections = Vec::new();
        while let Some(name) = map.next_key::<KeyName>()? {
            // A section with no body (`other_ui:` alone) is skipped, as ComfyUI skips it.
            if let Some(section) = map.next_value_seed(SectionSeed { name: &name.0 })? {
                sections.push(section);
            }
        }
        Ok(ConfigFile { sections })
    }
}

/// A mapping key read as text; YAML allows `123:` and ComfyUI would accept it.
struct KeyName(String);

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyNameVisitor)
    }
}

struct KeyNameVisitor;

impl Visitor<'_> for KeyNameVisitor {
    type Value = KeyName;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a name")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(KeyName(text.to_owned()))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Self::Value, E> {
        Ok(KeyName(number.to_string()))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Self::Value, E> {
        Ok(KeyName(number.to_string()))
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<Self::Value, E> {
        Ok(KeyName(flag.to_string()))
    }
}

/// Reads one section body; knows the section's name for messages.
struct SectionSeed<'a> {
    name: &'a str,
}

impl<'de> de::DeserializeSeed<'de> for SectionSeed<'_> {
    type Value = Option<Section>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for SectionSeed<'_> {
    type Value = Option<Section>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "section `{}` to be a mapping of `base_path`, `is_default` and folder keys",
            self.name
        )
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut section = Section::default();
        while let Some(KeyName(key)) = map.next_key::<KeyName>()? {
            match key.as_str() {
                "base_path" => section.base_path = Some(map.next_value::<PathText>()?.0),
                "is_default" => section.is_default = map.next_value::<YamlBool>()?.0,
                _ => {
                    let value = map.next_value::<PathText>()?.0;
                    // A repeated key replaces the earlier value in place, as a Python dict does.
                    match section
                        .folders
                        .iter_mut()
                        .find(|(existing, _)| *existing == key)
                    {
                        Some(entry) => entry.1 = value,
                        None => section.folders.push((key, value)),
                    }
                }
            }
        }
        Ok(Some(section))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Err(de::Error::invalid_type(de::Unexpected::Seq, &self))
    }
}

/// `is_default`'s value. ComfyUI reads YAML with PyYAML, which follows YAML 1.1: `yes`, `on`
/// and their opposites are booleans there, so they are accepted here too.
struct YamlBool(bool);

impl<'de> Deserialize<'de> for YamlBool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(YamlBoolVisitor)
    }
}

struct YamlBoolVisitor;

impl Visitor<'_> for YamlBoolVisitor {
    type Value = YamlBool;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("`true` or `false`")
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<Self::Value, E> {
        Ok(YamlBool(flag))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        match text {
            "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Ok(YamlBool(true)),
            "no" | "No" | "NO" | "off" | "Off" | "OFF" => Ok(YamlBool(false)),
            _ => Err(de::Error::invalid_value(de::Unexpected::Str(text), &self)),
        }
    }
}

/// A path, or several on separate lines (a YAML `|` block).
struct PathText(String);

impl<'de> Deserialize<'de> for PathText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(PathTextVisitor)
    }
}

struct PathTextVisitor;

impl Visitor<'_> for PathTextVisitor {
    type Value = PathText;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a path or a `|` block of paths, one per line")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(PathText(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ConfigFile, serde_yaml_ng::Error> {
        serde_yaml_ng::from_str(yaml)
    }

    #[test]
    fn empty_file_has_no_sections() {
        assert!(parse("").unwrap().sections.is_empty());
        assert!(parse("# only a comment\n").unwrap().sections.is_empty());
    }

    #[test]
    fn section_without_body_is_skipped() {
        let file = parse("other_ui:\nreal:\n  loras: x\n").unwrap();
        assert_eq!(file.sections.len(), 1);
        assert_eq!(file.sections[0].folders, vec![("loras".into(), "x".into())]);
    }

    #[test]
    fn keys_keep_file_order_and_repeats_replace_in_place() {
        let file = parse("s:\n  vae: a\n  loras: b\n  vae: c\n").unwrap();
        assert_eq!(
            file.sections[0].folders,
            vec![("vae".into(), "c".into()), ("loras".into(), "b".into())]
        );
    }

    #[test]
    fn paths_are_anchored_at_base_path_or_the_file() {
        let file = parse(
            "with_base:\n  base_path: ../shared\n  loras: |\n    a\n    \n    b/../c\n\
             without:\n  vae: v\n  checkpoints: /abs/ckpt\n",
        )
        .unwrap();
        let paths = file.extra_paths(Path::new("/conf/dir"));
        let summary: Vec<(&str, &Path)> = paths
            .iter()
            .map(|extra| (extra.key.as_str(), extra.path.as_path()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("loras", Path::new("/conf/shared/a")),
                ("loras", Path::new("/conf/shared/c")),
                ("vae", Path::new("/conf/dir/v")),
                ("checkpoints", Path::new("/abs/ckpt")),
            ]
        );
    }

    #[test]
    fn non_text_value_is_an_error_with_its_line() {
        let error = parse("s:\n  base_path: x\n  loras:\n    - a\n").unwrap_err();
        assert_eq!(error.location().unwrap().line(), 4);
        assert!(
            error.to_string().contains("a path or a `|` block"),
            "{error}"
        );
    }

    #[test]
    fn is_default_must_be_a_boolean() {
        let error = parse("s:\n  is_default: maybe\n").unwrap_err();
        assert_eq!(error.location().unwrap().line(), 2);
    }

    #[test]
    fn is_default_accepts_yaml_1_1_words() {
        let file = parse("a:\n  is_default: yes\nb:\n  is_default: Off\nc:\n  is_default: true\n")
            .unwrap();
        let flags: Vec<bool> = file.sections.iter().map(|s| s.is_default).collect();
        assert_eq!(flags, vec![true, false, true]);
    }

    #[test]
    fn sequence_section_is_an_error() {
        let error = parse("s:\n  - a\n").unwrap_err();
        assert!(error.to_string().contains("section `s`"), "{error}");
    }

    #[test]
    fn top_level_must_be_a_mapping() {
        assert!(parse("- a\n- b\n").is_err());
        assert!(parse("just text\n").is_err());
    }
}
