//! Every checkpoint `kiln-test-checkpoints` writes (`all_specs()`: every family in every
//! packaging, storage dtype and GGUF quantisation it covers) is detected as what it is: the
//! architecture, variant, prediction and components; every key-map source exists; every tensor
//! that is not junk is claimed; internal names and shapes are the canonical ones; and for
//! full-precision files the values read through the key map are the canonical values.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kiln_detect::{Architecture, Checkpoint, ComponentKind, KeyTransform, Layout, Prediction};
use kiln_test_checkpoints as tc;
use tc::{CheckpointSpec, Family, GgufQuant, Packaging, Size, Storage};

/// Architecture, variant prefix and prediction a family must be detected as.
fn expected(family: Family) -> (Architecture, &'static str, Option<Prediction>) {
    use Architecture as A;
    match family {
        Family::Sd1 => (A::Sd1, "v1.x", Some(Prediction::Eps)),
        Family::Sd2 => (A::Sd2, "2.x-512-base", Some(Prediction::Eps)),
        Family::Sd2V => (A::Sd2, "2.x-768-v", Some(Prediction::V)),
        Family::Sdxl => (A::Sdxl, "base", Some(Prediction::Eps)),
        Family::SdxlRefiner => (A::SdxlRefiner, "refiner", Some(Prediction::Eps)),
        Family::Sd3Medium => (A::Sd3, "3-medium", Some(Prediction::Flow)),
        Family::Sd35Medium => (A::Sd3, "3.5-medium", Some(Prediction::Flow)),
        Family::Sd35Large => (A::Sd3, "3.5-large", Some(Prediction::Flow)),
        Family::FluxDev => (A::Flux, "dev", Some(Prediction::Flow)),
        Family::FluxSchnell => (A::Flux, "schnell", Some(Prediction::Flow)),
        Family::FluxFill => (A::Flux, "fill", Some(Prediction::Flow)),
        Family::ClipL | Family::ClipLWithProjection => (A::ClipL, "ViT-L/14", None),
        Family::ClipG => (A::ClipG, "ViT-bigG/14", None),
        Family::OpenClipH => (A::OpenClipH, "ViT-H/14", None),
        Family::T5Xxl => (A::T5xxl, "v1.1-xxl", None),
        Family::Vae4 => (A::Vae, "4-channel", None),
        Family::Vae16 => (A::Vae, "16-channel", None),
    }
}

/// The components a spec's files hold, in detection order.
fn expected_components(spec: &CheckpointSpec) -> Vec<ComponentKind> {
    use ComponentKind::*;
    let whole = matches!(
        spec.packaging,
        Packaging::SingleFile | Packaging::TorchCkpt | Packaging::Diffusers
    );
    match spec.family {
        Family::ClipL | Family::ClipLWithProjection => vec![ClipL],
        Family::ClipG => vec![ClipG],
        Family::OpenClipH => vec![OpenClipH],
        Family::T5Xxl => vec![T5xxl],
        Family::Vae4 | Family::Vae16 => vec![Vae],
        _ if !whole => vec![DiffusionModel],
        Family::Sd1 => vec![DiffusionModel, ClipL, Vae],
        Family::Sd2 | Family::Sd2V => vec![DiffusionModel, OpenClipH, Vae],
        Family::Sdxl => vec![DiffusionModel, ClipL, ClipG, Vae],
        Family::SdxlRefiner => vec![DiffusionModel, ClipG, Vae],
        Family::Sd3Medium | Family::Sd35Medium | Family::Sd35Large => {
            vec![DiffusionModel, ClipL, ClipG, T5xxl, Vae]
        }
        Family::FluxDev | Family::FluxSchnell | Family::FluxFill => {
            vec![DiffusionModel, ClipL, T5xxl, Vae]
        }
    }
}

fn reference_component(kind: ComponentKind) -> tc::Component {
    match kind {
        ComponentKind::DiffusionModel => tc::Component::DiffusionModel,
        ComponentKind::ClipL => tc::Component::ClipL,
        ComponentKind::ClipG => tc::Component::ClipG,
        ComponentKind::OpenClipH => tc::Component::OpenClipH,
        ComponentKind::T5xxl => tc::Component::T5Xxl,
        _ => tc::Component::Vae,
    }
}

