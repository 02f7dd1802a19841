//! Diffusers-format UNets (`UNet2DConditionModel`: `down_blocks.`, `mid_block.`, `up_blocks.`)
//! mapped to LDM naming. This is ComfyUI's `utils.py: unet_to_diffusers` inverted, with the block
//! structure read from the keys instead of from a config.

use crate::component::add_scaled_fp8_marker;
use crate::detector::{DiffusionDetector, FoundDiffusion};
use crate::state_dict::StateDict;
use crate::{unet, DetectError, KeyMap, KeySource, Layout};

/// A UNet in diffusers naming.
pub(crate) struct DiffusersUnet;

impl DiffusionDetector for DiffusersUnet {
    fn describe(&self) -> &'static str {
        "diffusers UNet"
    }

    fn matches(&self, sd: &StateDict<'_>, prefix: &str) -> bool {
        [
            "conv_in.weight",
            "down_blocks.0.resnets.0.conv1.weight",
            "time_embedding.linear_1.weight",
        ]
        .iter()
        .all(|k| sd.contains(&format!("{prefix}{k}")))
    }

    fn detect(&self, sd: &StateDict<'_>, prefix: &str) -> Result<FoundDiffusion, DetectError> {
        let keys = key_map(sd, prefix);
        unet::classify(sd, prefix, keys, Layout::Diffusers)
    }
}

