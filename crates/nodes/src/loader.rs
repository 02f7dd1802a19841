//! Loading a checkpoint file into [`Model`], [`Clip`] and [`Vae`] values: detect the
//! architecture, plan every component with the services' planner, load each component's
//! weights onto its planned device (the CPU under a simulated profile), and attach the family's
//! sampling and latent format (SD1/SD2/SDXL, SD3/SD3.5, Flux). Results are cached in the
//! services' model cache. Text encoders are loaded behind [`ReleasableStore`]s, tracked by the
//! services, so sampling can drop their weights and the next encode loads them again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_detect::{Architecture, Checkpoint, ComponentKind, Detection};
use kiln_runtime::{ComponentPlan, Planner, WeightStore};
use kiln_sampling::{LatentFormat, ModelSampling, Prediction};
use kiln_weights::StorageDType;

use crate::error::NodesError;
use crate::model_cache::ModelKey;
use crate::releasable_store::ReleasableStore;
use crate::services::NodeServices;
use crate::types::{Clip, Model, TextEncoderWeights, Vae};

/// What a checkpoint file held.
#[derive(Clone, Debug)]
pub struct LoadedCheckpoint {
    /// What detection said the file is.
    pub architecture: Architecture,
    /// The diffusion model, when the file has one Kiln can run.
    pub model: Option<Model>,
    /// The text encoders, when the file has any.
    pub clip: Option<Clip>,
    /// The VAE, when the file has one.
    pub vae: Option<Vae>,
}

/// The sampling and latent format of a family Kiln samples, or `None`.
///
/// Flux with a `guidance_in` layer (dev, fill) is ComfyUI's `Flux` (μ = 1.15 shift), without it
/// `FluxSchnell` (plain discrete flow); SD3, SD3.5 medium and large all use `SD3`'s shift 3.
fn family_sampling(detection: &Detection) -> Option<(ModelSampling, LatentFormat)> {
    let prediction = match detection.prediction {
        Some(kiln_detect::Prediction::V) => Prediction::V,
        _ => Prediction::Eps,
    };
    match detection.architecture {
        Architecture::Sd1 | Architecture::Sd2 => {
            Some((ModelSampling::discrete(prediction), LatentFormat::SD15))
        }
        Architecture::Sdxl | Architecture::SdxlRefiner => {
            Some((ModelSampling::discrete(prediction), LatentFormat::SDXL))
        }
        Architecture::Sd3 => Some((ModelSampling::sd3(), LatentFormat::SD3)),
        Architecture::Flux => {
            let guidance_embed = detection
                .component(ComponentKind::DiffusionModel)
                .and_then(|c| c.facts.get("guidance_embed").copied())
                .unwrap_or(0);
            let sampling = if guidance_embed == 0 {
                ModelSampling::flux_schnell()
            } else {
                ModelSampling::flux_dev()
            };
            Some((sampling, LatentFormat::FLUX))
        }
        _ => None,
    }
}

/// The text encoders a family uses, in ComfyUI's order.
fn encoder_order(architecture: Architecture) -> &'static [ComponentKind] {
    match architecture {
        Architecture::Sdxl => &[ComponentKind::ClipL, ComponentKind::ClipG],
        Architecture::SdxlRefiner => &[ComponentKind::ClipG],
        Architecture::Sd2 => &[ComponentKind::OpenClipH],
        Architecture::Sd3 => &[
            ComponentKind::ClipL,
            ComponentKind::ClipG,
            ComponentKind::T5xxl,
        ],
        Architecture::Flux => &[ComponentKind::ClipL, ComponentKind::T5xxl],
        _ => &[
            ComponentKind::ClipL,
            ComponentKind::ClipG,
            ComponentKind::OpenClipH,
            ComponentKind::T5xxl,
        ],
    }
}

