//! UNet families (SD1, SD2, SDXL, SDXL refiner) in LDM naming: the LDM/SGM layout detector and
//! the classifier shared with the diffusers layout. The rules mirror ComfyUI's
//! `model_detection.py: detect_unet_config` and `supported_models.py`, but read only structure,
//! so narrow test models are classified by the same code as released ones.

use std::collections::BTreeMap;

use crate::component::{self, identity_map};
use crate::detector::{location, variant_name, DiffusionDetector, FoundDiffusion};
use crate::mapped::MappedView;
use crate::state_dict::StateDict;
use crate::{Architecture, ComponentKind, DetectError, KeyMap, Layout, Prediction};

/// Top-level modules of an LDM UNet (`openaimodel.UNetModel`).
const UNET_MODULES: &[&str] = &[
    "input_blocks.",
    "middle_block.",
    "output_blocks.",
    "time_embed.",
    "label_emb.",
    "out.",
];

/// ComfyUI's SD2 v-prediction guess reads this bias's standard deviation.
const V_PREDICTION_PROBE: &str = "output_blocks.11.1.transformer_blocks.0.norm1.bias";
const V_PREDICTION_STD: f64 = 0.09;

/// SDXL conditions on pooled CLIP-G (`adm - 6*256`); the refiner on pooled G plus 5 size/score
/// embeddings of 256, with context = G's width, so `adm - 5*256 == context_dim` singles it out.
const REFINER_ADM_EXTRA: u64 = 5 * 256;

/// A UNet stored in LDM naming under `model.diffusion_model.` (or without prefix).
pub(crate) struct LdmUnet;

impl DiffusionDetector for LdmUnet {
    fn describe(&self) -> &'static str {
        "LDM UNet"
    }

    fn matches(&self, sd: &StateDict<'_>, prefix: &str) -> bool {
        sd.contains(&format!("{prefix}input_blocks.0.0.weight"))
    }

    fn detect(&self, sd: &StateDict<'_>, prefix: &str) -> Result<FoundDiffusion, DetectError> {
        let keys = identity_map(sd, prefix, UNET_MODULES);
        let layout = if sd.any_with_prefix("conditioner.embedders.") {
            Layout::Sgm
        } else {
            Layout::Ldm
        };
        classify(sd, prefix, keys, layout)
    }
}

/// The structure of a UNet read from its tensors (ComfyUI's `unet_config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnetConfig {
    pub(crate) in_channels: u64,
    pub(crate) out_channels: u64,
    pub(crate) model_channels: u64,
    pub(crate) adm_in_channels: Option<u64>,
    pub(crate) context_dim: Option<u64>,
    pub(crate) use_linear_in_transformer: bool,
    pub(crate) num_res_blocks: Vec<u64>,
    pub(crate) channel_mult: Vec<u64>,
    /// Transformer depth of every input res block.
    pub(crate) transformer_depth: Vec<u64>,
    /// Transformer depth of every output res block.
    pub(crate) transformer_depth_output: Vec<u64>,
    /// Middle-block transformer depth; -1 without middle attention, -2 without middle block.
    pub(crate) transformer_depth_middle: i64,
}

/// What one block's spatial transformer says (ComfyUI's `calculate_transformer_depth`).
struct TransformerInfo {
    depth: u64,
    context_dim: Option<u64>,
    linear: bool,
}

fn transformer_info(view: &MappedView<'_>, block: &str) -> Option<TransformerInfo> {
    let blocks = format!("{block}1.transformer_blocks.");
    if !view.any_with_prefix(&blocks) {
        return None;
    }
    Some(TransformerInfo {
        depth: view.count_blocks(&blocks) as u64,
        context_dim: view.dim(&format!("{blocks}0.attn2.to_k.weight"), 1),
        linear: view
            .shape(&format!("{block}1.proj_in.weight"))
            .is_some_and(|s| s.len() == 2),
    })
}

