//! From a [`CheckpointSpec`] to a [`Plan`]: which files are written, which tensors each holds
//! under which names (checkpoint prefixes, open_clip vs HF naming, diffusers renames, shards),
//! and how each is encoded. Diffusers folders are planned in `diffusers_layout`.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::clip::{logit_scale, ClipConfig, ClipVariant};
use crate::flux::{FluxConfig, FluxVariant};
use crate::mmdit::{MmditConfig, MmditVariant};
use crate::schedule::{ScheduleBuffer, TIMESTEPS};
use crate::storage::{encoding_for, is_scaled, Encoding, Part, Placement};
use crate::t5::T5Config;
use crate::tensor::{Role, TensorDef, Values};
use crate::unet::{Prediction, UnetConfig, UnetVariant};
use crate::vae::{VaeConfig, VaeVariant};
use crate::{CheckpointSpec, Error, Family, GgufQuant, Packaging, Size, Storage};

/// One tensor as it goes into a file.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) def: TensorDef,
    pub(crate) encoding: Encoding,
}

impl Entry {
    /// Bytes the tensor occupies in a safetensors/torch file.
    pub(crate) fn byte_len(&self) -> usize {
        self.def.numel() * self.encoding.element_size()
    }
}

/// Container format of one file.
#[derive(Clone, Debug)]
pub(crate) enum Format {
    Safetensors {
        metadata: Option<HashMap<String, String>>,
    },
    TorchZip,
    Gguf {
        architecture: &'static str,
        quant: GgufQuant,
        /// Architecture metadata written after `general.*` (llama.cpp's `t5encoder.*`).
        hparams: Vec<(String, candle_core::quantized::gguf_file::Value)>,
    },
}

/// One file to write.
#[derive(Clone, Debug)]
pub(crate) struct FilePlan {
    /// Relative to the destination directory.
    pub(crate) path: PathBuf,
    pub(crate) format: Format,
    pub(crate) entries: Vec<Entry>,
}

/// Everything a spec writes.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) files: Vec<FilePlan>,
    /// JSON side files, relative paths.
    pub(crate) json: Vec<(PathBuf, Value)>,
    /// What `write` returns, relative.
    pub(crate) result: PathBuf,
}

/// Collects prefixed, encoded entries for one file.
pub(crate) struct Assembler {
    storage: Storage,
    placement: Placement,
    entries: Vec<Entry>,
}

