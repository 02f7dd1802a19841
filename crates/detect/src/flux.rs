//! Flux.1 (dev, schnell, fill) in Black Forest Labs naming: the BFL layout detector and the
//! classifier shared with the diffusers layout (ComfyUI `detect_unet_config`'s flux branch).

use std::collections::BTreeMap;

use crate::component::{self, identity_map};
use crate::detector::{variant_name, DiffusionDetector, FoundDiffusion};
use crate::mapped::MappedView;
use crate::state_dict::StateDict;
use crate::{Architecture, ComponentKind, DetectError, KeyMap, Layout, Prediction};

/// Top-level modules of a Flux transformer.
const FLUX_MODULES: &[&str] = &[
    "double_blocks.",
    "single_blocks.",
    "img_in.",
    "txt_in.",
    "time_in.",
    "vector_in.",
    "guidance_in.",
    "final_layer.",
];

/// Flux patchifies 2×2, so `img_in` sees 4 values per latent channel.
const PATCH_VALUES: u64 = 4;
/// Flux Fill concatenates the 16 latent channels with a 64-channel mask and 16 image channels.
const FILL_IN_CHANNELS: u64 = 96;

/// A Flux transformer in BFL naming.
pub(crate) struct BflFlux;

impl DiffusionDetector for BflFlux {
    fn describe(&self) -> &'static str {
        "BFL Flux"
    }

    fn matches(&self, sd: &StateDict<'_>, prefix: &str) -> bool {
        sd.contains(&format!(
            "{prefix}double_blocks.0.img_attn.norm.key_norm.scale"
        )) && (sd.contains(&format!("{prefix}img_in.weight"))
            || sd.any_with_prefix(&format!("{prefix}distilled_guidance_layer.")))
    }

    fn detect(&self, sd: &StateDict<'_>, prefix: &str) -> Result<FoundDiffusion, DetectError> {
        if sd.any_with_prefix(&format!("{prefix}distilled_guidance_layer.")) {
            return Err(DetectError::Unsupported {
                file: sd.label().to_path_buf(),
                model: "Chroma".into(),
                reason: "Flux variants with a distilled guidance layer are not supported".into(),
            });
        }
        classify(
            sd,
            prefix,
            identity_map(sd, prefix, FLUX_MODULES),
            Layout::Bfl,
        )
    }
}

