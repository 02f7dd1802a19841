//! Diffusers-format AutoencoderKL VAEs (`encoder.down_blocks.N.resnets.M`,
//! `decoder.mid_block.attentions.0.to_q`) mapped to LDM naming, as ComfyUI's
//! `diffusers_convert.py: convert_vae_state_dict` does, with the level count read from the keys.
//! Attention projections stored as linear `[out, in]` weights become 1×1 convolutions.

use crate::component::add_scaled_fp8_marker;
use crate::detector::{ComponentDetector, Finding};
use crate::state_dict::StateDict;
use crate::vae::{finish, vae_prefixes};
use crate::{DetectError, KeyMap, KeySource, KeyTransform, Layout};

/// A diffusers AutoencoderKL, anywhere in the file.
pub(crate) struct DiffusersVae;

impl ComponentDetector for DiffusersVae {
    fn describe(&self) -> &'static str {
        "AutoencoderKL (diffusers naming)"
    }

    fn find(&self, sd: &StateDict<'_>) -> Result<Vec<Finding>, DetectError> {
        Ok(vae_prefixes(sd)
            .into_iter()
            .filter(|p| {
                sd.any_with_prefix(&format!("{p}encoder.down_blocks."))
                    || sd.any_with_prefix(&format!("{p}decoder.up_blocks."))
            })
            .map(|prefix| finish(sd, &prefix, key_map(sd, &prefix), Layout::Diffusers))
            .collect())
    }
}

/// Attention parameter names, both diffusers generations → LDM.
const ATTENTION_RENAMES: &[(&str, &str)] = &[
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("query.", "q."),
    ("to_k.", "k."),
    ("key.", "k."),
    ("to_v.", "v."),
    ("value.", "v."),
    ("to_out.0.", "proj_out."),
    ("proj_attn.", "proj_out."),
];

/// The LDM name of one diffusers VAE tensor (relative to the VAE prefix), and whether it is an
/// attention projection weight (which may need reshaping to a 1×1 conv).
fn translate(rest: &str, up_levels: usize) -> Option<(String, bool)> {
    let resnet = |param: &str| param.replace("conv_shortcut.", "nin_shortcut.");
    for stack in ["encoder.", "decoder."] {
        let Some(inner) = rest.strip_prefix(stack) else {
            continue;
        };
        let translated = if let Some(x) = inner.strip_prefix("down_blocks.") {
            let (level, tail) = x.split_once('.')?;
            if let Some(t) = tail.strip_prefix("resnets.") {
                let (block, param) = t.split_once('.')?;
                format!("down.{level}.block.{block}.{}", resnet(param))
            } else {
                format!(
                    "down.{level}.downsample.{}",
                    tail.strip_prefix("downsamplers.0.")?
                )
            }
        } else if let Some(x) = inner.strip_prefix("up_blocks.") {
            let (level, tail) = x.split_once('.')?;
            let ldm_level = up_levels.checked_sub(level.parse::<usize>().ok()? + 1)?;
            if let Some(t) = tail.strip_prefix("resnets.") {
                let (block, param) = t.split_once('.')?;
                format!("up.{ldm_level}.block.{block}.{}", resnet(param))
            } else {
                format!(
                    "up.{ldm_level}.upsample.{}",
                    tail.strip_prefix("upsamplers.0.")?
                )
            }
        } else if let Some(t) = inner.strip_prefix("mid_block.resnets.") {
            let (index, param) = t.split_once('.')?;
            format!(
                "mid.block_{}.{}",
                index.parse::<usize>().ok()? + 1,
                resnet(param)
            )
        } else if let Some(t) = inner.strip_prefix("mid_block.attentions.0.") {
            let (from, to) = ATTENTION_RENAMES
                .iter()
                .find(|(from, _)| t.starts_with(from))?;
            let param = &t[from.len()..];
            let projection = *to != "norm." && param == "weight";
            return Some((format!("{stack}mid.attn_1.{to}{param}"), projection));
        } else if let Some(param) = inner.strip_prefix("conv_norm_out.") {
            format!("norm_out.{param}")
        } else if inner.starts_with("conv_in.") || inner.starts_with("conv_out.") {
            inner.to_string()
        } else {
            return None;
        };
        return Some((format!("{stack}{translated}"), false));
    }
    (rest.starts_with("quant_conv.") || rest.starts_with("post_quant_conv."))
        .then(|| (rest.to_string(), false))
}

/// LDM name → diffusers source for every VAE tensor under `prefix`.
pub(crate) fn key_map(sd: &StateDict<'_>, prefix: &str) -> KeyMap {
    let up_levels = sd.count_blocks(&format!("{prefix}decoder.up_blocks."));
    let mut keys = KeyMap::new();
    for (name, entry) in sd.with_prefix(prefix) {
        let Some((internal, projection)) = translate(&name[prefix.len()..], up_levels) else {
            continue;
        };
        let transform = if projection && entry.shape.len() == 2 {
            KeyTransform::LinearToConv1x1
        } else {
            KeyTransform::Identity
        };
        keys.insert(internal, KeySource::new(entry.file, name, transform));
    }
    add_scaled_fp8_marker(&mut keys, sd, prefix);
    keys
}

#[cfg(test)]
mod tests {
    use crate::testing::vae::VaeSpec;
    use crate::testing::{assert_consistent, detect_keys, internal_names};
    use crate::{ComponentKind, KeyTransform, Layout};

    #[test]
    fn diffusers_vae_maps_onto_ldm_names_and_shapes() {
        for spec in [
            VaeSpec::sd(),
            VaeSpec::flux(),
            VaeSpec {
                old_attention_names: true,
                ..VaeSpec::sd()
            },
        ] {
            let keys = spec.diffusers();
            let d = detect_keys(&keys).unwrap();
            assert_consistent(&d, &[&keys.tensors()]);
            assert_eq!(d.unclaimed_keys, 0);
            let ldm = detect_keys(&spec.ldm()).unwrap();
            assert_eq!(d.variant, ldm.variant);
            assert_eq!(
                internal_names(&d, ComponentKind::Vae),
                internal_names(&ldm, ComponentKind::Vae)
            );
            let (a, b) = (
                d.component(ComponentKind::Vae).unwrap(),
                ldm.component(ComponentKind::Vae).unwrap(),
            );
            assert_eq!(a.layout, Layout::Diffusers);
            assert_eq!((a.params, &a.facts), (b.params, &b.facts));
            assert_eq!(
                a.keys["decoder.mid.attn_1.q.weight"].transform,
                KeyTransform::LinearToConv1x1
            );
            assert_eq!(
                a.keys["decoder.mid.attn_1.q.bias"].transform,
                KeyTransform::Identity
            );
            assert_eq!(
                a.keys["decoder.up.3.upsample.conv.weight"].name,
                "decoder.up_blocks.0.upsamplers.0.conv.weight"
            );
        }
    }
}
