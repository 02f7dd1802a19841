//! [`Model`], [`Clip`] and [`Vae`]: loaded checkpoint parts as nodes pass them around — the
//! planner-loaded weight stores plus what the checkpoint said about them (family, sampling,
//! latent format). Networks are built over the stores when a node runs; building is cheap
//! because layers hold weight names, not copies.
//!
//! Like ComfyUI's `ModelPatcher` clones, nodes never mutate these: `LoraLoader` and
//! `CLIPSetLastLayer` return new values that share the unpatched stores.
//!
//! Text-encoder weights sit behind a shared [`ReleasableStore`], so sampling a model whose plan
//! frees text encoders before diffusion can drop them for every clone at once; the next encode
//! loads them again.

use std::path::PathBuf;
use std::sync::Arc;

use kiln_detect::{Architecture, ComponentKind};
use kiln_graph::Value;
use kiln_runtime::{ComponentPlan, TextEncoderPolicy, WeightStore};
use kiln_sampling::{LatentFormat, ModelSampling};

use crate::error::NodesError;
use crate::releasable_store::ReleasableStore;

/// A diffusion model (`MODEL`).
#[derive(Clone, Debug)]
pub struct Model {
    /// The checkpoint it came from.
    pub source: PathBuf,
    /// The model family.
    pub architecture: Architecture,
    /// Its noise schedule and prediction type.
    pub sampling: ModelSampling,
    /// How its latents are scaled for sampling.
    pub latent_format: LatentFormat,
    /// The diffusion model's weights (LoRA-merged when [`Self::loras`] is not empty).
    pub weights: Arc<WeightStore>,
    /// How the weights were planned (device, dtypes, attention).
    pub plan: ComponentPlan,
    /// LoRAs merged into [`Self::weights`], as `(file, strength)`, in application order.
    pub loras: Vec<(PathBuf, f64)>,
    /// Whether text encoders are freed before this model samples (the policy of the plan it
    /// was loaded with).
    pub text_encoders: TextEncoderPolicy,
    /// Why the planner chose [`Self::text_encoders`].
    pub text_encoders_reason: String,
    /// `DifferentialDiffusion`'s strength: when set, a latent's noise mask is thresholded
    /// at every step by how far sampling has got (ComfyUI's `denoise_mask_function`).
    pub differential_diffusion: Option<f64>,
}

impl Model {
    /// ComfyUI's type name.
    pub const TYPE: &'static str = "MODEL";

    /// Wraps the model as a node value.
    pub fn into_value(self) -> Value {
        Value::object(Self::TYPE, self)
    }
}

/// One text encoder of a [`Clip`].
#[derive(Clone, Debug)]
pub struct TextEncoderWeights {
    /// Which encoder (`clip_l`, `clip_g`, `openclip_h`, `t5xxl`).
    pub kind: ComponentKind,
    /// The file its weights came from (a `CLIP` of `DualCLIPLoader` mixes files).
    pub source: PathBuf,
    /// Its weights in transformers naming, shared by every clone of the `CLIP` (and the model
    /// cache); released before sampling under `TextEncoderPolicy::FreeBeforeDiffusion`.
    pub store: Arc<ReleasableStore>,
    /// How they were planned.
    pub plan: ComponentPlan,
}

impl TextEncoderWeights {
    /// The weights, loaded again from their file when they were released.
    pub fn weights(&self) -> Result<Arc<WeightStore>, NodesError> {
        self.store.get()
    }

    /// Whether the weights are in memory now.
    pub fn is_loaded(&self) -> bool {
        self.store.is_loaded()
    }
}

/// The text encoders of a checkpoint (or of the files a CLIP loader joined) plus the tokenizer
/// settings (`CLIP`).
#[derive(Clone, Debug)]
pub struct Clip {
    /// The checkpoint it came from (the first file for a CLIP loader's set).
    pub source: PathBuf,
    /// The family the encoders belong to (decides how their outputs combine): `Sd1`, `Sd2`,
    /// `Sdxl`, `SdxlRefiner`, `Sd3` (any of CLIP-L, CLIP-G, T5-XXL) or `Flux` (CLIP-L + T5-XXL).
    pub architecture: Architecture,
    /// The encoders, in ComfyUI's order (`clip_l`, `clip_g`, `openclip_h`, `t5xxl`).
    pub encoders: Vec<TextEncoderWeights>,
    /// `CLIPSetLastLayer`'s `stop_at_clip_layer` (`-1` = last layer), if set.
    pub stop_at_layer: Option<i64>,
    /// LoRAs merged into the encoders, as `(file, strength)`.
    pub loras: Vec<(PathBuf, f64)>,
}

impl Clip {
    /// ComfyUI's type name.
    pub const TYPE: &'static str = "CLIP";

    /// Wraps the encoders as a node value.
    pub fn into_value(self) -> Value {
        Value::object(Self::TYPE, self)
    }

    /// The encoder of `kind`, if the set has one.
    pub fn encoder(&self, kind: ComponentKind) -> Option<&TextEncoderWeights> {
        self.encoders.iter().find(|encoder| encoder.kind == kind)
    }
}

/// An AutoencoderKL (`VAE`).
#[derive(Clone, Debug)]
pub struct Vae {
    /// The file it came from.
    pub source: PathBuf,
    /// Its weights in LDM naming.
    pub weights: Arc<WeightStore>,
    /// How they were planned.
    pub plan: ComponentPlan,
    /// Latent channels (4 or 16).
    pub latent_channels: usize,
}

impl Vae {
    /// ComfyUI's type name.
    pub const TYPE: &'static str = "VAE";

    /// Pixels per latent cell in each direction.
    pub const DOWNSCALE_RATIO: usize = 8;

    /// Wraps the VAE as a node value.
    pub fn into_value(self) -> Value {
        Value::object(Self::TYPE, self)
    }
}
