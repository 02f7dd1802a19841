//! ComfyUI's folder layout for Kiln: where each kind of model lives under `--base-directory`,
//! the `extra_model_paths.yaml` files that add search paths, and the sorted, recursive model
//! listings that loader nodes offer.
//!
//! [`FolderPaths`] is built once with [`FolderPathsBuilder`] from ComfyUI's path flags
//! (`--base-directory`, `--output-directory`, `--input-directory`, `--temp-directory`,
//! `--user-directory`, `--extra-model-paths-config`) and is read-only afterwards. Folder keys
//! are ComfyUI's (`checkpoints`, `loras`, `text_encoders`, `diffusion_models`, ...); the legacy
//! names `clip` and `unet` are accepted wherever a key is (see [`canonical_folder_key`]).
//!
//! ```
//! use kiln_folders::FolderPaths;
//!
//! let base = std::env::temp_dir().join("kiln-folders-doc-example");
//! let paths = FolderPaths::builder()
//!     .base_directory(&base)
//!     .output_directory(base.join("renders"))
//!     .build()?;
//! assert_eq!(paths.folder_paths("unet"), paths.folder_paths("diffusion_models"));
//! assert_eq!(paths.temp_directory(), base.join("temp"));
//! // A folder that does not exist lists nothing.
//! for name in paths.list("checkpoints")? {
//!     println!("{name} -> {:?}", paths.resolve("checkpoints", &name));
//! }
//! # Ok::<(), kiln_folders::FoldersError>(())
//! ```
#![deny(missing_docs)]

mod builder;
mod error;
mod extensions;
mod extra_config;
mod folder_paths;
mod listing;
mod path_text;
mod table;

pub use builder::{FolderPathsBuilder, EXTRA_MODEL_PATHS_FILE};
pub use error::FoldersError;
pub use extensions::{Extensions, MODEL_EXTENSIONS, MODEL_EXTENSIONS_WITH_GGUF};
pub use folder_paths::FolderPaths;
pub use table::canonical_folder_key;