impl UnetConfig {
    /// Reads the structure; `None` when the stem convolution is missing or malformed.
    pub(crate) fn read(view: &MappedView<'_>) -> Option<Self> {
        let stem = view.shape("input_blocks.0.0.weight")?;
        let (model_channels, in_channels) = (*stem.first()?, *stem.get(1)?);
        let mut config = Self {
            in_channels,
            out_channels: view.dim("out.2.weight", 0).unwrap_or(4),
            model_channels,
            adm_in_channels: view.dim("label_emb.0.0.weight", 1),
            context_dim: None,
            use_linear_in_transformer: false,
            num_res_blocks: Vec::new(),
            channel_mult: Vec::new(),
            transformer_depth: Vec::new(),
            transformer_depth_output: Vec::new(),
            transformer_depth_middle: -2,
        };
        let input_blocks = view.count_blocks("input_blocks.");
        let (mut last_res_blocks, mut last_channel_mult) = (0u64, 0u64);
        for count in 0..input_blocks {
            let block = format!("input_blocks.{count}.");
            let mirror = format!("output_blocks.{}.", input_blocks - count - 1);
            if view.contains(&format!("{block}0.op.weight")) {
                config.num_res_blocks.push(last_res_blocks);
                config.channel_mult.push(last_channel_mult);
                last_res_blocks = 0;
                last_channel_mult = 0;
                let depth = transformer_info(view, &mirror).map_or(0, |t| t.depth);
                config.transformer_depth_output.push(depth);
                continue;
            }
            if view.contains(&format!("{block}0.in_layers.0.weight")) {
                last_res_blocks += 1;
                last_channel_mult = view
                    .dim(&format!("{block}0.out_layers.3.weight"), 0)
                    .and_then(|c| c.checked_div(model_channels))
                    .unwrap_or(0);
                let info = transformer_info(view, &block);
                if let Some(info) = &info {
                    if config.context_dim.is_none() {
                        config.context_dim = info.context_dim;
                        config.use_linear_in_transformer = info.linear;
                    }
                }
                config.transformer_depth.push(info.map_or(0, |t| t.depth));
            }
            if view.contains(&format!("{mirror}0.in_layers.0.weight")) {
                let depth = transformer_info(view, &mirror).map_or(0, |t| t.depth);
                config.transformer_depth_output.push(depth);
            }
        }
        config.num_res_blocks.push(last_res_blocks);
        config.channel_mult.push(last_channel_mult);
        config.transformer_depth_middle = if view.contains("middle_block.1.proj_in.weight") {
            view.count_blocks("middle_block.1.transformer_blocks.") as i64
        } else if view.contains("middle_block.0.in_layers.0.weight") {
            -1
        } else {
            -2
        };
        Some(config)
    }

    fn facts(&self) -> BTreeMap<String, u64> {
        let mut facts = BTreeMap::new();
        facts.insert("model_channels".into(), self.model_channels);
        facts.insert("in_channels".into(), self.in_channels);
        facts.insert("out_channels".into(), self.out_channels);
        facts.insert("levels".into(), self.channel_mult.len() as u64);
        facts.insert(
            "use_linear_in_transformer".into(),
            u64::from(self.use_linear_in_transformer),
        );
        if let Some(context) = self.context_dim {
            facts.insert("context_dim".into(), context);
        }
        if let Some(adm) = self.adm_in_channels {
            facts.insert("adm_in_channels".into(), adm);
        }
        facts
    }

    /// Transformer depth per level, from the first res block of each level.
    fn depth_per_level(&self) -> Vec<u64> {
        let mut index = 0usize;
        self.num_res_blocks
            .iter()
            .filter_map(|&blocks| {
                let depth = (blocks > 0)
                    .then(|| self.transformer_depth.get(index).copied())
                    .flatten();
                index += blocks as usize;
                depth
            })
            .collect()
    }
}

