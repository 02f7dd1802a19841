//! CLIP text encoders in Hugging Face transformers naming (`text_model.encoder.layers.N`), and the
//! classification by layer count shared with open_clip layouts: 12 layers = CLIP-L,
//! 24 = OpenCLIP-H, 32 = CLIP-G (ComfyUI's `detect_te_model` probes layers 0, 22 and 30).

use std::collections::BTreeMap;

use crate::component::{self, add_scaled_fp8_marker};
use crate::detector::{
    location, prefixes_of, variant_name, ComponentDetector, Finding, FoundComponent,
};
use crate::mapped::MappedView;
use crate::state_dict::StateDict;
use crate::{Architecture, ComponentKind, DetectError, KeyMap, KeySource, KeyTransform, Layout};

/// The CLIP models Kiln knows, by text-transformer depth.
struct ClipModel {
    layers: u64,
    kind: ComponentKind,
    architecture: Architecture,
    name: &'static str,
    width: u64,
}

const CLIP_MODELS: &[ClipModel] = &[
    ClipModel {
        layers: 12,
        kind: ComponentKind::ClipL,
        architecture: Architecture::ClipL,
        name: "ViT-L/14",
        width: 768,
    },
    ClipModel {
        layers: 24,
        kind: ComponentKind::OpenClipH,
        architecture: Architecture::OpenClipH,
        name: "ViT-H/14",
        width: 1024,
    },
    ClipModel {
        layers: 32,
        kind: ComponentKind::ClipG,
        architecture: Architecture::ClipG,
        name: "ViT-bigG/14",
        width: 1280,
    },
];

/// Transformers' non-persistent buffer that some files still carry; never loaded.
const POSITION_IDS: &str = "text_model.embeddings.position_ids";

/// A CLIP text model in transformers naming, anywhere in the file.
pub(crate) struct HfClip;

impl ComponentDetector for HfClip {
    fn describe(&self) -> &'static str {
        "CLIP text encoder (transformers naming)"
    }

    fn find(&self, sd: &StateDict<'_>) -> Result<Vec<Finding>, DetectError> {
        let mut found = Vec::new();
        for prefix in prefixes_of(sd, "text_model.encoder.layers.0.mlp.fc1.weight") {
            found.push(finish(
                sd,
                &prefix,
                map_current(sd, &prefix),
                Layout::Transformers,
            )?);
        }
        // Old SD1 checkpoints saved CLIP-L before transformers nested it under `text_model.`.
        for prefix in prefixes_of(sd, "encoder.layers.0.mlp.fc1.weight") {
            if prefix.ends_with("transformer.")
                && !sd.any_with_prefix(&format!("{prefix}text_model."))
            {
                found.push(finish(
                    sd,
                    &prefix,
                    map_unnested(sd, &prefix),
                    Layout::Transformers,
                )?);
            }
        }
        Ok(found)
    }
}

fn map_current(sd: &StateDict<'_>, prefix: &str) -> KeyMap {
    let mut keys = KeyMap::new();
    for (name, entry) in sd.with_prefix(prefix) {
        let rest = &name[prefix.len()..];
        // `text_projection.` also covers scaled-fp8 `text_projection.scale_weight`.
        if (rest.starts_with("text_model.") && rest != POSITION_IDS)
            || rest.starts_with("text_projection.")
        {
            keys.insert(rest.to_string(), KeySource::identity(entry.file, name));
        } else if rest == "text_projection" {
            // Saved by old ComfyUI CLIPSave nodes in open_clip's [in, out] orientation.
            keys.insert(
                "text_projection.weight".into(),
                KeySource::new(entry.file, name, KeyTransform::Transpose),
            );
        }
    }
    add_scaled_fp8_marker(&mut keys, sd, prefix);
    keys
}

fn map_unnested(sd: &StateDict<'_>, prefix: &str) -> KeyMap {
    let mut keys = KeyMap::new();
    for (name, entry) in sd.with_prefix(prefix) {
        let rest = &name[prefix.len()..];
        let internal = format!("text_model.{rest}");
        let wanted = ["embeddings.", "encoder.", "final_layer_norm."]
            .iter()
            .any(|m| rest.starts_with(m));
        if wanted && internal != POSITION_IDS {
            keys.insert(internal, KeySource::identity(entry.file, name));
        }
    }
    add_scaled_fp8_marker(&mut keys, sd, prefix);
    keys
}

