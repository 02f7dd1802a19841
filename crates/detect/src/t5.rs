//! T5 v1.1 XXL encoders in transformers naming (`encoder.block.N.layer.M`), standalone or under
//! `text_encoders.t5xxl.transformer.`. Rules follow ComfyUI's `sd.py: detect_te_model`: 24 blocks
//! with a gated feed-forward (`wi_0`/`wi_1`) and d_model 4096 is XXL, 2048 is XL. The same rules
//! classify llama.cpp-named GGUF encoders once `t5_gguf` has mapped their names.

use std::collections::BTreeMap;

use crate::component::{self, add_scaled_fp8_marker};
use crate::detector::{
    location, prefixes_of, variant_name, ComponentDetector, Finding, FoundComponent,
};
use crate::mapped::MappedView;
use crate::state_dict::StateDict;
use crate::{Architecture, ComponentKind, DetectError, KeyMap, KeySource, Layout};

const XXL_BLOCKS: u64 = 24;
const XXL_D_MODEL: u64 = 4096;
const XL_D_MODEL: u64 = 2048;

/// A T5 encoder, anywhere in the file.
pub(crate) struct T5Encoder;

impl ComponentDetector for T5Encoder {
    fn describe(&self) -> &'static str {
        "T5 encoder (transformers naming)"
    }

    fn find(&self, sd: &StateDict<'_>) -> Result<Vec<Finding>, DetectError> {
        prefixes_of(sd, "encoder.block.0.layer.0.SelfAttention.q.weight")
            .into_iter()
            .map(|prefix| {
                let keys = key_map(sd, &prefix);
                classify(sd, &prefix, keys, Layout::Transformers)
            })
            .collect()
    }
}

fn key_map(sd: &StateDict<'_>, prefix: &str) -> KeyMap {
    let mut keys = KeyMap::new();
    for (name, entry) in sd.with_prefix(prefix) {
        let rest = &name[prefix.len()..];
        if rest.starts_with("encoder.") || rest == "shared.weight" {
            keys.insert(rest.to_string(), KeySource::identity(entry.file, name));
        }
    }
    // The embedding is tied; files that kept only the encoder's copy serve it as `shared`.
    if !keys.contains_key("shared.weight") {
        if let Some(source) = keys.remove("encoder.embed_tokens.weight") {
            keys.insert("shared.weight".into(), source);
        }
    }
    add_scaled_fp8_marker(&mut keys, sd, prefix);
    keys
}

/// Classifies the T5 encoder whose tensors under `prefix` (stored in `layout`) `keys` maps to
/// transformers names: only v1.1 XXL is supported.
pub(crate) fn classify(
    sd: &StateDict<'_>,
    prefix: &str,
    keys: KeyMap,
    layout: Layout,
) -> Result<Finding, DetectError> {
    let view = MappedView::new(&keys, sd);
    let blocks = view.count_blocks("encoder.block.") as u64;
    let gated = view.contains("encoder.block.0.layer.1.DenseReluDense.wi_1.weight");
    let d_model = view
        .dim("encoder.block.0.layer.0.SelfAttention.q.weight", 1)
        .unwrap_or(0);
    let unsupported = |model: String, reason: &str| DetectError::Unsupported {
        file: sd.label().to_path_buf(),
        model: format!("{model} at {}", location(sd, prefix)),
        reason: reason.to_string(),
    };
    if blocks != XXL_BLOCKS {
        return Err(unsupported(
            format!("a T5 encoder with {blocks} blocks"),
            "only T5 v1.1 XXL (24 blocks) is supported",
        ));
    }
    if !gated {
        return Err(unsupported(
            "T5 v1.0 (non-gated feed-forward)".into(),
            "only T5 v1.1 XXL is supported",
        ));
    }
    if d_model == XL_D_MODEL {
        return Err(unsupported(
            "T5 v1.1 XL (d_model 2048)".into(),
            "only T5 v1.1 XXL is supported",
        ));
    }
    let mut facts = BTreeMap::new();
    facts.insert("d_model".into(), d_model);
    facts.insert("layers".into(), blocks);
    let extra = [
        (
            "d_ff",
            "encoder.block.0.layer.1.DenseReluDense.wi_0.weight",
            0,
        ),
        ("vocab_size", "shared.weight", 0),
        (
            "num_heads",
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            1,
        ),
    ];
    for (fact, tensor, dim) in extra {
        if let Some(value) = view.dim(tensor, dim) {
            facts.insert(fact.into(), value);
        }
    }
    let component = component::build(ComponentKind::T5xxl, layout, prefix, keys, facts, sd);
    Ok(Finding::Component(FoundComponent {
        component,
        standalone: Architecture::T5xxl,
        variant: variant_name("v1.1-xxl", d_model == XXL_D_MODEL, d_model),
        notes: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use kiln_weights::StorageDType;

    use crate::testing::encoders::T5Spec;
    use crate::testing::{assert_consistent, detect_keys, tensor_dt};
    use crate::{detect, Architecture, ComponentKind, DetectError, FileTensors};

    #[test]
    fn t5xxl_standalone_with_facts() {
        let keys = T5Spec::xxl().hf();
        let d = detect_keys(&keys).unwrap();
        assert_consistent(&d, &[&keys.tensors()]);
        assert_eq!(
            (d.architecture, d.variant.as_str()),
            (Architecture::T5xxl, "v1.1-xxl")
        );
        let c = d.component(ComponentKind::T5xxl).unwrap();
        assert_eq!(
            (c.facts["d_model"], c.facts["layers"], c.facts["num_heads"]),
            (4096, 24, 64)
        );
        assert_eq!(d.unclaimed_keys, 0);
    }

    #[test]
    fn t5xl_and_non_gated_t5_are_unsupported() {
        let err = detect_keys(&T5Spec::xl().hf()).unwrap_err();
        assert!(
            matches!(&err, DetectError::Unsupported { model, .. } if model.contains("XL (d_model 2048)")),
            "{err}"
        );
        let err = detect_keys(
            &T5Spec {
                gated: false,
                ..T5Spec::xxl()
            }
            .hf(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("non-gated"), "{err}");
        let err = detect_keys(
            &T5Spec {
                blocks: 12,
                ..T5Spec::xxl()
            }
            .hf(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("12 blocks"), "{err}");
    }

    #[test]
    fn scaled_fp8_t5_and_narrow_width() {
        let mut tensors = T5Spec {
            d_model: 64,
            d_ff: 128,
            ..T5Spec::xxl()
        }
        .hf()
        .tensors_as(StorageDType::F8E4M3);
        tensors.push(tensor_dt("scaled_fp8", &[0], StorageDType::F8E4M3));
        let d = detect(&[FileTensors::new(
            "t5xxl_fp8_e4m3fn_scaled.safetensors".as_ref(),
            &tensors,
        )])
        .unwrap();
        assert_eq!(d.variant, "v1.1-xxl (non-standard width 64)");
        let c = d.component(ComponentKind::T5xxl).unwrap();
        assert_eq!(c.scaled_fp8, Some(StorageDType::F8E4M3));
        assert_eq!(d.unclaimed_keys, 0);
    }
}
