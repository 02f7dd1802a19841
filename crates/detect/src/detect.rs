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
    assemble(diffusion, components, fragments, summaries, total_keys, files)
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
    let mut notes: Vec<String> = components.iter().flat_map(|(c, _)| c.notes.iter().cloned()).collect();
    notes.extend(fragments.iter().map(|f| format!("ignored: {f}")));
    let (architecture, variant, prediction, diffusion_component) = match diffusion {
        Some((found, _)) => {
            notes.splice(0..0, found.notes);
            let present: BTreeSet<ComponentKind> = components.iter().map(|(c, _)| c.component.kind).collect();
            if present.is_empty() {
                notes.push("diffusion model only: load its text encoders and VAE separately".into());
            } else {
                for kind in expected_components(found.architecture) {
                    if !present.contains(kind) {
                        notes.push(format!("no {kind} in this checkpoint: load one separately"));
                    }
                }
            }
            (found.architecture, found.variant, Some(found.prediction), Some(found.component))
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
    let components: Vec<_> =
        diffusion_component.into_iter().chain(components.into_iter().map(|(c, _)| c.component)).collect();
    let claimed: BTreeSet<(usize, &str)> =
        components.iter().flat_map(|c| c.keys.values().flat_map(|s| s.tensors())).collect();
    let unclaimed_keys = total_keys.saturating_sub(claimed.len());
    Ok(Detection { architecture, variant, prediction, components, unclaimed_keys, notes })
}

/// The diffusion model of a state dict, trying each candidate prefix with every detector.
fn find_diffusion_model(sd: &StateDict<'_>) -> Result<Option<(FoundDiffusion, String)>, DetectError> {
    for prefix in diffusion_prefixes(sd) {
        if let Some(detector) = DIFFUSION_DETECTORS.iter().find(|d| d.matches(sd, prefix)) {
            return detector.detect(sd, prefix).map(|found| Some((found, prefix.to_string())));
        }
    }
    Ok(None)
}

/// ComfyUI's winning prefix (when one has enough keys), then no prefix, then `model.`.
fn diffusion_prefixes(sd: &StateDict<'_>) -> Vec<&'static str> {
    let best = DIFFUSION_PREFIXES
        .iter()
        .map(|p| (*p, sd.with_prefix(p).take(MIN_PREFIX_KEYS + 1).count()))
        .filter(|(_, n)| *n > MIN_PREFIX_KEYS)
        .max_by_key(|(_, n)| *n)
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
    let Some(first) = paths.first() else { return PathBuf::new() };
    if paths.iter().all(|p| p == first) {
        return first.to_path_buf();
    }
    first
        .ancestors()
        .find(|a| paths.iter().all(|p| p.starts_with(a)))
        .map_or_else(|| first.to_path_buf(), Path::to_path_buf)
}
