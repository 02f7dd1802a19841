//! Loading a checkpoint file into [`Model`], [`Clip`] and [`Vae`] values: detect the
//! architecture, plan every component with the services' planner, load each component's
//! weights onto its planned device (the CPU under a simulated profile), and attach the family's
//! sampling and latent format. Results are cached in the services' model cache.

use std::path::Path;
use std::sync::Arc;

use kiln_detect::{Architecture, Checkpoint, ComponentKind, Detection};
use kiln_runtime::{ComponentPlan, WeightStore};
use kiln_sampling::{LatentFormat, ModelSampling, Prediction};

use crate::error::NodesError;
use crate::model_cache::ModelKey;
use crate::services::NodeServices;
use crate::types::{Clip, Model, TextEncoderWeights, Vae};

/// What a checkpoint file held.
#[derive(Clone, Debug)]
pub struct LoadedCheckpoint {
    /// The diffusion model, when the file has one Kiln can run.
    pub model: Option<Model>,
    /// The text encoders, when the file has any.
    pub clip: Option<Clip>,
    /// The VAE, when the file has one.
    pub vae: Option<Vae>,
}

/// The sampling and latent format of a family Kiln samples, or `None`.
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
        _ => None,
    }
}

/// The text encoders a family uses, in ComfyUI's order.
fn encoder_order(architecture: Architecture) -> &'static [ComponentKind] {
    match architecture {
        Architecture::Sdxl => &[ComponentKind::ClipL, ComponentKind::ClipG],
        Architecture::SdxlRefiner => &[ComponentKind::ClipG],
        Architecture::Sd2 => &[ComponentKind::OpenClipH],
        _ => &[
            ComponentKind::ClipL,
            ComponentKind::ClipG,
            ComponentKind::OpenClipH,
        ],
    }
}

fn load_component(
    services: &NodeServices,
    checkpoint: &Checkpoint,
    plan: &ComponentPlan,
) -> Result<Arc<WeightStore>, NodesError> {
    let runtime = |source| NodesError::Runtime {
        path: checkpoint.path().to_path_buf(),
        source: Box::new(source),
    };
    let profile = services.planner().profile_for(plan.device);
    let device = services.device_for(plan).map_err(runtime)?;
    let store = WeightStore::load(checkpoint, plan, profile, &device).map_err(runtime)?;
    Ok(Arc::new(store))
}

/// Loads (or takes from the cache) everything in the checkpoint at `path`.
pub fn load_checkpoint(
    services: &NodeServices,
    path: &Path,
) -> Result<Arc<LoadedCheckpoint>, NodesError> {
    let options = format!("checkpoint {:?}", services.planner().options());
    services
        .models()
        .get_or_load(ModelKey::new(path, options), || {
            load_uncached(services, path)
        })
}

fn load_uncached(services: &NodeServices, path: &Path) -> Result<LoadedCheckpoint, NodesError> {
    let checkpoint = Checkpoint::open(path).map_err(|source| NodesError::Detect {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let detection = checkpoint.detection().clone();
    let plan = services
        .planner()
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
            weights: load_component(services, &checkpoint, unet_plan)?,
            plan: unet_plan.clone(),
            loras: Vec::new(),
        });
    }
    let mut encoders = Vec::new();
    for &kind in encoder_order(detection.architecture) {
        if let Some(encoder_plan) = plan.component(kind) {
            encoders.push(TextEncoderWeights {
                kind,
                weights: load_component(services, &checkpoint, encoder_plan)?,
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
            weights: load_component(services, &checkpoint, vae_plan)?,
            plan: vae_plan.clone(),
            latent_channels: detection
                .component(ComponentKind::Vae)
                .and_then(|c| c.facts.get("latent_channels").copied())
                .map_or(4, |c| c as usize),
        }),
        None => None,
    };
    Ok(LoadedCheckpoint { model, clip, vae })
}