/// Family, variant and prediction of a UNet whose keys are already in LDM naming.
pub(crate) fn classify(
    sd: &StateDict<'_>,
    prefix: &str,
    keys: KeyMap,
    layout: Layout,
) -> Result<FoundDiffusion, DetectError> {
    let view = MappedView::new(&keys, sd);
    let config = UnetConfig::read(&view).ok_or_else(|| DetectError::MissingTensor {
        file: sd.label().to_path_buf(),
        component: "UNet",
        tensor: format!("{prefix}input_blocks.0.0.weight"),
    })?;
    let unsupported = |model: &str, reason: String| DetectError::Unsupported {
        file: sd.label().to_path_buf(),
        model: model.to_string(),
        reason,
    };
    let Some(context_dim) = config.context_dim else {
        return Err(unsupported(
            "a UNet without cross-attention",
            format!("no spatial transformer found in {}", location(sd, prefix)),
        ));
    };
    let mut notes = Vec::new();
    let width = config.model_channels;
    let task = match config.in_channels {
        4 => "",
        9 => " inpainting",
        8 => " instruct-pix2pix",
        _ => " (non-standard input channels)",
    };
    let (architecture, variant, prediction) = match config.adm_in_channels {
        None if config.in_channels == 7 => {
            return Err(unsupported(
                "the SD x4 upscaler",
                "upscaler UNets are not supported".into(),
            ))
        }
        None if !config.use_linear_in_transformer => {
            let standard = width == 320 && context_dim == 768;
            (
                Architecture::Sd1,
                variant_name(&format!("v1.x{task}"), standard, width),
                Prediction::Eps,
            )
        }
        None => {
            let standard = width == 320 && context_dim == 1024;
            let (base, prediction) = sd2_prediction(&view, &config, &mut notes);
            (
                Architecture::Sd2,
                variant_name(&format!("{base}{task}"), standard, width),
                prediction,
            )
        }
        Some(_) if config.transformer_depth.first().is_some_and(|&d| d > 0) => {
            return Err(unsupported(
                "SD2 unCLIP",
                "UNets with image-embedding conditioning are not supported".into(),
            ));
        }
        Some(adm) if adm.checked_sub(REFINER_ADM_EXTRA) == Some(context_dim) => {
            let standard = width == 384 && context_dim == 1280 && adm == 2560;
            (
                Architecture::SdxlRefiner,
                variant_name(&format!("refiner{task}"), standard, width),
                Prediction::Eps,
            )
        }
        Some(adm) => {
            let standard = width == 320 && context_dim == 2048 && adm == 2816;
            let base = sdxl_variant(&config);
            let prediction = sdxl_prediction(sd, &mut notes);
            (
                Architecture::Sdxl,
                variant_name(&format!("{base}{task}"), standard, width),
                prediction,
            )
        }
    };
    let component = component::build(
        ComponentKind::DiffusionModel,
        layout,
        prefix,
        keys,
        config.facts(),
        sd,
    );
    Ok(FoundDiffusion {
        component,
        architecture,
        variant,
        prediction,
        notes,
    })
}

/// SDXL-family distillations differ only in transformer depth per level.
fn sdxl_variant(config: &UnetConfig) -> String {
    let depths = config.depth_per_level();
    match depths.as_slice() {
        [0, 2, 10] => "base".into(),
        [0, 2, 4] => "SSD-1B".into(),
        [0, 1, 2] => "Vega".into(),
        [0, 2, 5] => "KOALA-700M".into(),
        [0, 2, 6] => "KOALA-1B".into(),
        other => format!("base-like (transformer depth per level {other:?})"),
    }
}

/// ComfyUI's `SDXL.model_type`: marker keys at the top of the file decide.
fn sdxl_prediction(sd: &StateDict<'_>, notes: &mut Vec<String>) -> Prediction {
    if sd.contains("edm_mean") && sd.contains("edm_std") {
        notes.push("Playground v2.5 EDM markers (edm_mean/edm_std): EDM sampling is not modelled; treated as eps".into());
        Prediction::Eps
    } else if sd.contains("edm_vpred.sigma_max") {
        notes.push("EDM v-prediction marker (edm_vpred.sigma_max): treated as v-prediction".into());
        Prediction::V
    } else if sd.contains("v_pred") {
        notes.push("`v_pred` marker: v-prediction".into());
        if sd.contains("ztsnr") {
            notes.push("`ztsnr` marker: zero terminal SNR schedule".into());
        }
        Prediction::V
    } else {
        Prediction::Eps
    }
}

