//! The detector registries: every layout Kiln recognises is one struct implementing one of two
//! traits, listed once here. Adding a layout touches its own file and one line below.

use crate::state_dict::StateDict;
use crate::{Architecture, Component, DetectError, Prediction};

/// A diffusion model found in a state dict.
pub(crate) struct FoundDiffusion {
    pub(crate) component: Component,
    pub(crate) architecture: Architecture,
    pub(crate) variant: String,
    pub(crate) prediction: Prediction,
    pub(crate) notes: Vec<String>,
}

/// A text encoder or VAE found in a state dict.
pub(crate) struct FoundComponent {
    pub(crate) component: Component,
    /// The architecture a file holding only this component has.
    pub(crate) standalone: Architecture,
    /// The variant such a file has.
    pub(crate) variant: String,
    pub(crate) notes: Vec<String>,
}

/// What a component detector saw: a usable component, or a recognisable fragment that is not
/// one (reported when nothing usable is found).
pub(crate) enum Finding {
    Component(FoundComponent),
    Fragment(String),
}

/// One diffusion-model layout (LDM UNet, diffusers UNet, SAI MMDiT, BFL Flux, …).
pub(crate) trait DiffusionDetector: Sync {
    /// The layout's name in messages (`LDM UNet`).
    fn describe(&self) -> &'static str;
    /// True when the layout's marker tensors are under `prefix`.
    fn matches(&self, sd: &StateDict<'_>, prefix: &str) -> bool;
    /// Maps the layout to internal naming and classifies it. Called only after `matches`.
    fn detect(&self, sd: &StateDict<'_>, prefix: &str) -> Result<FoundDiffusion, DetectError>;
}

/// One text-encoder or VAE layout. Finds every instance in a state dict, whatever its prefix.
pub(crate) trait ComponentDetector: Sync {
    /// The layout's name in messages.
    fn describe(&self) -> &'static str;
    /// Every instance of this layout in the state dict.
    fn find(&self, sd: &StateDict<'_>) -> Result<Vec<Finding>, DetectError>;
}

/// Diffusion-model layouts, tried in order at each candidate prefix.
pub(crate) static DIFFUSION_DETECTORS: &[&dyn DiffusionDetector] = &[
    &crate::unet::LdmUnet,
    &crate::unet_diffusers::DiffusersUnet,
    &crate::mmdit::SaiMmdit,
    &crate::mmdit_diffusers::DiffusersMmdit,
    &crate::flux::BflFlux,
    &crate::flux_diffusers::DiffusersFlux,
];

/// Text-encoder and VAE layouts.
pub(crate) static COMPONENT_DETECTORS: &[&dyn ComponentDetector] = &[
    &crate::clip::HfClip,
    &crate::open_clip::OpenClipText,
    &crate::t5::T5Encoder,
    &crate::t5_gguf::LlamaCppT5Encoder,
    &crate::vae::LdmVae,
    &crate::vae_diffusers::DiffusersVae,
];

/// Every prefix `P` such that `P + suffix` is a tensor name, in name order.
pub(crate) fn prefixes_of(sd: &StateDict<'_>, suffix: &str) -> Vec<String> {
    let mut found: Vec<String> = sd
        .iter()
        .filter_map(|(name, _)| name.strip_suffix(suffix).map(str::to_string))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// `base`, or `base (non-standard width N)` when the widths are not the released model's.
pub(crate) fn variant_name(base: &str, standard_width: bool, width: u64) -> String {
    if standard_width {
        base.to_string()
    } else {
        format!("{base} (non-standard width {width})")
    }
}

/// Where a component sits, for messages: `file` or `file` under `prefix`.
pub(crate) fn location(sd: &StateDict<'_>, prefix: &str) -> String {
    if prefix.is_empty() {
        sd.label().display().to_string()
    } else {
        format!("{} under `{prefix}`", sd.label().display())
    }
}

/// The names of every layout Kiln recognises, diffusion models first.
pub fn supported_layouts() -> impl Iterator<Item = &'static str> {
    DIFFUSION_DETECTORS
        .iter()
        .map(|d| d.describe())
        .chain(COMPONENT_DETECTORS.iter().map(|d| d.describe()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_layout_is_listed_once_by_name() {
        let names: Vec<&str> = supported_layouts().collect();
        assert_eq!(
            names.len(),
            DIFFUSION_DETECTORS.len() + COMPONENT_DETECTORS.len()
        );
        assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), names.len());
        assert_eq!(names[0], "LDM UNet");
    }
}
