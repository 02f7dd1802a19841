//! T5 encoders in llama.cpp's GGUF naming (city96's `t5-v1_1-xxl-encoder-Q8_0.gguf` family,
//! `general.architecture` `t5encoder`): `token_embd`, `enc.blk.N.attn_q`/`attn_k`/`attn_v`/
//! `attn_o`/`attn_rel_b`/`attn_norm`, `enc.blk.N.ffn_gate`/`ffn_up`/`ffn_down`/`ffn_norm`,
//! `enc.output_norm`. Each maps one to one, shape unchanged, to transformers naming, as
//! ComfyUI-GGUF's `T5_SD_MAP` renames them; then the transformers T5 rules classify it.
//!
//! Upstream: gguf-py `constants.py` (`MODEL_TENSOR.ENC_*`) and
//! <https://github.com/city96/ComfyUI-GGUF/blob/main/loader.py> (`T5_SD_MAP`, `TXT_ARCH_LIST`).

use crate::detector::{prefixes_of, ComponentDetector, Finding};
use crate::state_dict::StateDict;
use crate::{DetectError, KeyMap, KeySource, Layout};

/// The `general.architecture` values ComfyUI-GGUF loads T5 text encoders from.
const T5_ARCHITECTURES: [&str; 2] = ["t5encoder", "t5"];

/// Per-block tensors: llama.cpp name after `enc.blk.N.` → transformers name after
/// `encoder.block.N.`.
const BLOCK_NAMES: [(&str, &str); 10] = [
    ("attn_q.weight", "layer.0.SelfAttention.q.weight"),
    ("attn_k.weight", "layer.0.SelfAttention.k.weight"),
    ("attn_v.weight", "layer.0.SelfAttention.v.weight"),
    ("attn_o.weight", "layer.0.SelfAttention.o.weight"),
    (
        "attn_rel_b.weight",
        "layer.0.SelfAttention.relative_attention_bias.weight",
    ),
    ("attn_norm.weight", "layer.0.layer_norm.weight"),
    ("ffn_gate.weight", "layer.1.DenseReluDense.wi_0.weight"),
    ("ffn_up.weight", "layer.1.DenseReluDense.wi_1.weight"),
    ("ffn_down.weight", "layer.1.DenseReluDense.wo.weight"),
    ("ffn_norm.weight", "layer.1.layer_norm.weight"),
];

/// A T5 encoder in llama.cpp naming, anywhere in the file.
pub(crate) struct LlamaCppT5Encoder;

impl ComponentDetector for LlamaCppT5Encoder {
    fn describe(&self) -> &'static str {
        "T5 encoder (llama.cpp GGUF naming)"
    }

    fn find(&self, sd: &StateDict<'_>) -> Result<Vec<Finding>, DetectError> {
        prefixes_of(sd, "enc.blk.0.attn_q.weight")
            .into_iter()
            .map(|prefix| {
                let finding =
                    crate::t5::classify(sd, &prefix, key_map(sd, &prefix), Layout::LlamaCpp)?;
                Ok(with_architecture_note(finding, sd))
            })
            .collect()
    }
}

/// The transformers name of a llama.cpp T5 encoder tensor; `None` for anything else (the
/// decoder of a full `t5` file, `output.weight`).
fn transformers_name(llama_cpp: &str) -> Option<String> {
    match llama_cpp {
        "token_embd.weight" => return Some("shared.weight".to_string()),
        "enc.output_norm.weight" => return Some("encoder.final_layer_norm.weight".to_string()),
        _ => {}
    }
    let (block, leaf) = llama_cpp.strip_prefix("enc.blk.")?.split_once('.')?;
    if block.is_empty() || !block.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    BLOCK_NAMES
        .iter()
        .find(|(from, _)| *from == leaf)
        .map(|(_, to)| format!("encoder.block.{block}.{to}"))
}

fn key_map(sd: &StateDict<'_>, prefix: &str) -> KeyMap {
    sd.with_prefix(prefix)
        .filter_map(|(name, entry)| {
            transformers_name(&name[prefix.len()..])
                .map(|internal| (internal, KeySource::identity(entry.file, name)))
        })
        .collect()
}

