//! Diffusers-format Flux transformers (`FluxTransformer2DModel`) mapped to BFL naming: ComfyUI's
//! `utils.py: flux_to_diffusers` inverted. Fused BFL tensors become concatenations of the
//! diffusers parts (`qkv` ← `to_q`,`to_k`,`to_v`; single-block `linear1` ← those + `proj_mlp`).

use crate::component::add_scaled_fp8_marker;
use crate::detector::{DiffusionDetector, FoundDiffusion};
use crate::state_dict::StateDict;
use crate::{flux, DetectError, KeyMap, KeySource, KeyTransform, Layout, TensorRef};

/// A Flux transformer in diffusers naming.
pub(crate) struct DiffusersFlux;

impl DiffusionDetector for DiffusersFlux {
    fn describe(&self) -> &'static str {
        "diffusers Flux transformer"
    }

    fn matches(&self, sd: &StateDict<'_>, prefix: &str) -> bool {
        sd.contains(&format!(
            "{prefix}transformer_blocks.0.attn.norm_added_k.weight"
        )) && sd.contains(&format!("{prefix}x_embedder.weight"))
    }

    fn detect(&self, sd: &StateDict<'_>, prefix: &str) -> Result<FoundDiffusion, DetectError> {
        flux::classify(sd, prefix, key_map(sd, prefix), Layout::Diffusers)
    }
}

/// Double-block renames, diffusers → BFL.
const DOUBLE_RENAMES: &[(&str, &str)] = &[
    ("attn.to_out.0.", "img_attn.proj."),
    ("norm1.linear.", "img_mod.lin."),
    ("norm1_context.linear.", "txt_mod.lin."),
    ("attn.to_add_out.", "txt_attn.proj."),
    ("ff.net.0.proj.", "img_mlp.0."),
    ("ff.net.2.", "img_mlp.2."),
    ("ff_context.net.0.proj.", "txt_mlp.0."),
    ("ff_context.net.2.", "txt_mlp.2."),
    ("attn.norm_q.weight", "img_attn.norm.query_norm.scale"),
    ("attn.norm_k.weight", "img_attn.norm.key_norm.scale"),
    ("attn.norm_added_q.weight", "txt_attn.norm.query_norm.scale"),
    ("attn.norm_added_k.weight", "txt_attn.norm.key_norm.scale"),
];

const DOUBLE_FUSED: &[(&str, &[&str])] = &[
    ("img_attn.qkv.", &["attn.to_q.", "attn.to_k.", "attn.to_v."]),
    (
        "txt_attn.qkv.",
        &["attn.add_q_proj.", "attn.add_k_proj.", "attn.add_v_proj."],
    ),
];

/// Single-block renames, diffusers → BFL.
const SINGLE_RENAMES: &[(&str, &str)] = &[
    ("norm.linear.", "modulation.lin."),
    ("proj_out.", "linear2."),
    ("attn.norm_q.weight", "norm.query_norm.scale"),
    ("attn.norm_k.weight", "norm.key_norm.scale"),
];

const SINGLE_FUSED: &[(&str, &[&str])] = &[(
    "linear1.",
    &["attn.to_q.", "attn.to_k.", "attn.to_v.", "proj_mlp."],
)];

/// Top-level renames; `true` marks diffusers' (scale, shift) order.
const BASIC: &[(&str, &str, bool)] = &[
    ("proj_out.", "final_layer.linear.", false),
    ("x_embedder.", "img_in.", false),
    (
        "time_text_embed.timestep_embedder.linear_1.",
        "time_in.in_layer.",
        false,
    ),
    (
        "time_text_embed.timestep_embedder.linear_2.",
        "time_in.out_layer.",
        false,
    ),
    ("context_embedder.", "txt_in.", false),
    (
        "time_text_embed.text_embedder.linear_1.",
        "vector_in.in_layer.",
        false,
    ),
    (
        "time_text_embed.text_embedder.linear_2.",
        "vector_in.out_layer.",
        false,
    ),
    (
        "time_text_embed.guidance_embedder.linear_1.",
        "guidance_in.in_layer.",
        false,
    ),
    (
        "time_text_embed.guidance_embedder.linear_2.",
        "guidance_in.out_layer.",
        false,
    ),
    ("norm_out.linear.", "final_layer.adaLN_modulation.1.", true),
];