/// Refuses a scaled-fp8 component with an fp8 matrix that has no `scale_weight`: ComfyUI would
/// silently use a scale of 1 and produce noise.
fn check_fp8_scales(checkpoint: &Checkpoint, kind: ComponentKind) -> Result<(), NodesError> {
    let Some(component) = checkpoint.detection().component(kind) else {
        return Ok(());
    };
    if component.scaled_fp8.is_none() {
        return Ok(());
    }
    for (name, source) in &component.keys {
        let Some(stem) = name.strip_suffix("weight") else {
            continue;
        };
        if stem.ends_with("scale_") {
            continue;
        }
        let stored = checkpoint
            .files()
            .get(source.file)
            .and_then(|file| file.get(&source.name));
        let is_fp8 = stored
            .is_some_and(|info| matches!(info.dtype, StorageDType::F8E4M3 | StorageDType::F8E5M2));
        if is_fp8 && !component.keys.contains_key(&format!("{stem}scale_weight")) {
            return Err(NodesError::MissingComponent {
                path: checkpoint.path().to_path_buf(),
                what: format!(
                    "scaled-fp8 {kind} weight '{}' has no scale tensor '{}scale_weight' \
                     (the file is truncated or was converted without its scales)",
                    source.name,
                    source.name.strip_suffix("weight").unwrap_or(&source.name)
                ),
            });
        }
    }
    Ok(())
}

fn load_component(
    services: &NodeServices,
    planner: &Planner,
    checkpoint: &Checkpoint,
    plan: &ComponentPlan,
) -> Result<Arc<WeightStore>, NodesError> {
    check_fp8_scales(checkpoint, plan.component)?;
    let runtime = |source| NodesError::Runtime {
        path: checkpoint.path().to_path_buf(),
        source: Box::new(source),
    };
    let profile = planner.profile_for(plan.device);
    let device = services.device_for(plan).map_err(runtime)?;
    let store = WeightStore::load(checkpoint, plan, profile, &device).map_err(runtime)?;
    Ok(Arc::new(store))
}

/// A text encoder loaded as [`load_component`] does, behind a [`ReleasableStore`] (tracked by
/// the services) whose reload opens the file again and loads the same plan on the same device.
fn load_text_encoder(
    services: &NodeServices,
    planner: &Planner,
    checkpoint: &Checkpoint,
    plan: &ComponentPlan,
) -> Result<Arc<ReleasableStore>, NodesError> {
    let store = load_component(services, planner, checkpoint, plan)?;
    let path: PathBuf = checkpoint.path().to_path_buf();
    let label = format!("{} of {}", plan.component, path.display());
    let profile = planner.profile_for(plan.device).clone();
    let device = store.device().clone();
    let plan = plan.clone();
    let reload = move || {
        let reopened = Checkpoint::open(&path).map_err(|source| NodesError::Detect {
            path: path.clone(),
            source: Box::new(source),
        })?;
        WeightStore::load(&reopened, &plan, &profile, &device).map_err(|source| {
            NodesError::Runtime {
                path: path.clone(),
                source: Box::new(source),
            }
        })
    };
    let handle = Arc::new(ReleasableStore::reloadable(label, store, reload));
    services.text_encoders().track(&handle);
    Ok(handle)
}

/// Loads (or takes from the cache) everything in the checkpoint at `path`.
pub fn load_checkpoint(
    services: &NodeServices,
    path: &Path,
) -> Result<Arc<LoadedCheckpoint>, NodesError> {
    load_checkpoint_with(services, services.planner(), path)
}

/// As [`load_checkpoint`] with another planner (`UNETLoader`'s `weight_dtype` forces the
/// diffusion model's storage dtype through [`kiln_runtime::PlanOptions::unet_dtype`]).
pub(crate) fn load_checkpoint_with(
    services: &NodeServices,
    planner: &Planner,
    path: &Path,
) -> Result<Arc<LoadedCheckpoint>, NodesError> {
    let options = format!("checkpoint {:?}", planner.options());
    services
        .models()
        .get_or_load(ModelKey::new(path, options), || {
            load_uncached(services, planner, path)
        })
}

