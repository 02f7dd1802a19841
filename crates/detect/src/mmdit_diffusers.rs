//! Diffusers-format SD3 transformers (`SD3Transformer2DModel`) mapped to SAI MMDiT naming:
//! ComfyUI's `utils.py: mmdit_to_diffusers` inverted. Diffusers splits each fused `qkv` into
//! `to_q`/`to_k`/`to_v`; the internal tensor concatenates them.

use crate::component::add_scaled_fp8_marker;
use crate::detector::{DiffusionDetector, FoundDiffusion};
use crate::state_dict::StateDict;
use crate::{mmdit, DetectError, KeyMap, KeySource, KeyTransform, Layout, TensorRef};

/// An SD3 transformer in diffusers naming.
pub(crate) struct DiffusersMmdit;

impl DiffusionDetector for DiffusersMmdit {
    fn describe(&self) -> &'static str {
        "diffusers SD3 transformer"
    }

    fn matches(&self, sd: &StateDict<'_>, prefix: &str) -> bool {
        sd.contains(&format!(
            "{prefix}transformer_blocks.0.attn.add_q_proj.weight"
        )) && sd.contains(&format!("{prefix}pos_embed.proj.weight"))
    }

    fn detect(&self, sd: &StateDict<'_>, prefix: &str) -> Result<FoundDiffusion, DetectError> {
        mmdit::classify(sd, prefix, key_map(sd, prefix), Layout::Diffusers)
    }
}

/// Per-block renames, diffusers → SAI (`MMDIT_MAP_BLOCK`).
const BLOCK_RENAMES: &[(&str, &str)] = &[
    ("norm1_context.linear.", "context_block.adaLN_modulation.1."),
    ("attn.to_add_out.", "context_block.attn.proj."),
    ("ff_context.net.0.proj.", "context_block.mlp.fc1."),
    ("ff_context.net.2.", "context_block.mlp.fc2."),
    ("attn.norm_added_q.", "context_block.attn.ln_q."),
    ("attn.norm_added_k.", "context_block.attn.ln_k."),
    ("norm1.linear.", "x_block.adaLN_modulation.1."),
    ("attn.to_out.0.", "x_block.attn.proj."),
    ("attn.norm_q.", "x_block.attn.ln_q."),
    ("attn.norm_k.", "x_block.attn.ln_k."),
    ("attn2.to_out.0.", "x_block.attn2.proj."),
    ("attn2.norm_q.", "x_block.attn2.ln_q."),
    ("attn2.norm_k.", "x_block.attn2.ln_k."),
    ("ff.net.0.proj.", "x_block.mlp.fc1."),
    ("ff.net.2.", "x_block.mlp.fc2."),
];

/// Fused projections: SAI name ← diffusers parts in concatenation order.
const FUSED: &[(&str, [&str; 3])] = &[
    (
        "x_block.attn.qkv.",
        ["attn.to_q.", "attn.to_k.", "attn.to_v."],
    ),
    (
        "context_block.attn.qkv.",
        ["attn.add_q_proj.", "attn.add_k_proj.", "attn.add_v_proj."],
    ),
    (
        "x_block.attn2.qkv.",
        ["attn2.to_q.", "attn2.to_k.", "attn2.to_v."],
    ),
];

/// Top-level renames (`MMDIT_MAP_BASIC`); `true` marks diffusers' (scale, shift) order.
const BASIC: &[(&str, &str, bool)] = &[
    ("context_embedder.", "context_embedder.", false),
    (
        "time_text_embed.timestep_embedder.linear_1.",
        "t_embedder.mlp.0.",
        false,
    ),
    (
        "time_text_embed.timestep_embedder.linear_2.",
        "t_embedder.mlp.2.",
        false,
    ),
    (
        "time_text_embed.text_embedder.linear_1.",
        "y_embedder.mlp.0.",
        false,
    ),
    (
        "time_text_embed.text_embedder.linear_2.",
        "y_embedder.mlp.2.",
        false,
    ),
    ("pos_embed.proj.", "x_embedder.proj.", false),
    ("norm_out.linear.", "final_layer.adaLN_modulation.1.", true),
    ("proj_out.", "final_layer.linear.", false),
];