/// Renames every key under `from` by the first matching `(diffusers, bfl)` pair.
fn rename_block(
    keys: &mut KeyMap,
    sd: &StateDict<'_>,
    from: &str,
    to: &str,
    renames: &[(&str, &str)],
) {
    for (name, entry) in sd.with_prefix(from) {
        let rest = &name[from.len()..];
        if let Some((d, b)) = renames.iter().find(|(d, _)| rest.starts_with(d)) {
            keys.insert(
                format!("{to}{b}{}", &rest[d.len()..]),
                KeySource::identity(entry.file, name),
            );
        }
    }
}

/// Adds every fused tensor whose parts are all present.
fn fuse_block(
    keys: &mut KeyMap,
    sd: &StateDict<'_>,
    from: &str,
    to: &str,
    fused: &[(&str, &[&str])],
) {
    for (target, parts) in fused {
        for param in ["weight", "bias"] {
            let found: Option<Vec<TensorRef>> = parts
                .iter()
                .map(|p| {
                    let name = format!("{from}{p}{param}");
                    sd.get(&name).map(|e| TensorRef { file: e.file, name })
                })
                .collect();
            if let Some(mut found) = found {
                let first = found.remove(0);
                keys.insert(
                    format!("{to}{target}{param}"),
                    KeySource::concat_rows(first, found),
                );
            }
        }
    }
}

/// BFL name → diffusers source(s).
pub(crate) fn key_map(sd: &StateDict<'_>, prefix: &str) -> KeyMap {
    let mut keys = KeyMap::new();
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
    for i in 0..sd.count_blocks(&format!("{prefix}transformer_blocks.")) {
        let (from, to) = (
            format!("{prefix}transformer_blocks.{i}."),
            format!("double_blocks.{i}."),
        );
        rename_block(&mut keys, sd, &from, &to, DOUBLE_RENAMES);
        fuse_block(&mut keys, sd, &from, &to, DOUBLE_FUSED);
    }
    for i in 0..sd.count_blocks(&format!("{prefix}single_transformer_blocks.")) {
        let (from, to) = (
            format!("{prefix}single_transformer_blocks.{i}."),
            format!("single_blocks.{i}."),
        );
        rename_block(&mut keys, sd, &from, &to, SINGLE_RENAMES);
        fuse_block(&mut keys, sd, &from, &to, SINGLE_FUSED);
    }
    add_scaled_fp8_marker(&mut keys, sd, prefix);
    keys
}

#[cfg(test)]
mod tests {
    use crate::testing::dit::FluxSpec;
    use crate::testing::{assert_consistent, detect_keys, internal_names};
    use crate::{ComponentKind, KeyTransform, Layout};

    #[test]
    fn diffusers_flux_maps_onto_bfl_names_and_shapes() {
        for spec in [
            FluxSpec::dev(),
            FluxSpec::schnell(),
            FluxSpec {
                hidden: 32,
                ..FluxSpec::fill()
            },
        ] {
            let diffusers = spec.diffusers();
            let d = detect_keys(&diffusers).unwrap();
            assert_consistent(&d, &[&diffusers.tensors()]);
            assert_eq!(d.unclaimed_keys, 0);
            let bfl = detect_keys(&spec.bfl()).unwrap();
            assert_eq!(d.variant, bfl.variant);
            assert_eq!(
                internal_names(&d, ComponentKind::DiffusionModel),
                internal_names(&bfl, ComponentKind::DiffusionModel)
            );
            let (a, b) = (
                d.component(ComponentKind::DiffusionModel).unwrap(),
                bfl.component(ComponentKind::DiffusionModel).unwrap(),
            );
            assert_eq!(a.layout, Layout::Diffusers);
            assert_eq!((a.params, &a.facts), (b.params, &b.facts));
            let linear1 = &a.keys["single_blocks.0.linear1.weight"];
            assert_eq!(linear1.transform, KeyTransform::ConcatRows);
            assert_eq!(linear1.tensors().count(), 4);
            assert_eq!(
                a.keys["final_layer.adaLN_modulation.1.weight"].transform,
                KeyTransform::SwapHalves
            );
        }
    }
}
