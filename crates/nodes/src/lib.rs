//! `kiln-nodes`: Kiln's built-in ComfyUI node classes and the services they share.
//!
//! Every node is a unit struct implementing [`kiln_graph::Node`] in its own file under
//! `nodes/`, listed once in [`builtin_registry`]. Nodes exchange the values in [`types`] under
//! ComfyUI's type names (`LATENT` = [`Latent`], `IMAGE` = [`Image`], `CONDITIONING` =
//! [`Conditioning`], `MODEL` = [`Model`], ...), and reach shared state (folders, planner,
//! loaded models, `--disable-metadata`) through [`NodeServices`], which the engine passes as
//! its services.
//!
//! Behaviour follows ComfyUI's `nodes.py`: the same inputs, defaults and ranges, the same
//! resizing arithmetic (`common_upscale`, `bislerp`, Pillow's Lanczos), and `SaveImage`'s exact
//! file naming and PNG text chunks ([`python_json_dumps`] writes what Python's `json.dumps`
//! does).
//!
//! ```
//! use kiln_nodes::builtin_registry;
//!
//! let registry = builtin_registry();
//! let info = registry.object_info(&|_folder| Vec::new());
//! assert_eq!(info["EmptyLatentImage"]["category"], "latent");
//! ```
#![deny(missing_docs)]

mod concat_cond;
mod error;
mod image_io;
mod ksampler_run;
mod loader;
mod lora;
mod model_cache;
mod network;
mod node_util;
pub mod nodes;
mod png_output;
mod preview;
mod python_json;
mod registry;
mod releasable_store;
mod resample;
mod save_images;
mod save_path;
mod services;
#[cfg(test)]
mod testing;
mod text_encoding;
pub mod types;
mod vae_network;

pub use error::NodesError;
pub use image_io::{decode_image, file_sha256, list_input_files, DecodedImage};
pub use loader::{load_checkpoint, LoadedCheckpoint};
pub use model_cache::{ModelCache, ModelKey};
pub use png_output::{read_png_text, to_u8, write_png, Pixels8};
pub use preview::{
    contain_size, encode_preview, preview_byte, taesd_decoder_name, Latent2Rgb, PreviewDecoder,
    Previewer, TaesdDecoder, DEFAULT_PREVIEW_SIZE, PREVIEW_JPEG_QUALITY,
};
pub use python_json::{python_float_repr, python_json_dumps};
pub use registry::builtin_registry;
pub use releasable_store::{ReleasableStore, TextEncoderTracker};
pub use resample::{common_upscale, Crop, Planes, UpscaleMethod};
pub use save_images::metadata_chunks;
pub use save_path::{expand_tokens, normpath, save_image_path, LocalTime, SaveTarget};
pub use services::{NodeServices, NodeServicesBuilder, PreviewMethod, INPUT_FILES, INPUT_IMAGES};
pub use types::{Clip, CondEntry, CondMeta, Conditioning, Image, Latent, Mask, Model, Vae};