/// ComfyUI's `SD20.model_type`: v-prediction when one norm bias varies enough.
fn sd2_prediction(
    view: &MappedView<'_>,
    config: &UnetConfig,
    notes: &mut Vec<String>,
) -> (&'static str, Prediction) {
    if config.in_channels != 4 {
        return ("2.x", Prediction::Eps);
    }
    if !view.contains(V_PREDICTION_PROBE) {
        notes.push(format!(
            "`{V_PREDICTION_PROBE}` absent: assuming eps-prediction"
        ));
        return ("2.x", Prediction::Eps);
    }
    let Some(values) = view.f32_values(V_PREDICTION_PROBE) else {
        notes.push(format!(
            "SD2 prediction type not measured (values of `{V_PREDICTION_PROBE}` unavailable): \
             assuming eps-prediction; 768-v models need v"
        ));
        return ("2.x", Prediction::Eps);
    };
    let std = population_std(&values);
    if std > V_PREDICTION_STD {
        notes.push(format!(
            "std of `{V_PREDICTION_PROBE}` is {std:.4} > {V_PREDICTION_STD}: v-prediction"
        ));
        ("2.x-768-v", Prediction::V)
    } else {
        notes.push(format!(
            "std of `{V_PREDICTION_PROBE}` is {std:.4} ≤ {V_PREDICTION_STD}: eps-prediction"
        ));
        ("2.x-512-base", Prediction::Eps)
    }
}