/// Resnet parameter names, diffusers → LDM.
const RESNET_RENAMES: &[(&str, &str)] = &[
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("time_emb_proj.", "emb_layers.1."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("conv_shortcut.", "skip_connection."),
];

/// How the rest of a key under a mapped block prefix is renamed.
#[derive(Clone, Copy)]
enum Inner {
    /// Same names in both layouts (attention blocks, convs, linears).
    Same,
    /// A resnet: see [`RESNET_RENAMES`].
    Resnet,
}

/// Diffusers block prefixes → LDM block prefixes, derived from the block counts in the file.
fn block_table(sd: &StateDict<'_>, prefix: &str) -> Vec<(String, String, Inner)> {
    let mut table: Vec<(String, String, Inner)> = [
        ("conv_in.", "input_blocks.0.0."),
        ("time_embedding.linear_1.", "time_embed.0."),
        ("time_embedding.linear_2.", "time_embed.2."),
        ("class_embedding.linear_1.", "label_emb.0.0."),
        ("class_embedding.linear_2.", "label_emb.0.2."),
        ("add_embedding.linear_1.", "label_emb.0.0."),
        ("add_embedding.linear_2.", "label_emb.0.2."),
        ("conv_norm_out.", "out.0."),
        ("conv_out.", "out.2."),
    ]
    .iter()
    .map(|(from, to)| (from.to_string(), to.to_string(), Inner::Same))
    .collect();

    let mut n = 1;
    for level in 0..sd.count_blocks(&format!("{prefix}down_blocks.")) {
        let down = format!("down_blocks.{level}.");
        for i in 0..sd.count_blocks(&format!("{prefix}{down}resnets.")) {
            table.push((
                format!("{down}resnets.{i}."),
                format!("input_blocks.{n}.0."),
                Inner::Resnet,
            ));
            table.push((
                format!("{down}attentions.{i}."),
                format!("input_blocks.{n}.1."),
                Inner::Same,
            ));
            n += 1;
        }
        let downsampler = format!("{down}downsamplers.0.conv.");
        if sd.any_with_prefix(&format!("{prefix}{downsampler}")) {
            table.push((downsampler, format!("input_blocks.{n}.0.op."), Inner::Same));
            n += 1;
        }
    }

    table.push((
        "mid_block.resnets.0.".into(),
        "middle_block.0.".into(),
        Inner::Resnet,
    ));
    let mut middle = 1;
    if sd.any_with_prefix(&format!("{prefix}mid_block.attentions.0.")) {
        table.push((
            "mid_block.attentions.0.".into(),
            "middle_block.1.".into(),
            Inner::Same,
        ));
        middle = 2;
    }
    table.push((
        "mid_block.resnets.1.".into(),
        format!("middle_block.{middle}."),
        Inner::Resnet,
    ));

    let mut n = 0;
    for level in 0..sd.count_blocks(&format!("{prefix}up_blocks.")) {
        let up = format!("up_blocks.{level}.");
        let resnets = sd.count_blocks(&format!("{prefix}{up}resnets."));
        for i in 0..resnets {
            table.push((
                format!("{up}resnets.{i}."),
                format!("output_blocks.{n}.0."),
                Inner::Resnet,
            ));
            let attention = format!("{up}attentions.{i}.");
            let has_attention = sd.any_with_prefix(&format!("{prefix}{attention}"));
            table.push((attention, format!("output_blocks.{n}.1."), Inner::Same));
            if i + 1 == resnets {
                let slot = if has_attention { 2 } else { 1 };
                table.push((
                    format!("{up}upsamplers.0.conv."),
                    format!("output_blocks.{n}.{slot}.conv."),
                    Inner::Same,
                ));
            }
            n += 1;
        }
    }
    table
}

/// LDM name → diffusers source for every tensor the table covers.
pub(crate) fn key_map(sd: &StateDict<'_>, prefix: &str) -> KeyMap {
    let table = block_table(sd, prefix);
    let mut keys = KeyMap::new();
    for (name, entry) in sd.with_prefix(prefix) {
        let rest = &name[prefix.len()..];
        let Some((from, to, inner)) = table
            .iter()
            .find(|(from, _, _)| rest.starts_with(from.as_str()))
        else {
            continue;
        };
        let tail = &rest[from.len()..];
        let renamed = match inner {
            Inner::Same => Some(tail.to_string()),
            Inner::Resnet => RESNET_RENAMES
                .iter()
                .find_map(|(d, l)| tail.strip_prefix(d).map(|param| format!("{l}{param}"))),
        };
        if let Some(renamed) = renamed {
            keys.insert(
                format!("{to}{renamed}"),
                KeySource::identity(entry.file, name),
            );
        }
    }
    add_scaled_fp8_marker(&mut keys, sd, prefix);
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::unet::UnetSpec;
    use crate::testing::{assert_consistent, detect_keys, internal_names};
    use crate::{Architecture, ComponentKind, Prediction};

    fn same_internal_names_as_ldm(spec: &UnetSpec) {
        let diffusers = spec.diffusers();
        let detection = detect_keys(&diffusers).unwrap();
        assert_consistent(&detection, &[&diffusers.tensors()]);
        assert_eq!(detection.unclaimed_keys, 0);
        let from_ldm = detect_keys(&spec.ldm()).unwrap();
        assert_eq!(
            internal_names(&detection, ComponentKind::DiffusionModel),
            internal_names(&from_ldm, ComponentKind::DiffusionModel)
        );
        let (a, b) = (
            detection.component(ComponentKind::DiffusionModel).unwrap(),
            from_ldm.component(ComponentKind::DiffusionModel).unwrap(),
        );
        assert_eq!(a.facts, b.facts);
        assert_eq!(a.params, b.params);
        assert_eq!(a.layout, Layout::Diffusers);
        assert_eq!(detection.architecture, from_ldm.architecture);
        assert_eq!(detection.variant, from_ldm.variant);
    }

    #[test]
    fn diffusers_sd15_maps_onto_ldm_names() {
        same_internal_names_as_ldm(&UnetSpec::sd15());
        let d = detect_keys(&UnetSpec::sd15().diffusers()).unwrap();
        assert_eq!(
            (d.architecture, d.prediction),
            (Architecture::Sd1, Some(Prediction::Eps))
        );
    }

    #[test]
    fn diffusers_sd2_sdxl_and_refiner_map_onto_ldm_names() {
        same_internal_names_as_ldm(&UnetSpec::sd2());
        same_internal_names_as_ldm(&UnetSpec::sdxl());
        same_internal_names_as_ldm(&UnetSpec::refiner());
        let d = detect_keys(&UnetSpec::sdxl().diffusers()).unwrap();
        assert_eq!(
            (d.architecture, d.variant.as_str()),
            (Architecture::Sdxl, "base")
        );
    }

    #[test]
    fn diffusers_ssd1b_without_middle_attention_maps_sequentially() {
        let spec = UnetSpec {
            depth: vec![0, 2, 4],
            middle_depth: 0,
            ..UnetSpec::sdxl()
        };
        same_internal_names_as_ldm(&spec);
        let d = detect_keys(&spec.diffusers()).unwrap();
        assert_eq!(d.variant, "SSD-1B");
        let names = internal_names(&d, ComponentKind::DiffusionModel);
        assert!(names
            .iter()
            .any(|n| n.starts_with("middle_block.1.in_layers.")));
        assert!(!names.iter().any(|n| n.starts_with("middle_block.2.")));
    }
}