/// Says so when the file's `general.architecture` is not one ComfyUI-GGUF loads T5 from: the
/// names decide here, but ComfyUI-GGUF's text-encoder loader would refuse such a file.
fn with_architecture_note(finding: Finding, sd: &StateDict<'_>) -> Finding {
    let Finding::Component(mut found) = finding else {
        return finding;
    };
    match sd.metadata("general.architecture") {
        Some(architecture) if !T5_ARCHITECTURES.contains(&architecture) => {
            found.notes.push(format!(
                "llama.cpp T5 tensor names under GGUF general.architecture `{architecture}` \
                 (ComfyUI-GGUF expects `t5encoder` or `t5`)"
            ));
        }
        _ => {}
    }
    Finding::Component(found)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use kiln_weights::{GgufType, StorageDType};

    use super::transformers_name;
    use crate::testing::encoders::T5Spec;
    use crate::testing::{assert_consistent, detect_keys};
    use crate::{detect, Architecture, ComponentKind, DetectError, FileTensors, Layout};

    #[test]
    fn names_map_as_comfyui_ggufs_t5_sd_map() {
        for (llama_cpp, transformers) in [
            ("token_embd.weight", "shared.weight"),
            ("enc.output_norm.weight", "encoder.final_layer_norm.weight"),
            (
                "enc.blk.0.attn_rel_b.weight",
                "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            ),
            (
                "enc.blk.17.attn_o.weight",
                "encoder.block.17.layer.0.SelfAttention.o.weight",
            ),
            (
                "enc.blk.23.ffn_up.weight",
                "encoder.block.23.layer.1.DenseReluDense.wi_1.weight",
            ),
            (
                "enc.blk.3.ffn_norm.weight",
                "encoder.block.3.layer.1.layer_norm.weight",
            ),
        ] {
            assert_eq!(
                transformers_name(llama_cpp).as_deref(),
                Some(transformers),
                "{llama_cpp}"
            );
        }
        for other in [
            "dec.blk.0.attn_q.weight",
            "output.weight",
            "enc.blk.x.attn_q.weight",
            "enc.blk.0.attn_qkv.weight",
        ] {
            assert_eq!(transformers_name(other), None, "{other}");
        }
    }

    #[test]
    fn t5xxl_gguf_is_detected_with_facts() {
        let keys = T5Spec::xxl().llama_cpp();
        let q8 = StorageDType::Gguf(GgufType::Q8_0);
        let mut tensors = keys.tensors_as(q8);
        // Norms and the relative bias stay f32 in llama.cpp's files.
        for t in &mut tensors {
            if t.shape.len() == 1 || t.name.contains("attn_rel_b") {
                t.dtype = StorageDType::Gguf(GgufType::F32);
            }
        }
        let mut meta = BTreeMap::new();
        meta.insert("general.architecture".to_string(), "t5encoder".to_string());
        let d = detect(&[
            FileTensors::new(Path::new("t5-v1_1-xxl-encoder-Q8_0.gguf"), &tensors)
                .with_metadata(&meta),
        ])
        .unwrap();
        assert_consistent(&d, &[&tensors]);
        assert_eq!(
            (d.architecture, d.variant.as_str()),
            (Architecture::T5xxl, "v1.1-xxl")
        );
        assert!(d.notes.is_empty(), "{:?}", d.notes);
        let c = d.component(ComponentKind::T5xxl).unwrap();
        assert_eq!(c.layout, Layout::LlamaCpp);
        assert_eq!(c.dominant_dtype, q8);
        assert_eq!(
            (
                c.facts["d_model"],
                c.facts["layers"],
                c.facts["num_heads"],
                c.facts["d_ff"],
                c.facts["vocab_size"]
            ),
            (4096, 24, 64, 10240, 32128)
        );
        assert_eq!(c.keys.len(), keys.len());
        assert_eq!(c.keys["shared.weight"].name, "token_embd.weight");
        assert_eq!(
            c.keys["encoder.block.5.layer.1.DenseReluDense.wo.weight"].name,
            "enc.blk.5.ffn_down.weight"
        );
        assert_eq!(d.unclaimed_keys, 0);
    }

    #[test]
    fn decoder_tensors_of_a_full_t5_stay_unclaimed() {
        let mut keys = T5Spec::xxl().llama_cpp();
        keys.add("dec.blk.0.attn_q.weight", &[4096, 4096]);
        keys.add("output.weight", &[32128, 4096]);
        let d = detect_keys(&keys).unwrap();
        assert_eq!(d.architecture, Architecture::T5xxl);
        assert_eq!(d.unclaimed_keys, 2);
    }

    #[test]
    fn foreign_architecture_is_noted_and_xl_rejected() {
        let tensors = T5Spec::xxl().llama_cpp().tensors();
        let mut meta = BTreeMap::new();
        meta.insert("general.architecture".to_string(), "flux".to_string());
        let d = detect(&[FileTensors::new(Path::new("odd.gguf"), &tensors).with_metadata(&meta)])
            .unwrap();
        assert!(
            d.notes.iter().any(|n| n.contains("`flux`")),
            "{:?}",
            d.notes
        );

        let err = detect_keys(&T5Spec::xl().llama_cpp()).unwrap_err();
        assert!(
            matches!(&err, DetectError::Unsupported { model, .. } if model.contains("XL (d_model 2048)")),
            "{err}"
        );
        let truncated = T5Spec {
            blocks: 12,
            ..T5Spec::xxl()
        }
        .llama_cpp();
        let err = detect_keys(&truncated).unwrap_err();
        assert!(err.to_string().contains("12 blocks"), "{err}");
    }
}