/// Canonical internal name → shape of one component of a spec.
fn canonical_shapes(spec: &CheckpointSpec, kind: ComponentKind) -> BTreeMap<String, Vec<u64>> {
    let size = spec.size;
    let shapes = match kind {
        ComponentKind::DiffusionModel => match spec.family {
            Family::Sd1 => tc::UnetConfig::new(tc::UnetVariant::Sd1, size).tensor_shapes(),
            Family::Sd2 | Family::Sd2V => {
                tc::UnetConfig::new(tc::UnetVariant::Sd2, size).tensor_shapes()
            }
            Family::Sdxl => tc::UnetConfig::new(tc::UnetVariant::Sdxl, size).tensor_shapes(),
            Family::SdxlRefiner => {
                tc::UnetConfig::new(tc::UnetVariant::SdxlRefiner, size).tensor_shapes()
            }
            Family::Sd3Medium => {
                tc::MmditConfig::new(tc::MmditVariant::Sd3Medium, size).tensor_shapes()
            }
            Family::Sd35Medium => {
                tc::MmditConfig::new(tc::MmditVariant::Sd35Medium, size).tensor_shapes()
            }
            Family::Sd35Large => {
                tc::MmditConfig::new(tc::MmditVariant::Sd35Large, size).tensor_shapes()
            }
            Family::FluxDev => tc::FluxConfig::new(tc::FluxVariant::Dev, size).tensor_shapes(),
            Family::FluxSchnell => {
                tc::FluxConfig::new(tc::FluxVariant::Schnell, size).tensor_shapes()
            }
            Family::FluxFill => tc::FluxConfig::new(tc::FluxVariant::Fill, size).tensor_shapes(),
            _ => Vec::new(),
        },
        ComponentKind::ClipL => tc::ClipConfig::new(tc::ClipVariant::L, size).tensor_shapes(),
        ComponentKind::ClipG => tc::ClipConfig::new(tc::ClipVariant::G, size).tensor_shapes(),
        ComponentKind::OpenClipH => tc::ClipConfig::new(tc::ClipVariant::H, size).tensor_shapes(),
        ComponentKind::T5xxl => tc::T5Config::new(size).tensor_shapes(),
        _ => {
            let latent16 = matches!(
                spec.family,
                Family::Vae16
                    | Family::Sd3Medium
                    | Family::Sd35Medium
                    | Family::Sd35Large
                    | Family::FluxDev
                    | Family::FluxSchnell
                    | Family::FluxFill
            );
            let variant = if latent16 {
                tc::VaeVariant::Latent16
            } else {
                tc::VaeVariant::Latent4
            };
            tc::VaeConfig::new(variant, size).tensor_shapes()
        }
    };
    shapes
        .into_iter()
        .map(|(name, shape)| (name, shape.into_iter().map(|d| d as u64).collect()))
        .collect()
}

/// Tensors real checkpoints carry that no model loads: noise-schedule buffers at the top level,
/// EMA bookkeeping, transformers' `position_ids`, CLIP's `logit_scale`.
fn is_junk(name: &str) -> bool {
    !name.contains('.')
        || name.starts_with("model_ema.")
        || name.ends_with("position_ids")
        || name.ends_with("logit_scale")
}

/// Scaled-fp8 bookkeeping lives in the key map under its own names, outside the canonical set.
fn is_scale_bookkeeping(internal: &str) -> bool {
    internal == "scaled_fp8"
        || internal.ends_with(".scale_weight")
        || internal.ends_with(".scale_input")
}

/// Relative tolerance of a storage dtype's rounding (values are compared to the f32 originals).
fn tolerance(storage: Storage) -> Option<f32> {
    match storage {
        Storage::F32 => Some(1e-6),
        Storage::F16 => Some(1e-3),
        Storage::BF16 => Some(8e-3),
        _ => None,
    }
}

