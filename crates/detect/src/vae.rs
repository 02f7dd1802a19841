//! AutoencoderKL VAEs in LDM naming (`encoder.down.N.block.M`, `decoder.up.N`, `mid.attn_1`),
//! standalone or under `first_stage_model.` / `vae.`, and the classification shared with the
//! diffusers layout: latent channels = `decoder.conv_in.weight.shape[1]` (ComfyUI `sd.py: VAE`).

use std::collections::BTreeMap;

use crate::component::{self, identity_map};
use crate::detector::{
    location, prefixes_of, variant_name, ComponentDetector, Finding, FoundComponent,
};
use crate::mapped::MappedView;
use crate::state_dict::StateDict;
use crate::{Architecture, ComponentKind, DetectError, KeyMap, Layout};

const VAE_MODULES: &[&str] = &["encoder.", "decoder.", "quant_conv.", "post_quant_conv."];
/// The released SD/SDXL/SD3/Flux VAEs all start at 128 channels.
const STANDARD_BASE_CHANNELS: u64 = 128;

/// An LDM AutoencoderKL, anywhere in the file.
pub(crate) struct LdmVae;

impl ComponentDetector for LdmVae {
    fn describe(&self) -> &'static str {
        "AutoencoderKL (LDM naming)"
    }

    fn find(&self, sd: &StateDict<'_>) -> Result<Vec<Finding>, DetectError> {
        Ok(vae_prefixes(sd)
            .into_iter()
            .filter(|p| {
                sd.any_with_prefix(&format!("{p}encoder.down."))
                    || sd.any_with_prefix(&format!("{p}decoder.up."))
            })
            .map(|prefix| {
                finish(
                    sd,
                    &prefix,
                    identity_map(sd, &prefix, VAE_MODULES),
                    Layout::Ldm,
                )
            })
            .collect())
    }
}

/// Every prefix holding a VAE encoder or decoder stem.
pub(crate) fn vae_prefixes(sd: &StateDict<'_>) -> Vec<String> {
    let mut prefixes = prefixes_of(sd, "decoder.conv_in.weight");
    prefixes.extend(prefixes_of(sd, "encoder.conv_in.weight"));
    prefixes.sort();
    prefixes.dedup();
    prefixes
}

/// Classifies a VAE whose keys are in LDM naming; an encoder without a decoder is a fragment.
pub(crate) fn finish(sd: &StateDict<'_>, prefix: &str, keys: KeyMap, layout: Layout) -> Finding {
    let view = MappedView::new(&keys, sd);
    let Some(latent) = view.dim("decoder.conv_in.weight", 1) else {
        let channels = view.dim("encoder.conv_out.weight", 0).map_or(0, |c| c / 2);
        return Finding::Fragment(format!(
            "a {channels}-channel VAE-like encoder but no decoder at {}",
            location(sd, prefix)
        ));
    };
    let base = view
        .dim("encoder.conv_in.weight", 0)
        .or_else(|| view.dim("decoder.conv_out.weight", 1))
        .unwrap_or(0);
    let mut facts = BTreeMap::new();
    facts.insert("latent_channels".into(), latent);
    facts.insert("base_channels".into(), base);
    facts.insert("levels".into(), view.count_blocks("decoder.up.") as u64);
    facts.insert(
        "quant_conv".into(),
        u64::from(view.contains("post_quant_conv.weight")),
    );
    let mut notes = Vec::new();
    if !view.contains("encoder.conv_in.weight") {
        notes.push(format!(
            "the VAE at {} has no encoder: it can decode but not encode",
            location(sd, prefix)
        ));
    }
    let component = component::build(ComponentKind::Vae, layout, prefix, keys, facts, sd);
    Finding::Component(FoundComponent {
        component,
        standalone: Architecture::Vae,
        variant: variant_name(
            &format!("{latent}-channel"),
            base == STANDARD_BASE_CHANNELS,
            base,
        ),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use crate::testing::vae::VaeSpec;
    use crate::testing::{assert_consistent, detect_keys};
    use crate::{Architecture, ComponentKind, DetectError};

    #[test]
    fn four_and_sixteen_channel_vaes() {
        for (spec, variant) in [
            (VaeSpec::sd(), "4-channel"),
            (VaeSpec::flux(), "16-channel"),
        ] {
            let keys = spec.ldm();
            let d = detect_keys(&keys).unwrap();
            assert_consistent(&d, &[&keys.tensors()]);
            assert_eq!(
                (d.architecture, d.variant.as_str(), d.prediction),
                (Architecture::Vae, variant, None)
            );
            let c = d.component(ComponentKind::Vae).unwrap();
            assert_eq!(c.facts["latent_channels"], spec.latent);
            assert_eq!(c.facts["levels"], 4);
            assert_eq!(d.unclaimed_keys, 0);
        }
    }

    #[test]
    fn sd_vae_has_248_tensors_like_the_released_one() {
        assert_eq!(VaeSpec::sd().ldm().len(), 248);
    }

    #[test]
    fn encoder_without_decoder_is_reported() {
        let mut keys = VaeSpec::sd().ldm().prefixed("first_stage_model.");
        keys.0.retain(|(n, _)| !n.contains("decoder."));
        match detect_keys(&keys).unwrap_err() {
            DetectError::Unrecognised { recognised, .. } => {
                assert!(
                    recognised[0].contains("4-channel VAE-like encoder but no decoder"),
                    "{recognised:?}"
                );
                assert!(
                    recognised[0].contains("first_stage_model."),
                    "{recognised:?}"
                );
            }
            other => panic!("{other}"),
        }
    }
}