/// SAI name → diffusers source(s).
pub(crate) fn key_map(sd: &StateDict<'_>, prefix: &str) -> KeyMap {
    let mut keys = KeyMap::new();
    let source = |name: &str| {
        sd.get(name).map(|e| TensorRef {
            file: e.file,
            name: name.to_string(),
        })
    };
    for (from, to, swap) in BASIC {
        for (name, entry) in sd.with_prefix(&format!("{prefix}{from}")) {
            let param = &name[prefix.len() + from.len()..];
            let transform = if *swap {
                KeyTransform::SwapHalves
            } else {
                KeyTransform::Identity
            };
            keys.insert(
                format!("{to}{param}"),
                KeySource::new(entry.file, name, transform),
            );
        }
    }
    if let Some(entry) = sd.get(&format!("{prefix}pos_embed.pos_embed")) {
        keys.insert(
            "pos_embed".into(),
            KeySource::identity(entry.file, format!("{prefix}pos_embed.pos_embed")),
        );
    }
    let blocks = sd.count_blocks(&format!("{prefix}transformer_blocks."));
    for i in 0..blocks {
        let from = format!("{prefix}transformer_blocks.{i}.");
        let to = format!("joint_blocks.{i}.");
        // The last block's context stream ends in diffusers' AdaLayerNormContinuous, stored
        // (scale, shift) like the final layer.
        let last = i + 1 == blocks;
        for (name, entry) in sd.with_prefix(&from) {
            let rest = &name[from.len()..];
            if let Some((d, s)) = BLOCK_RENAMES.iter().find(|(d, _)| rest.starts_with(d)) {
                let transform = if last && *s == "context_block.adaLN_modulation.1." {
                    KeyTransform::SwapHalves
                } else {
                    KeyTransform::Identity
                };
                let internal = format!("{to}{s}{}", &rest[d.len()..]);
                keys.insert(internal, KeySource::new(entry.file, name, transform));
            }
        }
        for (fused, parts) in FUSED {
            for param in ["weight", "bias"] {
                let found: Option<Vec<TensorRef>> = parts
                    .iter()
                    .map(|p| source(&format!("{from}{p}{param}")))
                    .collect();
                if let Some(mut found) = found {
                    let first = found.remove(0);
                    keys.insert(
                        format!("{to}{fused}{param}"),
                        KeySource::concat_rows(first, found),
                    );
                }
            }
        }
    }
    add_scaled_fp8_marker(&mut keys, sd, prefix);
    keys
}

#[cfg(test)]
mod tests {
    use crate::testing::dit::MmditSpec;
    use crate::testing::{assert_consistent, detect_keys, internal_names};
    use crate::{ComponentKind, KeyTransform, Layout};

    #[test]
    fn diffusers_sd3_maps_onto_sai_names_and_shapes() {
        for spec in [
            MmditSpec::sd3_medium(),
            MmditSpec::sd35_medium(),
            MmditSpec::sd35_large(),
        ] {
            let diffusers = spec.diffusers();
            let d = detect_keys(&diffusers).unwrap();
            assert_consistent(&d, &[&diffusers.tensors()]);
            assert_eq!(d.unclaimed_keys, 0, "{spec:?}");
            let sai = detect_keys(&spec.sai()).unwrap();
            assert_eq!(d.variant, sai.variant);
            assert_eq!(
                internal_names(&d, ComponentKind::DiffusionModel),
                internal_names(&sai, ComponentKind::DiffusionModel)
            );
            let (a, b) = (
                d.component(ComponentKind::DiffusionModel).unwrap(),
                sai.component(ComponentKind::DiffusionModel).unwrap(),
            );
            assert_eq!(a.layout, Layout::Diffusers);
            assert_eq!((a.params, &a.facts), (b.params, &b.facts));
            let last = spec.blocks - 1;
            let swapped =
                &a.keys[&format!("joint_blocks.{last}.context_block.adaLN_modulation.1.weight")];
            assert_eq!(swapped.transform, KeyTransform::SwapHalves);
            let qkv = &a.keys["joint_blocks.0.x_block.attn.qkv.weight"];
            assert_eq!(qkv.transform, KeyTransform::ConcatRows);
            assert_eq!(qkv.concat.len(), 2);
        }
    }
}
