//! Diffusers layouts: a pipeline folder (`model_index.json`, `scheduler/`, per-component folders
//! with `config.json` and safetensors in diffusers/transformers naming, sharded with a
//! `*.safetensors.index.json` where the real repositories shard: Flux's transformer in 3, every
//! T5 encoder in 2), or a diffusers-named VAE alone in its folder.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::clip::{ClipConfig, ClipVariant};
use crate::diffusers_config as config_json;
use crate::layout::{
    flux_config, mmdit_config, plain_entries, unet_config, vae_variant, Entry, FilePlan, Format,
    Plan,
};
use crate::storage::Part;
use crate::t5::T5Config;
use crate::vae::{DiffusersAttentionNames, VaeConfig};
use crate::{CheckpointSpec, Family};

fn diffusers_metadata() -> Option<HashMap<String, String>> {
    Some(HashMap::from([("format".to_string(), "pt".to_string())]))
}

/// Splits entries into `shards` files of similar size plus the `*.safetensors.index.json` that
/// transformers/diffusers write.
fn sharded(
    folder: &str,
    stem: &str,
    entries: Vec<Entry>,
    shards: usize,
) -> (Vec<FilePlan>, (PathBuf, Value)) {
    let mut entries = entries;
    entries.sort_by(|a, b| a.def.name.cmp(&b.def.name));
    let total: usize = entries.iter().map(Entry::byte_len).sum();
    let target = total.div_ceil(shards.max(1)).max(1);
    let mut groups: Vec<Vec<Entry>> = vec![Vec::new()];
    let mut current = 0;
    for entry in entries {
        // Like transformers' `max_shard_size`: open a new shard when this tensor would overflow.
        if current > 0 && current + entry.byte_len() > target && groups.len() < shards {
            groups.push(Vec::new());
            current = 0;
        }
        current += entry.byte_len();
        if let Some(group) = groups.last_mut() {
            group.push(entry);
        }
    }
    let count = groups.len();
    let mut weight_map = BTreeMap::new();
    let mut files = Vec::new();
    for (index, group) in groups.into_iter().enumerate() {
        let file_name = format!("{stem}-{:05}-of-{count:05}.safetensors", index + 1);
        for entry in &group {
            weight_map.insert(entry.def.name.clone(), file_name.clone());
        }
        files.push(FilePlan {
            path: PathBuf::from(folder).join(&file_name),
            format: Format::Safetensors {
                metadata: diffusers_metadata(),
            },
            entries: group,
        });
    }
    let index = json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
    (
        files,
        (
            PathBuf::from(folder).join(format!("{stem}.safetensors.index.json")),
            index,
        ),
    )
}

fn single(folder: &str, file: &str, entries: Vec<Entry>) -> FilePlan {
    FilePlan {
        path: PathBuf::from(folder).join(file),
        format: Format::Safetensors {
            metadata: diffusers_metadata(),
        },
        entries,
    }
}