/// Classifies a CLIP text model whose keys are already in transformers naming.
pub(crate) fn finish(
    sd: &StateDict<'_>,
    prefix: &str,
    keys: KeyMap,
    layout: Layout,
) -> Result<Finding, DetectError> {
    let view = MappedView::new(&keys, sd);
    let layers = view.count_blocks("text_model.encoder.layers.") as u64;
    let Some(model) = CLIP_MODELS.iter().find(|m| m.layers == layers) else {
        return Err(DetectError::Unrecognised {
            file: sd.label().to_path_buf(),
            recognised: vec![format!("a CLIP text encoder with {layers} layers at {}", location(sd, prefix))],
            unrecognised_summary: format!(
                "{layers} layers matches no supported CLIP (CLIP-L has 12, OpenCLIP-H 24, CLIP-G 32)"
            ),
        });
    };
    let hidden = view
        .dim("text_model.embeddings.token_embedding.weight", 1)
        .unwrap_or(0);
    let mut facts = BTreeMap::new();
    facts.insert("hidden_size".into(), hidden);
    facts.insert("layers".into(), layers);
    let extra = [
        (
            "vocab_size",
            "text_model.embeddings.token_embedding.weight",
            0,
        ),
        (
            "max_positions",
            "text_model.embeddings.position_embedding.weight",
            0,
        ),
        (
            "intermediate_size",
            "text_model.encoder.layers.0.mlp.fc1.weight",
            0,
        ),
        ("projection_dim", "text_projection.weight", 0),
    ];
    for (fact, tensor, dim) in extra {
        if let Some(value) = view.dim(tensor, dim) {
            facts.insert(fact.into(), value);
        }
    }
    let component = component::build(model.kind, layout, prefix, keys, facts, sd);
    Ok(Finding::Component(FoundComponent {
        component,
        standalone: model.architecture,
        variant: variant_name(model.name, hidden == model.width, hidden),
        notes: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use crate::testing::encoders::{position_ids, ClipSpec};
    use crate::testing::{assert_consistent, detect_keys};
    use crate::{
        detect, Architecture, ComponentKind, DetectError, FileTensors, KeyTransform, Layout,
    };

    #[test]
    fn standalone_clip_by_layer_count() {
        for (spec, arch, kind) in [
            (ClipSpec::l(), Architecture::ClipL, ComponentKind::ClipL),
            (
                ClipSpec::h(),
                Architecture::OpenClipH,
                ComponentKind::OpenClipH,
            ),
            (ClipSpec::g(), Architecture::ClipG, ComponentKind::ClipG),
        ] {
            let keys = spec.hf();
            let d = detect_keys(&keys).unwrap();
            assert_consistent(&d, &[&keys.tensors()]);
            assert_eq!((d.architecture, d.prediction), (arch, None));
            let c = d.component(kind).unwrap();
            assert_eq!(c.layout, Layout::Transformers);
            assert_eq!(c.facts["layers"], spec.layers);
            assert_eq!(c.facts["hidden_size"], spec.width);
            assert!(!d.variant.contains("non-standard"), "{}", d.variant);
        }
    }

    #[test]
    fn position_ids_are_unclaimed_and_narrow_widths_are_named() {
        let spec = ClipSpec {
            width: 32,
            ..ClipSpec::l()
        };
        let mut tensors = spec.hf().tensors();
        tensors.push(position_ids(""));
        let d = detect(&[FileTensors::new("clip_l.safetensors".as_ref(), &tensors)]).unwrap();
        assert_eq!(d.unclaimed_keys, 1);
        assert_eq!(d.variant, "ViT-L/14 (non-standard width 32)");
    }

    #[test]
    fn other_layer_counts_are_unrecognised_naming_the_count() {
        let keys = ClipSpec {
            layers: 6,
            ..ClipSpec::l()
        }
        .hf();
        match detect_keys(&keys).unwrap_err() {
            DetectError::Unrecognised { recognised, .. } => {
                assert!(recognised[0].contains("6 layers"))
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn unnested_sd1_clip_gains_text_model_prefix() {
        let mut keys = ClipSpec::l().hf();
        for (name, _) in &mut keys.0 {
            *name = format!(
                "cond_stage_model.transformer.{}",
                name.trim_start_matches("text_model.")
            );
        }
        let d = detect_keys(&keys).unwrap();
        let c = d.component(ComponentKind::ClipL).unwrap();
        assert!(c
            .keys
            .contains_key("text_model.encoder.layers.11.mlp.fc2.bias"));
        assert_eq!(c.prefix, "cond_stage_model.transformer.");
        assert_eq!(d.unclaimed_keys, 0);
    }

    #[test]
    fn clipsave_text_projection_is_transposed() {
        let mut keys = ClipSpec::g().hf();
        for (name, _) in &mut keys.0 {
            if name == "text_projection.weight" {
                *name = "text_projection".into();
            }
        }
        let d = detect_keys(&keys).unwrap();
        let c = d.component(ComponentKind::ClipG).unwrap();
        assert_eq!(
            c.keys["text_projection.weight"].transform,
            KeyTransform::Transpose
        );
    }
}
