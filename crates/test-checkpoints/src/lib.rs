//! Small, deterministic checkpoints in the exact key layouts of real Stable Diffusion 1.x/2.x,
//! SDXL, SD3/3.5 and Flux files (and their standalone text encoders and VAEs, T5-XXL also as
//! llama.cpp GGUF), in every storage dtype, written through third-party writers (the
//! `safetensors` crate, a `torch.save`-format zip, candle's GGUF writer).
//!
//! Each family module holds the real configuration (with upstream links), a tiny preset that
//! keeps every block count and structural switch but shrinks widths, and the enumeration of every
//! tensor. Values are a pure function of `(seed, component, internal name, element index)`, so
//! the same weight has the same values in every layout (single file, diffusers, open_clip, GGUF),
//! which lets key-map tests compare values and not just names.
//!
//! Sizes: tiny presets keep every real layer/block count, so the widths cannot shrink below what
//! GroupNorm's 32 groups divide (UNet and VAE base width 32) and the real 49408-token CLIP and
//! 32128-token T5 vocabularies stay. In f16 a tiny SD1 checkpoint is ~31 MB, SDXL ~72 MB (its
//! ten-deep transformers at width 128 dominate), Flux ~36 MB; standalone parts are 2–24 MB.
//! `Size::Real` streams tensor by tensor through the safetensors and torch writers, so real-size
//! files need memory for one tensor at a time (GGUF is tiny-only).
//!
//! Main entry points: [`write()`] one [`CheckpointSpec`], [`all_specs`] for a coverage matrix,
//! [`planned_files`] to inspect names/shapes/dtypes without writing, [`reference_tensor`] for the
//! canonical values of a weight by internal name, [`write_flux_model`] for a standalone Flux
//! transformer of any [`FluxConfig`] (benchmarks: real widths, fewer blocks, GGUF included).
//!
//! ```no_run
//! use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};
//!
//! let spec = CheckpointSpec::new(Family::FluxDev, Storage::F8E4M3, Packaging::SingleFile);
//! let path = write(&spec, std::path::Path::new("/tmp/models"))?;
//! assert!(path.ends_with("flux1-dev-checkpoint-fp8_e4m3fn.safetensors"));
//! # Ok::<(), kiln_test_checkpoints::Error>(())
//! ```

#![deny(missing_docs)]

mod clip;
mod diffusers_config;
mod diffusers_layout;
mod encode;
mod error;
mod flux;
mod flux_standalone;
mod fp8;
mod layout;
mod mmdit;
mod out_gguf;
mod out_safetensors;
mod out_torch;
mod pickle;
mod rng;
mod schedule;
mod spec;
mod storage;
mod t5;
mod tensor;
mod unet;
mod vae;

use std::path::{Path, PathBuf};

pub use candle_core::quantized::GgmlDType;
pub use clip::{ClipConfig, ClipVariant, CLIP_POSITIONS, CLIP_VOCAB};
pub use error::Error;
pub use flux::{FluxConfig, FluxVariant};
pub use flux_standalone::{flux_model_file_name, write_flux_model};
pub use fp8::Fp8Kind;
pub use mmdit::{MmditConfig, MmditVariant, MMDIT_HEAD_DIM};
pub use spec::{all_specs, CheckpointSpec, Family, GgufQuant, Packaging, Size, Storage};
pub use t5::T5Config;
pub use unet::{AttentionHeads, Prediction, UnetConfig, UnetVariant, SDXL_SIZE_EMBEDDING_WIDTH};
pub use vae::{VaeConfig, VaeVariant};

use layout::Format;
use storage::{Encoding, FloatType};

/// Writes the checkpoint `spec` describes under `dest_dir` (created if missing) and returns the
/// path of the file, or of the diffusers folder, it wrote (see
/// [`CheckpointSpec::relative_path`]). Existing files are replaced.
pub fn write(spec: &CheckpointSpec, dest_dir: &Path) -> Result<PathBuf, Error> {
    write_plan(&layout::plan(spec)?, dest_dir, spec.seed)
}

/// Writes every file and JSON side file of `plan` under `dest_dir`; returns the plan's result.
fn write_plan(plan: &layout::Plan, dest_dir: &Path, seed: u64) -> Result<PathBuf, Error> {
    for file in &plan.files {
        let path = dest_dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        match file.format {
            Format::Safetensors { .. } => out_safetensors::write(file, dest_dir, seed)?,
            Format::TorchZip => out_torch::write(file, dest_dir, seed)?,
            Format::Gguf { .. } => out_gguf::write(file, dest_dir, seed)?,
        }
    }
    for (relative, value) in &plan.json {
        let path = dest_dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let text = serde_json::to_string_pretty(value).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, text).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(dest_dir.join(&plan.result))
}

