//! [`detect`]: runs every registered detector over each state dict of a checkpoint and assembles
//! one [`Detection`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::detector::{
    location, Finding, FoundComponent, FoundDiffusion, COMPONENT_DETECTORS, DIFFUSION_DETECTORS,
};
use crate::input::FileTensors;
use crate::state_dict::StateDict;
use crate::{lora, summary, Architecture, ComponentKind, DetectError, Detection};

/// ComfyUI's `unet_prefix_from_state_dict` candidates; one wins with more than 5 keys.
const DIFFUSION_PREFIXES: &[&str] = &["model.diffusion_model.", "model.model.", "net."];
const MIN_PREFIX_KEYS: usize = 5;

/// The parts each architecture's full checkpoints carry besides the diffusion model.
fn expected_components(architecture: Architecture) -> &'static [ComponentKind] {
    use ComponentKind::*;
    match architecture {
        Architecture::Sd1 => &[ClipL, Vae],
        Architecture::Sd2 => &[OpenClipH, Vae],
        Architecture::Sdxl => &[ClipL, ClipG, Vae],
        Architecture::SdxlRefiner => &[ClipG, Vae],
        Architecture::Sd3 => &[ClipL, ClipG, T5xxl, Vae],
        Architecture::Flux => &[ClipL, T5xxl, Vae],
        _ => &[],
    }
}

