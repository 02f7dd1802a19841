//! SD3 / SD3.5 MMDiT in Stability's naming (`joint_blocks.`): the SAI layout detector and the
//! classifier shared with the diffusers layout (ComfyUI `detect_unet_config`'s mmdit branch).

use std::collections::BTreeMap;

use crate::component::{self, identity_map};
use crate::detector::{variant_name, DiffusionDetector, FoundDiffusion};
use crate::mapped::MappedView;
use crate::state_dict::StateDict;
use crate::{Architecture, ComponentKind, DetectError, KeyMap, Layout, Prediction};

/// Top-level modules of an MMDiT.
const MMDIT_MODULES: &[&str] = &[
    "joint_blocks.",
    "x_embedder.",
    "t_embedder.",
    "y_embedder.",
    "context_embedder.",
    "final_layer.",
    "context_processor.",
    "pos_embed",
];

/// ComfyUI derives depth from the patch-embedding width: `hidden = 64 * depth`.
const HIDDEN_PER_DEPTH: u64 = 64;

/// An MMDiT in SAI naming, under `model.diffusion_model.` or without prefix.
pub(crate) struct SaiMmdit;

impl DiffusionDetector for SaiMmdit {
    fn describe(&self) -> &'static str {
        "SAI MMDiT"
    }

    fn matches(&self, sd: &StateDict<'_>, prefix: &str) -> bool {
        sd.contains(&format!(
            "{prefix}joint_blocks.0.context_block.attn.qkv.weight"
        ))
    }

    fn detect(&self, sd: &StateDict<'_>, prefix: &str) -> Result<FoundDiffusion, DetectError> {
        classify(
            sd,
            prefix,
            identity_map(sd, prefix, MMDIT_MODULES),
            Layout::Sai,
        )
    }
}

/// Variant and facts of an MMDiT whose keys are in SAI naming.
pub(crate) fn classify(
    sd: &StateDict<'_>,
    prefix: &str,
    keys: KeyMap,
    layout: Layout,
) -> Result<FoundDiffusion, DetectError> {
    let view = MappedView::new(&keys, sd);
    let patch = view
        .shape("x_embedder.proj.weight")
        .ok_or_else(|| DetectError::MissingTensor {
            file: sd.label().to_path_buf(),
            component: "MMDiT",
            tensor: format!("{prefix}x_embedder.proj.weight"),
        })?;
    let [hidden, in_channels, patch_size, ..] = patch[..] else {
        return Err(DetectError::BadShape {
            file: sd.label().to_path_buf(),
            component: "MMDiT",
            tensor: format!("{prefix}x_embedder.proj.weight"),
            shape: patch,
            expected: "a 4-D patch-embedding convolution",
        });
    };
    let blocks = view.count_blocks("joint_blocks.") as u64;
    let qk_norm = view.contains("joint_blocks.0.context_block.attn.ln_q.weight");
    let self_attn_layers = view
        .names()
        .filter(|n| n.starts_with("joint_blocks.") && n.ends_with(".x_block.attn2.qkv.weight"))
        .count();
    let (base, standard) = match (qk_norm, self_attn_layers > 0) {
        (false, _) => ("3-medium", hidden == 1536 && blocks == 24),
        (true, true) => ("3.5-medium", hidden == 1536 && blocks == 24),
        (true, false) => ("3.5-large", hidden == 2432 && blocks == 38),
    };
    let mut facts = BTreeMap::new();
    facts.insert("hidden_size".into(), hidden);
    facts.insert("depth".into(), hidden / HIDDEN_PER_DEPTH);
    facts.insert("blocks".into(), blocks);
    facts.insert("in_channels".into(), in_channels);
    facts.insert("patch_size".into(), patch_size);
    facts.insert("qk_norm".into(), u64::from(qk_norm));
    facts.insert("x_block_self_attn_layers".into(), self_attn_layers as u64);
    if let Some(out) = view.dim("final_layer.linear.weight", 0) {
        facts.insert(
            "out_channels".into(),
            out / patch_size.saturating_mul(patch_size).max(1),
        );
    }
    if let Some(adm) = view.dim("y_embedder.mlp.0.weight", 1) {
        facts.insert("adm_in_channels".into(), adm);
    }
    if let Some(context) = view.dim("context_embedder.weight", 1) {
        facts.insert("context_dim".into(), context);
    }
    if let Some(patches) = view.dim("pos_embed", 1) {
        facts.insert(
            "pos_embed_max_size".into(),
            (patches as f64).sqrt().round() as u64,
        );
    }
    let component = component::build(
        ComponentKind::DiffusionModel,
        layout,
        prefix,
        keys,
        facts,
        sd,
    );
    Ok(FoundDiffusion {
        component,
        architecture: Architecture::Sd3,
        variant: variant_name(base, standard, hidden),
        prediction: Prediction::Flow,
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use crate::testing::dit::MmditSpec;
    use crate::testing::{assert_consistent, detect_keys};
    use crate::{Architecture, ComponentKind, Layout, Prediction};

    fn check(spec: &MmditSpec, variant: &str, depth: u64) {
        let keys = spec.sai().prefixed("model.diffusion_model.");
        let d = detect_keys(&keys).unwrap();
        assert_consistent(&d, &[&keys.tensors()]);
        assert_eq!(d.architecture, Architecture::Sd3);
        assert_eq!(d.variant, variant);
        assert_eq!(d.prediction, Some(Prediction::Flow));
        assert_eq!(d.unclaimed_keys, 0);
        let c = d.component(ComponentKind::DiffusionModel).unwrap();
        assert_eq!(c.layout, Layout::Sai);
        assert_eq!(c.prefix, "model.diffusion_model.");
        assert_eq!(c.facts["depth"], depth);
        assert_eq!(c.facts["in_channels"], 16);
        assert_eq!(c.facts["pos_embed_max_size"], 192);
        assert!(c
            .keys
            .contains_key("joint_blocks.0.x_block.attn.qkv.weight"));
    }

    #[test]
    fn sd3_medium_sd35_medium_and_large_by_qk_norm_and_attn2() {
        check(&MmditSpec::sd3_medium(), "3-medium", 24);
        check(&MmditSpec::sd35_medium(), "3.5-medium", 24);
        check(&MmditSpec::sd35_large(), "3.5-large", 38);
    }

    #[test]
    fn narrow_mmdit_keeps_the_variant_and_says_its_width() {
        let spec = MmditSpec {
            hidden: 32,
            ..MmditSpec::sd35_large()
        };
        let d = detect_keys(&spec.sai()).unwrap();
        assert_eq!(d.variant, "3.5-large (non-standard width 32)");
        let c = d.component(ComponentKind::DiffusionModel).unwrap();
        assert_eq!((c.facts["depth"], c.facts["blocks"]), (0, 38));
        assert_eq!(c.prefix, "");
    }
}