/// Standard deviation with divisor n (torch's `unbiased=False`).
fn population_std(values: &[f32]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    (values
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use kiln_weights::StorageDType;

    use super::*;
    use crate::testing::encoders::{position_ids, ClipSpec};
    use crate::testing::unet::UnetSpec;
    use crate::testing::vae::VaeSpec;
    use crate::testing::{assert_consistent, detect_keys, tensor_dt, Keys};
    use crate::{detect, FileTensors, TensorValues};

    fn unet_only(spec: &UnetSpec) -> crate::Detection {
        let keys = spec.ldm().prefixed("model.diffusion_model.");
        let d = detect_keys(&keys).unwrap();
        assert_consistent(&d, &[&keys.tensors()]);
        d
    }

    #[test]
    fn released_tensor_counts() {
        assert_eq!(UnetSpec::sd15().ldm().len(), 686);
        assert_eq!(UnetSpec::sdxl().ldm().len(), 1680);
    }

    #[test]
    fn sd15_sd2_sdxl_and_refiner_at_real_sizes() {
        let cases = [
            (UnetSpec::sd15(), Architecture::Sd1, "v1.x", 768, None),
            (UnetSpec::sd2(), Architecture::Sd2, "2.x", 1024, None),
            (
                UnetSpec::sdxl(),
                Architecture::Sdxl,
                "base",
                2048,
                Some(2816),
            ),
            (
                UnetSpec::refiner(),
                Architecture::SdxlRefiner,
                "refiner",
                1280,
                Some(2560),
            ),
        ];
        for (spec, arch, variant, context, adm) in cases {
            let d = unet_only(&spec);
            assert_eq!((d.architecture, d.variant.as_str()), (arch, variant));
            assert_eq!(d.prediction, Some(Prediction::Eps));
            let c = d.component(ComponentKind::DiffusionModel).unwrap();
            assert_eq!(c.facts["context_dim"], context);
            assert_eq!(c.facts.get("adm_in_channels").copied(), adm);
            assert_eq!(c.facts["model_channels"], spec.model_channels);
            assert_eq!(c.facts["levels"], spec.channel_mult.len() as u64);
            assert_eq!(c.layout, Layout::Ldm);
            assert_eq!(c.prefix, "model.diffusion_model.");
        }
    }

    #[test]
    fn unet_config_matches_comfyui_for_sdxl() {
        let keys = UnetSpec::sdxl().ldm();
        let tensors = keys.tensors();
        let files = [FileTensors::new(Path::new("x"), &tensors)];
        let sd = StateDict::build(Path::new("x"), &files, &[0]).unwrap();
        let map = identity_map(&sd, "", UNET_MODULES);
        let config = UnetConfig::read(&MappedView::new(&map, &sd)).unwrap();
        assert_eq!(config.num_res_blocks, vec![2, 2, 2]);
        assert_eq!(config.channel_mult, vec![1, 2, 4]);
        assert_eq!(config.transformer_depth, vec![0, 0, 2, 2, 10, 10]);
        assert_eq!(
            config.transformer_depth_output,
            vec![0, 0, 0, 2, 2, 2, 10, 10, 10]
        );
        assert_eq!(config.transformer_depth_middle, 10);
        assert!(config.use_linear_in_transformer);
    }

    #[test]
    fn narrow_unets_keep_family_and_name_their_width() {
        let sd1 = unet_only(&UnetSpec::sd15().narrow(32, 32, None));
        assert_eq!(
            (sd1.architecture, sd1.variant.as_str()),
            (Architecture::Sd1, "v1.x (non-standard width 32)")
        );
        let sd2 = unet_only(&UnetSpec::sd2().narrow(32, 32, None));
        assert_eq!(sd2.architecture, Architecture::Sd2);
        // Narrow SDXL: pooled width 32 + 6*256; refiner: pooled 32 + 5*256 with context 32.
        let xl = unet_only(&UnetSpec::sdxl().narrow(32, 64, Some(32 + 6 * 256)));
        assert_eq!(
            (xl.architecture, xl.variant.as_str()),
            (Architecture::Sdxl, "base (non-standard width 32)")
        );
        let refiner = unet_only(&UnetSpec::refiner().narrow(32, 32, Some(32 + 5 * 256)));
        assert_eq!(refiner.architecture, Architecture::SdxlRefiner);
    }

    struct Probe(Vec<f32>);

    impl TensorValues for Probe {
        fn f32_values(&self, name: &str) -> Option<Vec<f32>> {
            name.ends_with(V_PREDICTION_PROBE).then(|| self.0.clone())
        }
    }

    #[test]
    fn sd2_prediction_from_the_norm_bias_spread() {
        let tensors = UnetSpec::sd2()
            .ldm()
            .prefixed("model.diffusion_model.")
            .tensors();
        let path = Path::new("sd2.safetensors");
        let wide = Probe(
            (0..320)
                .map(|i| if i % 2 == 0 { 0.2 } else { -0.2 })
                .collect(),
        );
        let d = detect(&[FileTensors::new(path, &tensors).with_values(&wide)]).unwrap();
        assert_eq!(
            (d.variant.as_str(), d.prediction),
            ("2.x-768-v", Some(Prediction::V))
        );
        let narrow = Probe(vec![0.01; 320]);
        let d = detect(&[FileTensors::new(path, &tensors).with_values(&narrow)]).unwrap();
        assert_eq!(
            (d.variant.as_str(), d.prediction),
            ("2.x-512-base", Some(Prediction::Eps))
        );
        let d = detect(&[FileTensors::new(path, &tensors)]).unwrap();
        assert_eq!(d.prediction, Some(Prediction::Eps));
        assert!(
            d.notes.iter().any(|n| n.contains("not measured")),
            "{:?}",
            d.notes
        );
    }

    #[test]
    fn sdxl_markers_and_distillations() {
        let mut keys = UnetSpec::sdxl().ldm().prefixed("model.diffusion_model.");
        keys.add("v_pred", &[]);
        let d = detect_keys(&keys).unwrap();
        assert_eq!(d.prediction, Some(Prediction::V));
        assert_eq!(d.unclaimed_keys, 1);
        let ssd = UnetSpec {
            depth: vec![0, 2, 4],
            middle_depth: 0,
            ..UnetSpec::sdxl()
        };
        assert_eq!(unet_only(&ssd).variant, "SSD-1B");
        let vega = UnetSpec {
            depth: vec![0, 1, 2],
            middle_depth: 0,
            ..UnetSpec::sdxl()
        };
        assert_eq!(unet_only(&vega).variant, "Vega");
    }

    #[test]
    fn inpainting_and_unclip_and_upscaler() {
        let inpaint = unet_only(&UnetSpec {
            in_channels: 9,
            ..UnetSpec::sd15()
        });
        assert_eq!(inpaint.variant, "v1.x inpainting");
        let unclip = UnetSpec {
            adm: Some(2048),
            ..UnetSpec::sd2()
        }
        .ldm();
        assert!(matches!(
            detect_keys(&unclip),
            Err(DetectError::Unsupported { .. })
        ));
        let upscaler = UnetSpec {
            in_channels: 7,
            ..UnetSpec::sd2()
        }
        .ldm();
        assert!(matches!(
            detect_keys(&upscaler),
            Err(DetectError::Unsupported { .. })
        ));
    }

    #[test]
    fn full_sd15_checkpoint_with_junk() {
        let mut keys = UnetSpec::sd15().ldm().prefixed("model.diffusion_model.");
        keys.extend(VaeSpec::sd().ldm().prefixed("first_stage_model."));
        keys.extend(ClipSpec::l().hf().prefixed("cond_stage_model.transformer."));
        let mut junk = Keys::default();
        junk.add("model_ema.decay", &[]);
        junk.add("model_ema.num_updates", &[]);
        junk.add(
            "model_ema.diffusion_modelinput_blocks00weight",
            &[320, 4, 3, 3],
        );
        keys.extend(junk);
        let mut tensors = keys.tensors();
        tensors.push(position_ids("cond_stage_model.transformer."));
        tensors.push(tensor_dt("alphas_cumprod", &[1000], StorageDType::F32));
        let d = detect(&[FileTensors::new(Path::new("v1-5-pruned.ckpt"), &tensors)]).unwrap();
        assert_consistent(&d, &[&tensors]);
        assert_eq!(
            (d.architecture, d.variant.as_str()),
            (Architecture::Sd1, "v1.x")
        );
        let kinds: Vec<ComponentKind> = d.components.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            vec![
                ComponentKind::DiffusionModel,
                ComponentKind::ClipL,
                ComponentKind::Vae
            ]
        );
        assert_eq!(d.unclaimed_keys, 5);
        assert_eq!(
            d.component(ComponentKind::Vae).unwrap().prefix,
            "first_stage_model."
        );
        assert_eq!(
            d.component(ComponentKind::ClipL).unwrap().params,
            123_060_480
        );
        assert!(d.notes.is_empty(), "{:?}", d.notes);
    }

    #[test]
    fn full_sdxl_and_sd2_checkpoints_with_open_clip() {
        let mut keys = UnetSpec::sdxl().ldm().prefixed("model.diffusion_model.");
        keys.extend(VaeSpec::sd().ldm().prefixed("first_stage_model."));
        keys.extend(
            ClipSpec::l()
                .hf()
                .prefixed("conditioner.embedders.0.transformer."),
        );
        keys.extend(
            ClipSpec::g()
                .open_clip()
                .prefixed("conditioner.embedders.1.model."),
        );
        let d = detect_keys(&keys).unwrap();
        assert_consistent(&d, &[&keys.tensors()]);
        assert_eq!(d.architecture, Architecture::Sdxl);
        assert_eq!(d.components.len(), 4);
        assert_eq!(
            d.component(ComponentKind::DiffusionModel).unwrap().layout,
            Layout::Sgm
        );
        assert_eq!(
            d.component(ComponentKind::ClipG).unwrap().layout,
            Layout::OpenClip
        );
        assert_eq!(d.unclaimed_keys, 1, "logit_scale");

        let mut keys = UnetSpec::sd2().ldm().prefixed("model.diffusion_model.");
        keys.extend(
            ClipSpec::h()
                .open_clip()
                .prefixed("cond_stage_model.model."),
        );
        let d = detect_keys(&keys).unwrap();
        assert_eq!(d.architecture, Architecture::Sd2);
        assert!(d.component(ComponentKind::OpenClipH).is_some());
        assert!(
            d.notes.iter().any(|n| n.contains("no vae")),
            "{:?}",
            d.notes
        );

        let mut keys = UnetSpec::refiner().ldm().prefixed("model.diffusion_model.");
        keys.extend(
            ClipSpec::g()
                .open_clip()
                .prefixed("conditioner.embedders.0.model."),
        );
        let d = detect_keys(&keys).unwrap();
        assert_eq!(d.architecture, Architecture::SdxlRefiner);
        assert!(d.component(ComponentKind::ClipG).is_some());
    }
}