/// The dtype a tensor is stored with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredDType {
    /// f32.
    F32,
    /// f16.
    F16,
    /// bf16.
    BF16,
    /// fp8 e4m3fn.
    F8E4M3,
    /// fp8 e5m2.
    F8E5M2,
    /// int64.
    I64,
    /// int32.
    I32,
    /// A GGML type in a GGUF file.
    Ggml(GgmlDType),
}

/// One tensor of a planned file.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedTensor {
    /// Name in the file.
    pub name: String,
    /// Logical shape (for GGUF, the shape before city96's `orig_shape` reshape).
    pub shape: Vec<usize>,
    /// Stored dtype.
    pub dtype: StoredDType,
}

/// One file [`write()`] would create.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedFile {
    /// Path relative to the destination directory.
    pub relative_path: PathBuf,
    /// Its tensors, in write order.
    pub tensors: Vec<PlannedTensor>,
}

/// Every tensor file (not the JSON side files) that [`write()`] would create for `spec`, with
/// names, shapes and stored dtypes; nothing is generated.
pub fn planned_files(spec: &CheckpointSpec) -> Result<Vec<PlannedFile>, Error> {
    let plan = layout::plan(spec)?;
    Ok(plan
        .files
        .iter()
        .map(|file| {
            let tensors = file
                .entries
                .iter()
                .map(|entry| {
                    let dtype = match file.format {
                        Format::Gguf {
                            architecture,
                            quant,
                            ..
                        } => StoredDType::Ggml(
                            out_gguf::tensor_type(
                                &entry.def.name,
                                &entry.def.shape,
                                quant,
                                architecture,
                            )
                            .0,
                        ),
                        _ => stored_dtype(&entry.encoding),
                    };
                    PlannedTensor {
                        name: entry.def.name.clone(),
                        shape: entry.def.shape.clone(),
                        dtype,
                    }
                })
                .collect();
            PlannedFile {
                relative_path: file.path.clone(),
                tensors,
            }
        })
        .collect())
}

fn stored_dtype(encoding: &Encoding) -> StoredDType {
    match encoding {
        Encoding::Float(FloatType::F32) | Encoding::ScaleOf(_) => StoredDType::F32,
        Encoding::Float(FloatType::F16) => StoredDType::F16,
        Encoding::Float(FloatType::BF16) => StoredDType::BF16,
        Encoding::Fp8(Fp8Kind::E4M3)
        | Encoding::ScaledFp8(Fp8Kind::E4M3)
        | Encoding::Marker(Fp8Kind::E4M3) => StoredDType::F8E4M3,
        Encoding::Fp8(Fp8Kind::E5M2)
        | Encoding::ScaledFp8(Fp8Kind::E5M2)
        | Encoding::Marker(Fp8Kind::E5M2) => StoredDType::F8E5M2,
        Encoding::Int64 => StoredDType::I64,
        Encoding::Int32 => StoredDType::I32,
    }
}

/// A model component in Kiln's internal naming (see `docs/architecture.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    /// UNet (LDM names), MMDiT (SAI names) or Flux (BFL names), no prefix.
    DiffusionModel,
    /// CLIP-L, HF names.
    ClipL,
    /// OpenCLIP-G, HF names.
    ClipG,
    /// OpenCLIP-H, HF names.
    OpenClipH,
    /// T5-XXL, `transformers` names.
    T5Xxl,
    /// VAE, LDM names.
    Vae,
}

/// Canonical values of one weight.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceTensor {
    /// Shape in internal naming.
    pub shape: Vec<usize>,
    /// Values before any storage rounding (f32).
    pub values: Vec<f32>,
}

/// The values every layout written for `spec` stores (before dtype rounding) for the weight
/// called `internal_name` in `component`'s internal naming, or `None` if the spec's family has
/// no such weight. The VAE's latent width follows the family (4 for SD1/SD2/SDXL and `Vae4`).
pub fn reference_tensor(
    spec: &CheckpointSpec,
    component: Component,
    internal_name: &str,
) -> Option<ReferenceTensor> {
    let size = spec.size;
    let defs = match component {
        Component::DiffusionModel => layout::diffusion_model(spec.family, size),
        Component::ClipL => ClipConfig::new(ClipVariant::L, size).tensors(),
        Component::ClipG => ClipConfig::new(ClipVariant::G, size).tensors(),
        Component::OpenClipH => ClipConfig::new(ClipVariant::H, size).tensors(),
        Component::T5Xxl => T5Config::new(size).tensors(),
        Component::Vae => VaeConfig::new(layout::vae_variant(spec.family), size).tensors(),
    };
    let def = tensor::find(&defs, internal_name)?;
    Some(ReferenceTensor {
        shape: def.shape.clone(),
        values: def.float_values(spec.seed),
    })
}
