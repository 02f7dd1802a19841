//! open_clip text towers (`transformer.resblocks.N.attn.in_proj_weight`: SD2's OpenCLIP-H,
//! SDXL's CLIP-G) mapped to transformers naming, as ComfyUI's `utils.py:
//! clip_text_transformers_convert` does: the fused q/k/v projection is sliced in three and
//! `text_projection` (stored `[in, out]`) is transposed.

use crate::component::add_scaled_fp8_marker;
use crate::detector::{prefixes_of, ComponentDetector, Finding};
use crate::state_dict::StateDict;
use crate::{clip, DetectError, KeyMap, KeySource, KeyTransform, Layout};

/// An open_clip text tower, anywhere in the file except a vision tower.
pub(crate) struct OpenClipText;

impl ComponentDetector for OpenClipText {
    fn describe(&self) -> &'static str {
        "CLIP text encoder (open_clip naming)"
    }

    fn find(&self, sd: &StateDict<'_>) -> Result<Vec<Finding>, DetectError> {
        prefixes_of(sd, "transformer.resblocks.0.ln_1.weight")
            .into_iter()
            .filter(|prefix| !prefix.ends_with("visual."))
            .map(|prefix| clip::finish(sd, &prefix, key_map(sd, &prefix), Layout::OpenClip))
            .collect()
    }
}

/// Per-layer renames, open_clip → transformers.
const LAYER_RENAMES: &[(&str, &str)] = &[
    ("ln_1.", "layer_norm1."),
    ("ln_2.", "layer_norm2."),
    ("mlp.c_fc.", "mlp.fc1."),
    ("mlp.c_proj.", "mlp.fc2."),
    ("attn.out_proj.", "self_attn.out_proj."),
];

/// Top-level renames by prefix, open_clip → transformers (parameters and scaled-fp8 scales).
const TOP_RENAMES: &[(&str, &str)] = &[
    ("token_embedding.", "text_model.embeddings.token_embedding."),
    ("ln_final.", "text_model.final_layer_norm."),
    ("text_projection.", "text_projection."),
];

const FUSED_PROJECTIONS: [&str; 3] = ["q_proj", "k_proj", "v_proj"];

/// Transformers name → open_clip source for every tensor under `prefix`.
pub(crate) fn key_map(sd: &StateDict<'_>, prefix: &str) -> KeyMap {
    let mut keys = KeyMap::new();
    for (name, entry) in sd.with_prefix(prefix) {
        let rest = &name[prefix.len()..];
        let source = |transform| KeySource::new(entry.file, name, transform);
        let top = match rest {
            "positional_embedding" => Some((
                "text_model.embeddings.position_embedding.weight".to_string(),
                KeyTransform::Identity,
            )),
            // open_clip applies `text_projection` as `x @ P`; transformers stores its transpose.
            "text_projection" => Some((
                "text_projection.weight".to_string(),
                KeyTransform::Transpose,
            )),
            _ => TOP_RENAMES.iter().find_map(|(from, to)| {
                rest.strip_prefix(from)
                    .map(|param| (format!("{to}{param}"), KeyTransform::Identity))
            }),
        };
        if let Some((internal, transform)) = top {
            keys.insert(internal, source(transform));
            continue;
        }
        let Some(block) = rest.strip_prefix("transformer.resblocks.") else {
            continue;
        };
        let Some((layer, param)) = block.split_once('.') else {
            continue;
        };
        if layer.parse::<u32>().is_err() {
            continue;
        }
        let to = format!("text_model.encoder.layers.{layer}.");
        if let Some(kind) = param.strip_prefix("attn.in_proj_") {
            for (part, projection) in FUSED_PROJECTIONS.iter().enumerate() {
                let transform = KeyTransform::SliceRows {
                    part,
                    parts: FUSED_PROJECTIONS.len(),
                };
                keys.insert(
                    format!("{to}self_attn.{projection}.{kind}"),
                    source(transform),
                );
            }
        } else if let Some((from, renamed)) = LAYER_RENAMES
            .iter()
            .find(|(from, _)| param.starts_with(from))
        {
            keys.insert(
                format!("{to}{renamed}{}", &param[from.len()..]),
                source(KeyTransform::Identity),
            );
        }
    }
    add_scaled_fp8_marker(&mut keys, sd, prefix);
    keys
}

#[cfg(test)]
mod tests {
    use crate::testing::encoders::ClipSpec;
    use crate::testing::{assert_consistent, detect_keys, internal_names};
    use crate::{Architecture, ComponentKind, KeyTransform, Layout};

    #[test]
    fn open_clip_g_and_h_map_onto_transformers_names() {
        for (spec, arch, kind) in [
            (
                ClipSpec::h(),
                Architecture::OpenClipH,
                ComponentKind::OpenClipH,
            ),
            (ClipSpec::g(), Architecture::ClipG, ComponentKind::ClipG),
        ] {
            let keys = spec.open_clip();
            let d = detect_keys(&keys).unwrap();
            assert_consistent(&d, &[&keys.tensors()]);
            assert_eq!(d.architecture, arch);
            assert_eq!(d.unclaimed_keys, 1, "logit_scale is not loaded");
            let hf = detect_keys(&spec.hf()).unwrap();
            assert_eq!(internal_names(&d, kind), internal_names(&hf, kind));
            let (a, b) = (d.component(kind).unwrap(), hf.component(kind).unwrap());
            assert_eq!(a.layout, Layout::OpenClip);
            assert_eq!((a.params, &a.facts), (b.params, &b.facts));
            assert_eq!(
                a.keys["text_model.encoder.layers.3.self_attn.v_proj.bias"].transform,
                KeyTransform::SliceRows { part: 2, parts: 3 }
            );
            assert_eq!(
                a.keys["text_projection.weight"].transform,
                KeyTransform::Transpose
            );
        }
    }

    #[test]
    fn vision_towers_are_not_text_encoders() {
        let keys = ClipSpec::h().open_clip().prefixed("embedder.model.visual.");
        assert!(detect_keys(&keys).is_err());
    }
}