fn load_uncached(
    services: &NodeServices,
    planner: &Planner,
    path: &Path,
) -> Result<LoadedCheckpoint, NodesError> {
    let checkpoint = Checkpoint::open(path).map_err(|source| NodesError::Detect {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let detection = checkpoint.detection().clone();
    let plan = planner
        .plan(&detection)
        .map_err(|source| NodesError::Runtime {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
    tracing::info!(
        "loading {} ({} {}) for {}",
        path.display(),
        detection.architecture,
        detection.variant,
        plan.profile
    );
    let mut model = None;
    if let Some(unet_plan) = plan.component(ComponentKind::DiffusionModel) {
        let (sampling, latent_format) =
            family_sampling(&detection).ok_or_else(|| NodesError::MissingComponent {
                path: path.to_path_buf(),
                what: format!(
                    "Kiln cannot sample {} diffusion models yet",
                    detection.architecture
                ),
            })?;
        model = Some(Model {
            source: path.to_path_buf(),
            architecture: detection.architecture,
            sampling,
            latent_format,
            weights: load_component(services, planner, &checkpoint, unet_plan)?,
            plan: unet_plan.clone(),
            loras: Vec::new(),
            text_encoders: plan.text_encoders,
            text_encoders_reason: plan.text_encoders_reason.clone(),
            differential_diffusion: None,
        });
    }
    let mut encoders = Vec::new();
    for &kind in encoder_order(detection.architecture) {
        if let Some(encoder_plan) = plan.component(kind) {
            encoders.push(TextEncoderWeights {
                kind,
                source: path.to_path_buf(),
                store: load_text_encoder(services, planner, &checkpoint, encoder_plan)?,
                plan: encoder_plan.clone(),
            });
        }
    }
    let clip = (!encoders.is_empty()).then(|| Clip {
        source: path.to_path_buf(),
        architecture: detection.architecture,
        encoders,
        stop_at_layer: None,
        loras: Vec::new(),
    });
    let vae = match plan.component(ComponentKind::Vae) {
        Some(vae_plan) => Some(Vae {
            source: path.to_path_buf(),
            weights: load_component(services, planner, &checkpoint, vae_plan)?,
            plan: vae_plan.clone(),
            latent_channels: detection
                .component(ComponentKind::Vae)
                .and_then(|c| c.facts.get("latent_channels").copied())
                .map_or(4, |c| c as usize),
        }),
        None => None,
    };
    Ok(LoadedCheckpoint {
        architecture: detection.architecture,
        model,
        clip,
        vae,
    })
}

/// The `type` of ComfyUI's CLIP loaders (`comfy.sd.CLIPType`) that Kiln can encode with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClipType {
    /// `stable_diffusion`: CLIP-L (SD1), OpenCLIP-H (SD2) or CLIP-G alone (SDXL refiner).
    StableDiffusion,
    /// `sdxl`: CLIP-L + CLIP-G.
    Sdxl,
    /// `sd3`: any of CLIP-L, CLIP-G and T5-XXL; missing encoders give zeros.
    Sd3,
    /// `flux`: CLIP-L + T5-XXL.
    Flux,
}

impl ClipType {
    /// The type named by a loader's `type` combo, or an error for the ComfyUI types whose
    /// encoders Kiln does not have (`stable_cascade`, `mochi`, `wan`, …).
    pub(crate) fn from_combo(name: &str) -> Result<ClipType, NodesError> {
        match name {
            "stable_diffusion" => Ok(ClipType::StableDiffusion),
            "sdxl" => Ok(ClipType::Sdxl),
            "sd3" => Ok(ClipType::Sd3),
            "flux" => Ok(ClipType::Flux),
            other => Err(NodesError::input(
                "type",
                format!(
                    "CLIP type '{other}' is not supported by Kiln (supported: stable_diffusion, \
                     sdxl, sd3, flux)"
                ),
            )),
        }
    }
}

/// What a file given to a CLIP loader is, for error messages.
fn describe(loaded: &LoadedCheckpoint) -> String {
    match &loaded.clip {
        Some(clip) => clip
            .encoders
            .iter()
            .map(|encoder| encoder_name(encoder.kind))
            .collect::<Vec<_>>()
            .join(" + "),
        None => format!("a {} file with no text encoder", loaded.architecture),
    }
}

fn encoder_name(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::ClipL => "a CLIP-L text encoder",
        ComponentKind::ClipG => "a CLIP-G text encoder",
        ComponentKind::OpenClipH => "an OpenCLIP-H text encoder",
        ComponentKind::T5xxl => "a T5-XXL text encoder",
        ComponentKind::DiffusionModel => "a diffusion model",
        ComponentKind::Vae => "a VAE",
    }
}

/// `comfy.sd.load_clip`: the text encoders of `files` (each `(input name, path)`) joined into
/// one `CLIP` of `clip_type`, following ComfyUI's choice of encoder set by file count and type.
/// Each file is loaded (and cached) like a checkpoint; a file holding no text encoder, two files
/// holding the same encoder, or a set the type cannot use is an error naming the file.
pub(crate) fn load_text_encoders(
    services: &NodeServices,
    planner: &Planner,
    files: &[(&str, &Path)],
    clip_type: ClipType,
) -> Result<Clip, NodesError> {
    let mut encoders: Vec<TextEncoderWeights> = Vec::new();
    let mut origins: Vec<(&str, &Path, String)> = Vec::new();
    for &(input, path) in files {
        let loaded = load_checkpoint_with(services, planner, path)?;
        let what = describe(&loaded);
        let Some(clip) = &loaded.clip else {
            return Err(NodesError::input(
                input,
                format!("{} is {what}", path.display()),
            ));
        };
        for encoder in &clip.encoders {
            if let Some(previous) = encoders.iter().find(|e| e.kind == encoder.kind) {
                return Err(NodesError::input(
                    input,
                    format!(
                        "{} and {} both hold {}; give each encoder once",
                        previous.source.display(),
                        path.display(),
                        encoder_name(encoder.kind)
                    ),
                ));
            }
            encoders.push(encoder.clone());
        }
        origins.push((input, path, what));
    }
    let has = |kind| encoders.iter().any(|e: &TextEncoderWeights| e.kind == kind);
    // The file to blame when a needed encoder is absent: the first one that is not an
    // encoder the set needs (or the last file).
    let wrong_file = |needed: &[ComponentKind], wanted: ComponentKind| -> NodesError {
        let culprit = origins
            .iter()
            .find(|(_, path, _)| {
                !encoders
                    .iter()
                    .any(|e| e.source == *path && needed.contains(&e.kind))
            })
            .or(origins.last());
        match culprit {
            Some((input, path, what)) => NodesError::input(
                *input,
                format!(
                    "{} is {what}, but this CLIP type needs {} here",
                    path.display(),
                    encoder_name(wanted)
                ),
            ),
            None => NodesError::input("clip_name", "no text encoder files given"),
        }
    };
    let architecture = match clip_type {
        ClipType::Sd3 => Architecture::Sd3,
        ClipType::Flux => {
            let needed = [ComponentKind::ClipL, ComponentKind::T5xxl];
            for kind in needed {
                if !has(kind) {
                    return Err(wrong_file(&needed, kind));
                }
            }
            Architecture::Flux
        }
        ClipType::Sdxl if files.len() > 1 => {
            let needed = [ComponentKind::ClipL, ComponentKind::ClipG];
            for kind in needed {
                if !has(kind) {
                    return Err(wrong_file(&needed, kind));
                }
            }
            Architecture::Sdxl
        }
        ClipType::Sdxl | ClipType::StableDiffusion => {
            if has(ComponentKind::T5xxl) {
                return Err(wrong_file(
                    &[
                        ComponentKind::ClipL,
                        ComponentKind::ClipG,
                        ComponentKind::OpenClipH,
                    ],
                    ComponentKind::ClipL,
                ));
            }
            if has(ComponentKind::ClipL) && has(ComponentKind::ClipG) {
                Architecture::Sdxl
            } else if has(ComponentKind::ClipG) {
                Architecture::SdxlRefiner
            } else if has(ComponentKind::OpenClipH) {
                Architecture::Sd2
            } else {
                Architecture::Sd1
            }
        }
    };
    let order = encoder_order(architecture);
    encoders.retain(|e| order.contains(&e.kind));
    encoders.sort_by_key(|e| order.iter().position(|k| *k == e.kind));
    let source = files
        .first()
        .map(|(_, path)| path.to_path_buf())
        .unwrap_or_default();
    if encoders.is_empty() {
        return Err(NodesError::MissingComponent {
            path: source,
            what: "no text encoder the CLIP type can use".to_owned(),
        });
    }
    Ok(Clip {
        source,
        architecture,
        encoders,
        stop_at_layer: None,
        loras: Vec::new(),
    })
}
