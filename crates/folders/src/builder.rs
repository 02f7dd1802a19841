//! [`FolderPathsBuilder`]: the path flags and extra model paths files, applied in the order
//! ComfyUI's `main.py: apply_custom_paths` applies them.

use std::env;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::FoldersError;
use crate::extensions::Extensions;
use crate::extra_config::load_extra_paths;
use crate::folder_paths::{Folder, FolderPaths};
use crate::path_text::{absolute, normalize};
use crate::table::{canonical_folder_key, DEFAULT_FOLDERS, FOLDER_VIEWS, OUTPUT_SEARCH_FOLDERS};

/// The file ComfyUI reads from its own directory at start-up; Kiln reads it from the base
/// directory.
pub const EXTRA_MODEL_PATHS_FILE: &str = "extra_model_paths.yaml";

/// Collects ComfyUI's path flags; [`FolderPathsBuilder::build`] reads the extra model paths
/// files and returns the immutable [`FolderPaths`]. Relative paths are taken against the
/// current directory, as ComfyUI's `os.path.abspath` takes them.
#[derive(Debug, Clone)]
pub struct FolderPathsBuilder {
    base_directory: Option<PathBuf>,
    output_directory: Option<PathBuf>,
    input_directory: Option<PathBuf>,
    temp_directory: Option<PathBuf>,
    user_directory: Option<PathBuf>,
    extra_model_paths_configs: Vec<PathBuf>,
    load_base_extra_model_paths: bool,
}

impl Default for FolderPathsBuilder {
    fn default() -> FolderPathsBuilder {
        FolderPathsBuilder {
            base_directory: None,
            output_directory: None,
            input_directory: None,
            temp_directory: None,
            user_directory: None,
            extra_model_paths_configs: Vec::new(),
            load_base_extra_model_paths: true,
        }
    }
}

impl FolderPathsBuilder {
    /// `--base-directory`: the root of `models/`, `custom_nodes/`, `input/`, `output/`,
    /// `temp/` and `user/`. Default: the current directory.
    pub fn base_directory(mut self, directory: impl Into<PathBuf>) -> FolderPathsBuilder {
        self.base_directory = Some(directory.into());
        self
    }

    /// `--output-directory`. Its `checkpoints`, `clip`, `vae`, `diffusion_models` and `loras`
    /// subfolders become model search paths, as in ComfyUI.
    pub fn output_directory(mut self, directory: impl Into<PathBuf>) -> FolderPathsBuilder {
        self.output_directory = Some(directory.into());
        self
    }

    /// `--input-directory`.
    pub fn input_directory(mut self, directory: impl Into<PathBuf>) -> FolderPathsBuilder {
        self.input_directory = Some(directory.into());
        self
    }

    /// `--temp-directory`, as given on the command line: like ComfyUI, the temp directory is
    /// its `temp` subfolder, because the whole temp directory is deleted at start and exit.
    pub fn temp_directory(mut self, directory: impl Into<PathBuf>) -> FolderPathsBuilder {
        self.temp_directory = Some(directory.into());
        self
    }

    /// `--user-directory`.
    pub fn user_directory(mut self, directory: impl Into<PathBuf>) -> FolderPathsBuilder {
        self.user_directory = Some(directory.into());
        self
    }

    /// One `--extra-model-paths-config` file; files apply in the order they are added, after
    /// the base directory's own `extra_model_paths.yaml`.
    pub fn extra_model_paths_config(mut self, file: impl Into<PathBuf>) -> FolderPathsBuilder {
        self.extra_model_paths_configs.push(file.into());
        self
    }

    /// Whether `<base>/extra_model_paths.yaml` is read when it exists (default: yes).
    pub fn load_base_extra_model_paths(mut self, load: bool) -> FolderPathsBuilder {
        self.load_base_extra_model_paths = load;
        self
    }

    /// Reads the extra model paths files and fixes the layout. Nothing is created on disk.
    pub fn build(self) -> Result<FolderPaths, FoldersError> {
        let current_dir = env::current_dir();
        let make_absolute = |path: &Path| -> Result<PathBuf, FoldersError> {
            if path.is_absolute() {
                return Ok(normalize(path));
            }
            match &current_dir {
                Ok(current_dir) => Ok(absolute(path, current_dir)),
                Err(error) => Err(FoldersError::CurrentDirectory {
                    source: io::Error::new(error.kind(), error.to_string()),
                }),
            }
        };

        let base_directory =
            make_absolute(self.base_directory.as_deref().unwrap_or(Path::new(".")))?;
        let models_directory = base_directory.join("models");
        let mut layout = Layout {
            folders: DEFAULT_FOLDERS
                .iter()
                .map(|default| Folder {
                    key: default.key.to_owned(),
                    paths: default
                        .relative_paths
                        .iter()
                        .map(|relative| match relative.strip_prefix("models/") {
                            Some(inside_models) => models_directory.join(inside_models),
                            None => base_directory.join(relative),
                        })
                        .collect(),
                    extensions: default.extensions,
                })
                .collect(),
        };

        let mut config_files = Vec::new();
        let base_config = base_directory.join(EXTRA_MODEL_PATHS_FILE);
        if self.load_base_extra_model_paths && base_config.is_file() {
            config_files.push(base_config);
        }
        for config_file in &self.extra_model_paths_configs {
            config_files.push(make_absolute(config_file)?);
        }
        for config_file in &config_files {
            for extra in load_extra_paths(config_file)? {
                layout.add(&extra.key, extra.path, extra.is_default);
            }
        }

        let output_directory = match &self.output_directory {
            Some(directory) => make_absolute(directory)?,
            None => base_directory.join("output"),
        };
        for key in OUTPUT_SEARCH_FOLDERS {
            layout.add(key, output_directory.join(key), false);
        }
        let input_directory = match &self.input_directory {
            Some(directory) => make_absolute(directory)?,
            None => base_directory.join("input"),
        };
        let user_directory = match &self.user_directory {
            Some(directory) => make_absolute(directory)?,
            None => base_directory.join("user"),
        };
        let temp_directory = match &self.temp_directory {
            Some(directory) => make_absolute(directory)?.join("temp"),
            None => base_directory.join("temp"),
        };

        Ok(FolderPaths {
            base_directory,
            output_directory,
            input_directory,
            temp_directory,
            user_directory,
            folders: layout.folders,
            extra_model_paths_configs: config_files,
        })
    }
}

/// The folder table while it is being assembled.
struct Layout {
    folders: Vec<Folder>,
}

impl Layout {
    /// ComfyUI's `add_model_folder_path`: a known path is not added twice but moves to the
    /// front when `is_default`; a new one is prepended when `is_default`, else appended; an
    /// unknown key becomes a new folder that lists every file. A GGUF view key adds to the
    /// folder it views.
    fn add(&mut self, key: &str, path: PathBuf, is_default: bool) {
        let key = canonical_folder_key(key);
        let key = FOLDER_VIEWS
            .iter()
            .find(|view| view.key == key)
            .map_or(key, |view| view.target);
        let Some(folder) = self.folders.iter_mut().find(|folder| folder.key == key) else {
            self.folders.push(Folder {
                key: key.to_owned(),
                paths: vec![path],
                extensions: Extensions::Any,
            });
            return;
        };
        match folder.paths.iter().position(|existing| *existing == path) {
            Some(index) if is_default && index != 0 => {
                let moved = folder.paths.remove(index);
                folder.paths.insert(0, moved);
            }
            Some(_) => {}
            None if is_default => folder.paths.insert(0, path),
            None => folder.paths.push(path),
        }
    }
}