/// Variant and facts of a Flux transformer whose keys are in BFL naming.
pub(crate) fn classify(
    sd: &StateDict<'_>,
    prefix: &str,
    keys: KeyMap,
    layout: Layout,
) -> Result<FoundDiffusion, DetectError> {
    let view = MappedView::new(&keys, sd);
    let img_in = view
        .shape("img_in.weight")
        .ok_or_else(|| DetectError::MissingTensor {
            file: sd.label().to_path_buf(),
            component: "Flux",
            tensor: format!("{prefix}img_in.weight"),
        })?;
    let [hidden, in_features] = img_in[..] else {
        return Err(DetectError::BadShape {
            file: sd.label().to_path_buf(),
            component: "Flux",
            tensor: format!("{prefix}img_in.weight"),
            shape: img_in,
            expected: "a 2-D linear weight",
        });
    };
    let in_channels = in_features / PATCH_VALUES;
    let guidance = view.contains("guidance_in.in_layer.weight");
    let depth = view.count_blocks("double_blocks.") as u64;
    let depth_single = view.count_blocks("single_blocks.") as u64;
    let base = match (in_channels, guidance) {
        (FILL_IN_CHANNELS, _) => "fill",
        (_, true) => "dev",
        (_, false) => "schnell",
    };
    let standard = hidden == 3072 && depth == 19 && depth_single == 38;
    let mut facts = BTreeMap::new();
    facts.insert("hidden_size".into(), hidden);
    facts.insert("depth".into(), depth);
    facts.insert("depth_single".into(), depth_single);
    facts.insert("in_channels".into(), in_channels);
    facts.insert("guidance_embed".into(), u64::from(guidance));
    if let Some(context) = view.dim("txt_in.weight", 1) {
        facts.insert("context_in_dim".into(), context);
    }
    if let Some(vec_in) = view.dim("vector_in.in_layer.weight", 1) {
        facts.insert("vec_in_dim".into(), vec_in);
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
        architecture: Architecture::Flux,
        variant: variant_name(base, standard, hidden),
        prediction: Prediction::Flow,
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use kiln_weights::{GgufType, StorageDType};

    use crate::testing::dit::FluxSpec;
    use crate::testing::{assert_consistent, detect_keys, tensor_dt, Keys};
    use crate::{detect, Architecture, ComponentKind, FileTensors, Layout};

    #[test]
    fn dev_schnell_and_fill() {
        for (spec, variant) in [
            (FluxSpec::dev(), "dev"),
            (FluxSpec::schnell(), "schnell"),
            (FluxSpec::fill(), "fill"),
        ] {
            let keys = spec.bfl();
            let d = detect_keys(&keys).unwrap();
            assert_consistent(&d, &[&keys.tensors()]);
            assert_eq!(
                (d.architecture, d.variant.as_str()),
                (Architecture::Flux, variant)
            );
            assert_eq!(d.unclaimed_keys, 0);
            let c = d.component(ComponentKind::DiffusionModel).unwrap();
            assert_eq!(c.layout, Layout::Bfl);
            assert_eq!(
                (
                    c.facts["hidden_size"],
                    c.facts["depth"],
                    c.facts["depth_single"]
                ),
                (3072, 19, 38)
            );
            assert_eq!(c.facts["in_channels"], spec.in_features / 4);
        }
    }

    #[test]
    fn narrow_flux_says_its_width() {
        let spec = FluxSpec {
            hidden: 64,
            ..FluxSpec::schnell()
        };
        let d = detect_keys(&spec.bfl().prefixed("model.diffusion_model.")).unwrap();
        assert_eq!(d.variant, "schnell (non-standard width 64)");
    }

    #[test]
    fn gguf_and_scaled_fp8_flux() {
        let keys = FluxSpec::dev().bfl();
        let q8 = StorageDType::Gguf(GgufType::Q8_0);
        let tensors = keys.tensors_as(q8);
        let d = detect(&[FileTensors::new("flux1-dev-Q8_0.gguf".as_ref(), &tensors)]).unwrap();
        let c = d.component(ComponentKind::DiffusionModel).unwrap();
        assert_eq!((c.dominant_dtype, c.scaled_fp8), (q8, None));

        let mut tensors = keys
            .prefixed("model.diffusion_model.")
            .tensors_as(StorageDType::F8E4M3);
        tensors.push(tensor_dt(
            "model.diffusion_model.scaled_fp8",
            &[0],
            StorageDType::F8E4M3,
        ));
        tensors.push(tensor_dt(
            "model.diffusion_model.double_blocks.0.img_attn.qkv.scale_weight",
            &[],
            StorageDType::F32,
        ));
        let d = detect(&[FileTensors::new(
            "flux_scaled.safetensors".as_ref(),
            &tensors,
        )])
        .unwrap();
        assert_eq!(d.unclaimed_keys, 0);
        let c = d.component(ComponentKind::DiffusionModel).unwrap();
        assert_eq!(c.scaled_fp8, Some(StorageDType::F8E4M3));
        assert!(c
            .keys
            .contains_key("double_blocks.0.img_attn.qkv.scale_weight"));
    }

    #[test]
    fn chroma_is_unsupported() {
        let mut keys = FluxSpec::schnell().bfl();
        keys.0.retain(|(n, _)| !n.starts_with("img_in."));
        let mut extra = Keys::default();
        extra.linear("distilled_guidance_layer.norms.0", 8, 8);
        keys.extend(extra);
        let err = detect_keys(&keys).unwrap_err();
        assert!(err.to_string().contains("Chroma"), "{err}");
    }
}