impl Assembler {
    pub(crate) fn new(storage: Storage, placement: Placement) -> Assembler {
        Assembler {
            storage,
            placement,
            entries: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, part: Part, prefix: &str, defs: Vec<TensorDef>) {
        let scaled = is_scaled(self.storage, part, self.placement);
        if scaled {
            if let Some(kind) = self.storage.fp8_kind() {
                let marker = TensorDef {
                    name: format!("{prefix}scaled_fp8"),
                    shape: vec![0],
                    role: Role::Parameter,
                    values: Values::Constant(0.0),
                };
                self.entries.push(Entry {
                    def: marker,
                    encoding: Encoding::Marker(kind),
                });
            }
        }
        for def in defs {
            let encoding = encoding_for(self.storage, part, def.role, self.placement);
            let name = format!("{prefix}{}", def.name);
            let scale = match (&encoding, name.strip_suffix(".weight")) {
                (Encoding::ScaledFp8(_), Some(layer)) => Some(TensorDef {
                    name: format!("{layer}.scale_weight"),
                    shape: vec![],
                    role: Role::Parameter,
                    values: Values::Constant(1.0),
                }),
                _ => None,
            };
            self.entries.push(Entry {
                def: def.renamed(name.clone()),
                encoding,
            });
            if let Some(scale) = scale {
                self.entries.push(Entry {
                    def: scale,
                    encoding: Encoding::ScaleOf(name),
                });
            }
        }
    }

    pub(crate) fn into_entries(self) -> Vec<Entry> {
        self.entries
    }
}

pub(crate) fn unet_config(family: Family, size: Size) -> Option<UnetConfig> {
    let (variant, prediction) = match family {
        Family::Sd1 => (UnetVariant::Sd1, Prediction::Epsilon),
        Family::Sd2 => (UnetVariant::Sd2, Prediction::Epsilon),
        Family::Sd2V => (UnetVariant::Sd2, Prediction::V),
        Family::Sdxl => (UnetVariant::Sdxl, Prediction::Epsilon),
        Family::SdxlRefiner => (UnetVariant::SdxlRefiner, Prediction::Epsilon),
        _ => return None,
    };
    Some(UnetConfig {
        prediction,
        ..UnetConfig::new(variant, size)
    })
}

pub(crate) fn mmdit_config(family: Family, size: Size) -> Option<MmditConfig> {
    let variant = match family {
        Family::Sd3Medium => MmditVariant::Sd3Medium,
        Family::Sd35Medium => MmditVariant::Sd35Medium,
        Family::Sd35Large => MmditVariant::Sd35Large,
        _ => return None,
    };
    Some(MmditConfig::new(variant, size))
}

pub(crate) fn flux_config(family: Family, size: Size) -> Option<FluxConfig> {
    let variant = match family {
        Family::FluxDev => FluxVariant::Dev,
        Family::FluxSchnell => FluxVariant::Schnell,
        Family::FluxFill => FluxVariant::Fill,
        _ => return None,
    };
    Some(FluxConfig::new(variant, size))
}

/// Canonical diffusion-model tensors of a diffusion family.
pub(crate) fn diffusion_model(family: Family, size: Size) -> Vec<TensorDef> {
    if let Some(config) = unet_config(family, size) {
        return config.tensors();
    }
    if let Some(config) = mmdit_config(family, size) {
        return config.tensors();
    }
    flux_config(family, size)
        .map(|config| config.tensors())
        .unwrap_or_default()
}

/// The EMA bookkeeping and noise-schedule buffers of CompVis LDM checkpoints.
fn ldm_extras() -> Vec<TensorDef> {
    let mut defs: Vec<TensorDef> = ScheduleBuffer::ALL
        .iter()
        .map(|buffer| TensorDef {
            name: buffer.name().to_string(),
            shape: vec![TIMESTEPS],
            role: Role::Buffer,
            values: Values::Schedule(*buffer),
        })
        .collect();
    defs.push(TensorDef {
        name: "model_ema.decay".into(),
        shape: vec![],
        role: Role::Buffer,
        values: Values::Constant(0.9999),
    });
    defs.push(TensorDef {
        name: "model_ema.num_updates".into(),
        shape: vec![],
        role: Role::Counter,
        values: Values::Constant(0.0),
    });
    defs
}

pub(crate) fn vae_variant(family: Family) -> VaeVariant {
    match family {
        Family::Sd3Medium
        | Family::Sd35Medium
        | Family::Sd35Large
        | Family::FluxDev
        | Family::FluxSchnell
        | Family::FluxFill
        | Family::Vae16 => VaeVariant::Latent16,
        _ => VaeVariant::Latent4,
    }
}

/// All components of a single-file checkpoint, under their real prefixes.
fn single_file_entries(spec: &CheckpointSpec) -> Vec<Entry> {
    let size = spec.size;
    let mut file = Assembler::new(spec.storage, Placement::InCheckpoint);
    let family = spec.family;
    file.add(
        Part::DiffusionModel,
        "model.diffusion_model.",
        diffusion_model(family, size),
    );
    let vae = VaeConfig::new(vae_variant(family), size).tensors();
    let clip_l = ClipConfig::new(ClipVariant::L, size);
    let clip_g = ClipConfig::new(ClipVariant::G, size);
    match family {
        Family::Sd1 => {
            file.add(Part::Vae, "first_stage_model.", vae);
            file.add(
                Part::Clip,
                "cond_stage_model.transformer.",
                clip_l.hf_tensors(false, true),
            );
            file.add(Part::Extra, "", ldm_extras());
        }
        Family::Sd2 | Family::Sd2V => {
            file.add(Part::Vae, "first_stage_model.", vae);
            let open_clip_h = ClipConfig::new(ClipVariant::H, size).open_clip_tensors();
            file.add(Part::Clip, "cond_stage_model.model.", open_clip_h);
            file.add(Part::Extra, "", ldm_extras());
        }
        Family::Sdxl => {
            file.add(Part::Vae, "first_stage_model.", vae);
            file.add(
                Part::Clip,
                "conditioner.embedders.0.transformer.",
                clip_l.hf_tensors(false, true),
            );
            file.add(
                Part::Clip,
                "conditioner.embedders.1.model.",
                clip_g.open_clip_tensors(),
            );
        }
        Family::SdxlRefiner => {
            file.add(Part::Vae, "first_stage_model.", vae);
            file.add(
                Part::Clip,
                "conditioner.embedders.0.model.",
                clip_g.open_clip_tensors(),
            );
        }
        Family::Sd3Medium | Family::Sd35Medium | Family::Sd35Large => {
            file.add(Part::Vae, "first_stage_model.", vae);
            file.add(
                Part::Clip,
                "text_encoders.clip_l.transformer.",
                clip_l.hf_tensors(true, false),
            );
            file.add(
                Part::Clip,
                "text_encoders.clip_g.transformer.",
                clip_g.hf_tensors(true, false),
            );
            file.add(
                Part::T5,
                "text_encoders.t5xxl.transformer.",
                T5Config::new(size).tensors(),
            );
        }
        _ => {
            // ComfyUI's CheckpointSave layout for Flux (Comfy-Org flux1-dev-fp8.safetensors):
            // SDClipModel adds `logit_scale` next to each text encoder's `transformer`.
            file.add(
                Part::Clip,
                "text_encoders.clip_l.",
                vec![logit_scale("logit_scale")],
            );
            file.add(
                Part::Clip,
                "text_encoders.clip_l.transformer.",
                clip_l.hf_tensors(true, false),
            );
            file.add(
                Part::T5,
                "text_encoders.t5xxl.",
                vec![logit_scale("logit_scale")],
            );
            file.add(
                Part::T5,
                "text_encoders.t5xxl.transformer.",
                T5Config::new(size).tensors(),
            );
            file.add(Part::Vae, "vae.", vae);
        }
    }
    file.into_entries()
}

/// One component alone, no prefix.
fn standalone_entries(spec: &CheckpointSpec) -> Vec<Entry> {
    let size = spec.size;
    let mut file = Assembler::new(spec.storage, Placement::Alone);
    match spec.family {
        Family::ClipL => file.add(
            Part::Clip,
            "",
            ClipConfig::new(ClipVariant::L, size).hf_tensors(false, false),
        ),
        Family::ClipLWithProjection => file.add(
            Part::Clip,
            "",
            ClipConfig::new(ClipVariant::L, size).hf_tensors(true, false),
        ),
        Family::ClipG => file.add(
            Part::Clip,
            "",
            ClipConfig::new(ClipVariant::G, size).hf_tensors(true, false),
        ),
        Family::OpenClipH => file.add(
            Part::Clip,
            "",
            ClipConfig::new(ClipVariant::H, size).hf_tensors(true, false),
        ),
        Family::T5Xxl => file.add(Part::T5, "", T5Config::new(size).tensors()),
        Family::Vae4 | Family::Vae16 => file.add(
            Part::Vae,
            "",
            VaeConfig::new(vae_variant(spec.family), size).tensors(),
        ),
        family => file.add(Part::DiffusionModel, "", diffusion_model(family, size)),
    }
    file.into_entries()
}

/// One part alone in a file, no prefix.
pub(crate) fn plain_entries(storage: Storage, part: Part, defs: Vec<TensorDef>) -> Vec<Entry> {
    let mut file = Assembler::new(storage, Placement::Alone);
    file.add(part, "", defs);
    file.into_entries()
}

/// The plan for a supported spec.
pub(crate) fn plan(spec: &CheckpointSpec) -> Result<Plan, Error> {
    spec.validate()?;
    let result = spec.relative_path();
    let one_file = |format: Format, entries: Vec<Entry>| Plan {
        files: vec![FilePlan {
            path: result.clone(),
            format,
            entries,
        }],
        json: Vec::new(),
        result: result.clone(),
    };
    Ok(match spec.packaging {
        Packaging::SingleFile => one_file(
            Format::Safetensors { metadata: None },
            single_file_entries(spec),
        ),
        Packaging::Standalone => one_file(
            Format::Safetensors { metadata: None },
            standalone_entries(spec),
        ),
        Packaging::TorchCkpt if spec.family.is_vae() => {
            one_file(Format::TorchZip, standalone_entries(spec))
        }
        Packaging::TorchCkpt => one_file(Format::TorchZip, single_file_entries(spec)),
        Packaging::Gguf => {
            let (Storage::Gguf(quant), Some(architecture)) =
                (spec.storage, spec.family.gguf_architecture())
            else {
                return Err(Error::UnsupportedCombination { spec: *spec });
            };
            // city96's converter (llama.cpp's for T5) reads a bf16/f16 model; the quantiser
            // decides per tensor.
            let (part, defs, hparams) = match spec.family {
                Family::T5Xxl => {
                    let config = T5Config::new(spec.size);
                    (
                        Part::T5,
                        config.llama_cpp_tensors(),
                        config.llama_cpp_metadata(),
                    )
                }
                family => (
                    Part::DiffusionModel,
                    diffusion_model(family, spec.size),
                    Vec::new(),
                ),
            };
            one_file(
                Format::Gguf {
                    architecture,
                    quant,
                    hparams,
                },
                plain_entries(Storage::F32, part, defs),
            )
        }
        Packaging::Diffusers => crate::diffusers_layout::plan(spec),
    })
}
