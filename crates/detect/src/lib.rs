//! `kiln-detect` tells what a checkpoint is from its tensor names and shapes, and how its keys map
//! to Kiln's internal naming.
//!
//! Given a file or a diffusers folder it reports the [`Architecture`] (SD1, SD2, SDXL, SDXL
//! refiner, SD3/3.5, Flux, or a standalone CLIP-L/G, OpenCLIP-H, T5-XXL or VAE), a variant
//! (`v1.x`, `2.x-768-v`, `base`, `3.5-large`, `dev`, `schnell`, `fill`, `16-channel`, …), the
//! [`Prediction`] type, and every [`Component`] it holds with its parameter count, storage-dtype
//! histogram, scaled-fp8 marker, architecture facts and complete [`KeyMap`] from internal name to
//! source tensor ([`KeySource`], with a [`KeyTransform`] where layouts differ in shape).
//!
//! The rules are ComfyUI's (`comfy/model_detection.py`, `comfy/sd.py`,
//! `comfy/supported_models.py`) but read structure only, so small test checkpoints with real block
//! counts and tiny widths are detected by the same code as released files; widths that differ from
//! the released model show in the variant (`v1.x (non-standard width 32)`).
//!
//! Each layout is one detector in a registry (LDM/SGM UNet, diffusers UNet, SAI MMDiT, diffusers
//! SD3, BFL Flux, diffusers Flux, transformers CLIP, open_clip, T5 in transformers and in
//! llama.cpp GGUF naming, LDM and diffusers VAE).
//! [`detect`] works on tensor lists ([`FileTensors`]), so it needs no file; [`Checkpoint::open`]
//! opens files with `kiln-weights` and detects them, and [`Checkpoint::read_f32`] reads any
//! internal tensor on the host through its key map (the reference for device loaders). LoRA files
//! and unknown files are typed errors ([`DetectError::Lora`], [`DetectError::Unrecognised`]) that
//! say what was and was not found.
//!
//! ```no_run
//! use kiln_detect::{Checkpoint, ComponentKind};
//!
//! # fn main() -> Result<(), kiln_detect::DetectError> {
//! let checkpoint = Checkpoint::open("models/checkpoints/sd_xl_base_1.0.safetensors")?;
//! let detection = checkpoint.detection();
//! println!("{} {} {:?}", detection.architecture, detection.variant, detection.prediction);
//! if let Some(unet) = detection.component(ComponentKind::DiffusionModel) {
//!     let source = &unet.keys["input_blocks.0.0.weight"];
//!     let file = &checkpoint.files()[source.file];
//!     println!("{} params, stored as {} in {}", unet.params, unet.dominant_dtype, file.path().display());
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod checkpoint;
mod clip;
mod component;
mod detect;
mod detector;
mod diffusers_folder;
mod error;
mod flux;
mod flux_diffusers;
mod input;
mod lora;
mod mapped;
mod mmdit;
mod mmdit_diffusers;
mod open_clip;
mod state_dict;
mod summary;
mod t5;
mod t5_gguf;
mod transform;
mod types;
mod unet;
mod unet_diffusers;
mod vae;
mod vae_diffusers;

#[cfg(test)]
mod testing;

pub use checkpoint::{detect_file, Checkpoint};
pub use detect::detect;
pub use detector::supported_layouts;
pub use error::DetectError;
pub use input::{FileTensors, TensorValues};
pub use types::{
    Architecture, Component, ComponentKind, Detection, KeyMap, KeySource, KeyTransform, Layout,
    Prediction, TensorRef,
};