/// Detects the architecture, variant, prediction type and components of a checkpoint made of
/// `files` (one file, or every weight file of a diffusers folder), with the key map of every
/// component.
///
/// Files sharing a [group](FileTensors::with_group) are detected as one state dict. Fails with
/// [`DetectError::Lora`] for adapter files, [`DetectError::Unrecognised`] when no supported model
/// is found (saying what was and was not recognised), [`DetectError::Unsupported`] for recognised
/// models Kiln cannot run.
pub fn detect(files: &[FileTensors<'_>]) -> Result<Detection, DetectError> {
    if files.is_empty() {
        return Err(DetectError::NoFiles);
    }
    let mut diffusion: Option<(FoundDiffusion, String)> = None;
    let mut components: Vec<(FoundComponent, String)> = Vec::new();
    let mut fragments = Vec::new();
    let mut summaries = Vec::new();
    let mut total_keys = 0usize;
    for (label, members) in groups(files) {
        let sd = StateDict::build(&label, files, &members)?;
        total_keys += sd.len();
        if let Some((style, lora_keys)) = lora::lora_style(&sd) {
            return Err(DetectError::Lora {
                file: label,
                style: style.to_string(),
                lora_keys,
                total_keys: sd.len(),
            });
        }
        if let Some((found, prefix)) = find_diffusion_model(&sd)? {
            let place = location(&sd, &prefix);
            if let Some((_, first)) = &diffusion {
                return Err(DetectError::DuplicateComponent {
                    kind: ComponentKind::DiffusionModel,
                    first: first.clone(),
                    second: place,
                });
            }
            diffusion = Some((found, place));
        }
        for detector in COMPONENT_DETECTORS {
            for finding in detector.find(&sd)? {
                match finding {
                    Finding::Component(found) => {
                        let place = location(&sd, &found.component.prefix);
                        components.push((found, place));
                    }
                    Finding::Fragment(text) => fragments.push(text),
                }
            }
        }
        summaries.push(summary::summarise(&sd));
    }
    components.sort_by_key(|(found, _)| found.component.kind);
    for pair in components.windows(2) {
        if pair[0].0.component.kind == pair[1].0.component.kind {
            return Err(DetectError::DuplicateComponent {
                kind: pair[0].0.component.kind,
                first: pair[0].1.clone(),
                second: pair[1].1.clone(),
            });
        }
    }
    assemble(
        diffusion, components, fragments, summaries, total_keys, files,
    )
}

/// Builds the detection once every state dict has been searched.
fn assemble(
    diffusion: Option<(FoundDiffusion, String)>,
    components: Vec<(FoundComponent, String)>,
    fragments: Vec<String>,
    summaries: Vec<String>,
    total_keys: usize,
    files: &[FileTensors<'_>],
) -> Result<Detection, DetectError> {
    let mut notes: Vec<String> = components
        .iter()
        .flat_map(|(c, _)| c.notes.iter().cloned())
        .collect();
    notes.extend(fragments.iter().map(|f| format!("ignored: {f}")));
    let (architecture, variant, prediction, diffusion_component) = match diffusion {
        Some((found, _)) => {
            notes.splice(0..0, found.notes);
            let present: BTreeSet<ComponentKind> =
                components.iter().map(|(c, _)| c.component.kind).collect();
            if present.is_empty() {
                notes
                    .push("diffusion model only: load its text encoders and VAE separately".into());
            } else {
                for kind in expected_components(found.architecture) {
                    if !present.contains(kind) {
                        notes.push(format!("no {kind} in this checkpoint: load one separately"));
                    }
                }
            }
            (
                found.architecture,
                found.variant,
                Some(found.prediction),
                Some(found.component),
            )
        }
        None if components.len() == 1 => {
            let found = &components[0].0;
            (found.standalone, found.variant.clone(), None, None)
        }
        None => {
            let mut recognised: Vec<String> = components
                .iter()
                .map(|(c, place)| format!("{} ({}) at {place}", c.component.kind, c.variant))
                .collect();
            if recognised.len() > 1 {
                recognised.push("but no diffusion model".into());
            }
            recognised.extend(fragments);
            return Err(DetectError::Unrecognised {
                file: checkpoint_label(files),
                recognised,
                unrecognised_summary: summaries.join(" | "),
            });
        }
    };
    let components: Vec<_> = diffusion_component
        .into_iter()
        .chain(components.into_iter().map(|(c, _)| c.component))
        .collect();
    let claimed: BTreeSet<(usize, &str)> = components
        .iter()
        .flat_map(|c| c.keys.values().flat_map(|s| s.tensors()))
        .collect();
    let unclaimed_keys = total_keys.saturating_sub(claimed.len());
    Ok(Detection {
        architecture,
        variant,
        prediction,
        components,
        unclaimed_keys,
        notes,
    })
}

/// The diffusion model of a state dict, trying each candidate prefix with every detector.
fn find_diffusion_model(
    sd: &StateDict<'_>,
) -> Result<Option<(FoundDiffusion, String)>, DetectError> {
    for prefix in diffusion_prefixes(sd) {
        if let Some(detector) = DIFFUSION_DETECTORS.iter().find(|d| d.matches(sd, prefix)) {
            return detector
                .detect(sd, prefix)
                .map(|found| Some((found, prefix.to_string())));
        }
    }
    Ok(None)
}

/// ComfyUI's winning prefix (when one has enough keys), then no prefix, then `model.`.
fn diffusion_prefixes(sd: &StateDict<'_>) -> Vec<&'static str> {
    let best = DIFFUSION_PREFIXES
        .iter()
        .map(|p| (*p, sd.with_prefix(p).count()))
        .filter(|(_, n)| *n > MIN_PREFIX_KEYS)
        .fold(None::<(&'static str, usize)>, |best, (p, n)| match best {
            Some((_, m)) if m >= n => best,
            _ => Some((p, n)),
        })
        .map(|(p, _)| p);
    best.into_iter().chain(["", "model."]).collect()
}

/// Files grouped into state dicts: files sharing a group label together, every other file alone,
/// in order of first appearance.
fn groups(files: &[FileTensors<'_>]) -> Vec<(PathBuf, Vec<usize>)> {
    let mut out: Vec<(PathBuf, Vec<usize>)> = Vec::new();
    for (index, file) in files.iter().enumerate() {
        match file.group {
            Some(group) => match out.iter_mut().find(|(label, _)| label == group) {
                Some((_, members)) => members.push(index),
                None => out.push((group.to_path_buf(), vec![index])),
            },
            None => out.push((file.path.to_path_buf(), vec![index])),
        }
    }
    out
}

/// One path naming the whole checkpoint: the file, or the folder shared by all its files.
fn checkpoint_label(files: &[FileTensors<'_>]) -> PathBuf {
    let paths: Vec<&Path> = files.iter().map(|f| f.group.unwrap_or(f.path)).collect();
    let Some(first) = paths.first() else {
        return PathBuf::new();
    };
    if paths.iter().all(|p| p == first) {
        return first.to_path_buf();
    }
    first
        .ancestors()
        .find(|a| paths.iter().all(|p| p.starts_with(a)))
        .map_or_else(|| first.to_path_buf(), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use kiln_weights::{StorageDType, TensorInfo};

    use super::*;
    use crate::testing::dit::{FluxSpec, MmditSpec};
    use crate::testing::encoders::{ClipSpec, T5Spec};
    use crate::testing::unet::UnetSpec;
    use crate::testing::vae::VaeSpec;
    use crate::testing::{assert_consistent, detect_keys, Keys};
    use crate::Prediction;

    #[test]
    fn sd3_all_in_one_checkpoint() {
        let mut keys = MmditSpec::sd35_large()
            .sai()
            .prefixed("model.diffusion_model.");
        keys.extend(VaeSpec::flux().ldm().prefixed("first_stage_model."));
        keys.extend(
            ClipSpec {
                projection: true,
                ..ClipSpec::l()
            }
            .hf()
            .prefixed("text_encoders.clip_l.transformer."),
        );
        keys.extend(
            ClipSpec::g()
                .hf()
                .prefixed("text_encoders.clip_g.transformer."),
        );
        keys.extend(
            T5Spec::xxl()
                .hf()
                .prefixed("text_encoders.t5xxl.transformer."),
        );
        let d = detect_keys(&keys).unwrap();
        assert_consistent(&d, &[&keys.tensors()]);
        assert_eq!(
            (d.architecture, d.variant.as_str()),
            (Architecture::Sd3, "3.5-large")
        );
        assert_eq!(d.prediction, Some(Prediction::Flow));
        let kinds: Vec<_> = d.components.iter().map(|c| c.kind).collect();
        use ComponentKind::*;
        assert_eq!(kinds, vec![DiffusionModel, ClipL, ClipG, T5xxl, Vae]);
        assert_eq!(
            d.component(T5xxl).unwrap().prefix,
            "text_encoders.t5xxl.transformer."
        );
        assert_eq!(d.component(Vae).unwrap().facts["latent_channels"], 16);
        assert_eq!(d.unclaimed_keys, 0);
        assert!(d.notes.is_empty(), "{:?}", d.notes);
    }

    #[test]
    fn flux_all_in_one_with_vae_prefix_notes_the_missing_clip() {
        let mut keys = FluxSpec::dev().bfl().prefixed("model.diffusion_model.");
        keys.extend(VaeSpec::flux().ldm().prefixed("vae."));
        keys.extend(
            T5Spec::xxl()
                .hf()
                .prefixed("text_encoders.t5xxl.transformer."),
        );
        let d = detect_keys(&keys).unwrap();
        assert_eq!(
            (d.architecture, d.variant.as_str()),
            (Architecture::Flux, "dev")
        );
        assert_eq!(d.component(ComponentKind::Vae).unwrap().prefix, "vae.");
        assert_eq!(
            d.notes,
            vec!["no clip_l in this checkpoint: load one separately".to_string()]
        );
    }

    #[test]
    fn standalone_diffusion_model_is_noted() {
        let d = detect_keys(&FluxSpec::schnell().bfl()).unwrap();
        assert!(
            d.notes[0].starts_with("diffusion model only"),
            "{:?}",
            d.notes
        );
        assert_eq!(
            d.component(ComponentKind::DiffusionModel).unwrap().prefix,
            ""
        );
    }

    #[test]
    fn unknown_files_are_summarised() {
        let mut keys = Keys::default();
        for i in 0..20 {
            keys.add(format!("backbone.layers.{i}.weight"), &[8, 8]);
        }
        keys.add("head.weight", &[8, 8]);
        match detect_keys(&keys).unwrap_err() {
            DetectError::Unrecognised {
                recognised,
                unrecognised_summary,
                ..
            } => {
                assert!(recognised.is_empty());
                assert_eq!(
                    unrecognised_summary,
                    "21 tensors; top prefixes: `backbone.` (20), `head.` (1)"
                );
            }
            other => panic!("{other}"),
        }
        let err = detect_keys(&Keys::default()).unwrap_err();
        assert!(err.to_string().contains("recognised: nothing"), "{err}");
        assert!(matches!(detect(&[]), Err(DetectError::NoFiles)));
    }

    #[test]
    fn text_encoders_without_a_diffusion_model_are_unrecognised() {
        let mut keys = ClipSpec::l()
            .hf()
            .prefixed("text_encoders.clip_l.transformer.");
        keys.extend(
            T5Spec::xxl()
                .hf()
                .prefixed("text_encoders.t5xxl.transformer."),
        );
        match detect_keys(&keys).unwrap_err() {
            DetectError::Unrecognised { recognised, .. } => {
                assert_eq!(recognised.len(), 3, "{recognised:?}");
                assert!(
                    recognised[0].starts_with("clip_l (ViT-L/14)"),
                    "{recognised:?}"
                );
                assert_eq!(recognised[2], "but no diffusion model");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn two_diffusion_models_are_a_conflict() {
        let a = UnetSpec::sd15().ldm().tensors();
        let b = FluxSpec::schnell().bfl().tensors();
        let files = [
            FileTensors::new(Path::new("a"), &a),
            FileTensors::new(Path::new("b"), &b),
        ];
        let err = detect(&files).unwrap_err();
        assert!(
            matches!(
                err,
                DetectError::DuplicateComponent {
                    kind: ComponentKind::DiffusionModel,
                    ..
                }
            ),
            "{err}"
        );
    }

    /// A diffusers pipeline as tensor lists: sharded transformer, two text encoders, VAE.
    #[test]
    fn diffusers_pipeline_groups_shards_and_indexes_files() {
        let transformer = FluxSpec::dev().diffusers().tensors();
        let (shard1, shard2) = transformer.split_at(transformer.len() / 2);
        let clip = ClipSpec::l().hf().tensors();
        let t5 = T5Spec::xxl().hf().tensors();
        let (t5a, t5b) = t5.split_at(100);
        let vae = VaeSpec::flux().diffusers().tensors();
        let config = serde_json::json!({"_class_name": "FluxTransformer2DModel"});
        let root = Path::new("FLUX.1-dev");
        let (tdir, cdir, tedir, vdir) = (
            root.join("transformer"),
            root.join("text_encoder"),
            root.join("text_encoder_2"),
            root.join("vae"),
        );
        let paths: Vec<PathBuf> = ["t1", "t2", "c", "e1", "e2", "v"]
            .iter()
            .map(|n| root.join(n))
            .collect();
        let lists: [&[TensorInfo]; 6] = [shard1, shard2, &clip, t5a, t5b, &vae];
        let dirs = [&tdir, &tdir, &cdir, &tedir, &tedir, &vdir];
        let files: Vec<FileTensors<'_>> = (0..6)
            .map(|i| {
                let f = FileTensors::new(&paths[i], lists[i]).with_group(dirs[i]);
                if i < 2 {
                    f.with_config(&config)
                } else {
                    f
                }
            })
            .collect();
        let d = detect(&files).unwrap();
        assert_consistent(&d, &lists);
        assert_eq!(
            (d.architecture, d.variant.as_str()),
            (Architecture::Flux, "dev")
        );
        assert_eq!(d.components.len(), 4);
        assert_eq!(d.unclaimed_keys, 0);
        let unet = d.component(ComponentKind::DiffusionModel).unwrap();
        let files_used: BTreeSet<usize> = unet
            .keys
            .values()
            .flat_map(|s| s.tensors().map(|(f, _)| f))
            .collect();
        assert_eq!(files_used, BTreeSet::from([0, 1]));
        let t5 = d.component(ComponentKind::T5xxl).unwrap();
        assert_eq!(t5.keys["shared.weight"].file, 3);
        assert!(t5.keys.values().any(|s| s.file == 4));
    }

    #[test]
    fn prefix_needs_more_than_five_keys() {
        let mut keys = FluxSpec::schnell().bfl();
        for i in 0..5 {
            keys.add(format!("model.diffusion_model.stray{i}"), &[1]);
        }
        let d = detect_keys(&keys).unwrap();
        assert_eq!(
            d.component(ComponentKind::DiffusionModel).unwrap().prefix,
            ""
        );
        assert_eq!(d.unclaimed_keys, 5);
        let mut fp8 = FluxSpec::schnell()
            .bfl()
            .prefixed("model.")
            .tensors_as(StorageDType::F8E5M2);
        fp8.truncate(fp8.len() - 1);
        let d = detect(&[FileTensors::new(Path::new("x"), &fp8)]).unwrap();
        let c = d.component(ComponentKind::DiffusionModel).unwrap();
        assert_eq!(
            (c.prefix.as_str(), c.dominant_dtype),
            ("model.", StorageDType::F8E5M2)
        );
    }

    #[test]
    fn checkpoint_label_is_the_common_folder() {
        let (a, b) = (Path::new("/m/x/unet/a"), Path::new("/m/x/vae/b"));
        let files = [FileTensors::new(a, &[]), FileTensors::new(b, &[])];
        assert_eq!(checkpoint_label(&files), PathBuf::from("/m/x"));
    }
}