fn check(spec: &CheckpointSpec, path: &Path) -> Result<(), String> {
    let checkpoint = Checkpoint::open(path).map_err(|e| format!("open: {e}"))?;
    let detection = checkpoint.detection();
    let (architecture, variant, prediction) = expected(spec.family);
    if detection.architecture != architecture || !detection.variant.starts_with(variant) {
        return Err(format!(
            "detected {} `{}`",
            detection.architecture, detection.variant
        ));
    }
    if spec.size == Size::Tiny && !detection.variant.contains("non-standard width") {
        return Err(format!("tiny widths not named in `{}`", detection.variant));
    }
    if detection.prediction != prediction {
        return Err(format!(
            "prediction {:?} (notes {:?})",
            detection.prediction, detection.notes
        ));
    }
    let kinds: Vec<ComponentKind> = detection.components.iter().map(|c| c.kind).collect();
    if kinds != expected_components(spec) {
        return Err(format!("components {kinds:?}"));
    }

    let mut claimed = BTreeSet::new();
    for component in &detection.components {
        let kind = component.kind;
        let canonical = canonical_shapes(spec, kind);
        for (position, (internal, source)) in component.keys.iter().enumerate() {
            for (file, name) in source.tensors() {
                let exists = checkpoint
                    .files()
                    .get(file)
                    .is_some_and(|f| f.get(name).is_some());
                if !exists {
                    return Err(format!("{internal} → missing {file}:{name}"));
                }
                claimed.insert((file, name.to_string()));
            }
            if is_scale_bookkeeping(internal) {
                continue;
            }
            let Some(canonical_shape) = canonical.get(internal) else {
                return Err(format!("{kind}: `{internal}` is not a canonical name"));
            };
            // Values check renames and transforms: every tensor of a renamed layout (diffusers,
            // open_clip); a sample elsewhere, where names are kept and reading every tensor would
            // test the file readers rather than detection.
            let renamed = matches!(
                component.layout,
                Layout::Diffusers | Layout::OpenClip | Layout::LlamaCpp
            );
            if !renamed && source.transform == KeyTransform::Identity && position % 64 != 0 {
                continue;
            }
            let (shape, values) = checkpoint
                .read_f32(kind, internal)
                .map_err(|e| format!("{kind}: read `{internal}`: {e}"))?;
            if &shape != canonical_shape {
                return Err(format!(
                    "{kind}: `{internal}` shape {shape:?} != {canonical_shape:?}"
                ));
            }
            let Some(tol) = tolerance(spec.storage).filter(|_| component.scaled_fp8.is_none())
            else {
                continue;
            };
            let reference = tc::reference_tensor(spec, reference_component(kind), internal)
                .ok_or_else(|| format!("{kind}: no reference for `{internal}`"))?;
            let off = values
                .iter()
                .zip(&reference.values)
                .position(|(a, b)| (a - b).abs() > tol * b.abs().max(1e-2));
            if let Some(i) = off {
                return Err(format!(
                    "{kind}: `{internal}`[{i}] = {} != {}",
                    values[i], reference.values[i]
                ));
            }
        }
        let missing: Vec<&String> = canonical
            .keys()
            .filter(|name| !component.keys.contains_key(*name) && *name != "text_projection.weight")
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{kind}: canonical tensors missing from the key map: {missing:?}"
            ));
        }
    }

    let mut unclaimed = Vec::new();
    for (index, file) in checkpoint.files().iter().enumerate() {
        for tensor in file.tensors() {
            if !claimed.contains(&(index, tensor.name.clone())) {
                unclaimed.push(tensor.name.clone());
            }
        }
    }
    if let Some(name) = unclaimed.iter().find(|n| !is_junk(n)) {
        return Err(format!("`{name}` is not claimed"));
    }
    if unclaimed.len() != detection.unclaimed_keys {
        return Err(format!(
            "unclaimed_keys {} != {}",
            detection.unclaimed_keys,
            unclaimed.len()
        ));
    }
    Ok(())
}

#[test]
fn every_test_checkpoint_is_detected_and_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let specs = tc::all_specs();
    assert!(
        specs.len() > 50,
        "coverage matrix shrank to {}",
        specs.len()
    );
    let mut failures = Vec::new();
    for spec in &specs {
        let path = tc::write(spec, dir.path()).unwrap();
        if let Err(reason) = check(spec, &path) {
            failures.push(format!("{spec}: {reason}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} specs failed:\n{}",
        failures.len(),
        specs.len(),
        failures.join("\n")
    );
}

/// Largest `|got − want|` over the largest `|want|`.
fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    let peak = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / peak
}

/// T5-XXL in llama.cpp GGUF naming (city96's `t5-v1_1-xxl-encoder-*.gguf`), every quantisation.
/// These specs are not in `all_specs()`, whose GGUF entries other crates load as diffusion
/// models, so they are checked here: the same checks, plus the layout and the values read
/// through the key map against the canonical ones within the quantisation's error.
#[test]
fn t5_gguf_encoders_are_detected_and_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for quant in GgufQuant::ALL {
        let spec = CheckpointSpec::new(Family::T5Xxl, Storage::Gguf(quant), Packaging::Gguf);
        let path = tc::write(&spec, dir.path()).unwrap();
        if let Err(reason) = check(&spec, &path) {
            failures.push(format!("{spec}: {reason}"));
            continue;
        }
        let checkpoint = Checkpoint::open(&path).unwrap();
        let detection = checkpoint.detection();
        let t5 = detection.component(ComponentKind::T5xxl).unwrap();
        if t5.layout != Layout::LlamaCpp || !detection.notes.is_empty() {
            failures.push(format!(
                "{spec}: {:?}, notes {:?}",
                t5.layout, detection.notes
            ));
        }
        if !matches!(t5.dominant_dtype, kiln_weights::StorageDType::Gguf(_)) {
            failures.push(format!("{spec}: dominant {}", t5.dominant_dtype));
        }
        let limit = match quant {
            GgufQuant::F16 => 1e-3,
            GgufQuant::Q8_0 => 0.02,
            _ => 0.2,
        };
        for internal in [
            "shared.weight",
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            "encoder.block.11.layer.0.SelfAttention.k.weight",
            "encoder.block.23.layer.1.DenseReluDense.wo.weight",
            "encoder.final_layer_norm.weight",
        ] {
            let (_, values) = checkpoint.read_f32(ComponentKind::T5xxl, internal).unwrap();
            let reference = tc::reference_tensor(&spec, tc::Component::T5Xxl, internal).unwrap();
            let error = relative_error(&values, &reference.values);
            if error >= limit {
                failures.push(format!("{spec}: `{internal}` relative error {error}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