/// A diffusers pipeline folder (or a diffusers-named VAE in its own folder).
pub(crate) fn plan(spec: &CheckpointSpec) -> Plan {
    let size = spec.size;
    let storage = spec.storage;
    let family = spec.family;
    let root = spec.relative_path();
    let dtype = config_json::torch_dtype_name(storage);
    let mut files = Vec::new();
    let mut json_files: Vec<(PathBuf, Value)> = Vec::new();

    if family.is_vae() {
        let config = VaeConfig::new(vae_variant(family), size);
        let names = if family == Family::Vae4 {
            DiffusersAttentionNames::Legacy
        } else {
            DiffusersAttentionNames::Current
        };
        let folder = root.parent().map(PathBuf::from).unwrap_or_default();
        let entries = plain_entries(storage, Part::Vae, config.diffusers_tensors(names));
        let folder_name = folder.to_string_lossy().into_owned();
        files.push(single(
            &folder_name,
            "diffusion_pytorch_model.safetensors",
            entries,
        ));
        let owner = if family == Family::Vae4 {
            Family::Sd1
        } else {
            Family::FluxDev
        };
        json_files.push((folder.join("config.json"), config_json::vae(&config, owner)));
        return Plan {
            files,
            json: json_files,
            result: root,
        };
    }

    let root_name = root.to_string_lossy().into_owned();
    let sub = |name: &str| format!("{root_name}/{name}");
    json_files.push((
        root.join("model_index.json"),
        config_json::model_index(family),
    ));
    json_files.push((
        root.join("scheduler/scheduler_config.json"),
        config_json::scheduler(family),
    ));

    let clip_l = ClipConfig::new(ClipVariant::L, size);
    let clip_g = ClipConfig::new(ClipVariant::G, size);
    let t5 = T5Config::new(size);
    let vae = VaeConfig::new(vae_variant(family), size);
    let vae_names = if family == Family::Sd1 {
        DiffusersAttentionNames::Legacy
    } else {
        DiffusersAttentionNames::Current
    };
    files.push(single(
        &sub("vae"),
        "diffusion_pytorch_model.safetensors",
        plain_entries(storage, Part::Vae, vae.diffusers_tensors(vae_names)),
    ));
    json_files.push((root.join("vae/config.json"), config_json::vae(&vae, family)));

    if let Some(unet) = unet_config(family, size) {
        let entries = plain_entries(storage, Part::DiffusionModel, unet.diffusers_tensors());
        files.push(single(
            &sub("unet"),
            "diffusion_pytorch_model.safetensors",
            entries,
        ));
        json_files.push((
            root.join("unet/config.json"),
            config_json::unet(&unet, family),
        ));
        // SD1.5's text encoder was converted with a transformers version that saved position_ids.
        let position_ids = family == Family::Sd1;
        let text = plain_entries(storage, Part::Clip, clip_l.hf_tensors(false, position_ids));
        files.push(single(&sub("text_encoder"), "model.safetensors", text));
        json_files.push((
            root.join("text_encoder/config.json"),
            config_json::clip_text(&clip_l, false, dtype),
        ));
        if family == Family::Sdxl {
            let text = plain_entries(storage, Part::Clip, clip_g.hf_tensors(true, false));
            files.push(single(&sub("text_encoder_2"), "model.safetensors", text));
            json_files.push((
                root.join("text_encoder_2/config.json"),
                config_json::clip_text(&clip_g, true, dtype),
            ));
        }
    } else if let Some(mmdit) = mmdit_config(family, size) {
        let entries = plain_entries(storage, Part::DiffusionModel, mmdit.diffusers_tensors());
        files.push(single(
            &sub("transformer"),
            "diffusion_pytorch_model.safetensors",
            entries,
        ));
        json_files.push((
            root.join("transformer/config.json"),
            config_json::sd3_transformer(&mmdit),
        ));
        for (folder, clip) in [("text_encoder", &clip_l), ("text_encoder_2", &clip_g)] {
            let text = plain_entries(storage, Part::Clip, clip.hf_tensors(true, false));
            files.push(single(&sub(folder), "model.safetensors", text));
            json_files.push((
                root.join(folder).join("config.json"),
                config_json::clip_text(clip, true, dtype),
            ));
        }
        let (shards, index) = sharded(
            &sub("text_encoder_3"),
            "model",
            plain_entries(storage, Part::T5, t5.tensors()),
            2,
        );
        files.extend(shards);
        json_files.push(index);
        json_files.push((
            root.join("text_encoder_3/config.json"),
            config_json::t5(&t5, dtype),
        ));
    } else if let Some(flux) = flux_config(family, size) {
        let entries = plain_entries(storage, Part::DiffusionModel, flux.diffusers_tensors());
        let (shards, index) = sharded(&sub("transformer"), "diffusion_pytorch_model", entries, 3);
        files.extend(shards);
        json_files.push(index);
        json_files.push((
            root.join("transformer/config.json"),
            config_json::flux_transformer(&flux),
        ));
        let text = plain_entries(storage, Part::Clip, clip_l.hf_tensors(false, false));
        files.push(single(&sub("text_encoder"), "model.safetensors", text));
        json_files.push((
            root.join("text_encoder/config.json"),
            config_json::clip_text(&clip_l, false, dtype),
        ));
        let (shards, index) = sharded(
            &sub("text_encoder_2"),
            "model",
            plain_entries(storage, Part::T5, t5.tensors()),
            2,
        );
        files.extend(shards);
        json_files.push(index);
        json_files.push((
            root.join("text_encoder_2/config.json"),
            config_json::t5(&t5, dtype),
        ));
    }
    Plan {
        files,
        json: json_files,
        result: root,
    }
}
