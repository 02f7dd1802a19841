//! LoRA files merged into loaded weights, as ComfyUI's `load_lora_for_models` does for plain
//! LoRA (`lora_up`/`lora_down`, PEFT `lora_B`/`lora_A`, diffusers `lora.up`/`lora.down`, with
//! optional `alpha`): `W' = W + strength · (up @ down) · alpha / rank`, for linear and 1×1 /
//! 3×3 convolution weights, computed in f32 and stored back in the weight's held dtype.
//!
//! Keys are matched the way ComfyUI's `model_lora_keys_unet`/`model_lora_keys_clip` build
//! them: for every weight of the model, its kohya name (`lora_unet_` + the LDM or diffusers
//! module path with `_`, `lora_te_`/`lora_te1_`/`lora_te2_` + the transformers path) and its
//! dotted PEFT/diffusers names (`unet.…`, `diffusion_model.…`, `text_encoder.…`,
//! `text_encoder_2.…`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use kiln_detect::{Architecture, ComponentKind};
use kiln_runtime::WeightStore;
use kiln_weights::WeightFile;

use crate::error::NodesError;

/// One low-rank pair from the file.
struct LoraPair {
    up: String,
    down: String,
    alpha: Option<String>,
}

/// Suffix pairs `(up, down)` of the supported layouts.
const PAIR_SUFFIXES: [(&str, &str); 4] = [
    (".lora_up.weight", ".lora_down.weight"),
    (".lora_B.weight", ".lora_A.weight"),
    (".lora.up.weight", ".lora.down.weight"),
    // diffusers' attention-processor LoRAs: `…attn1.processor.to_q_lora.up.weight`.
    ("_lora.up.weight", "_lora.down.weight"),
];

/// Every low-rank pair of the file by module stem.
fn pairs(file: &WeightFile) -> BTreeMap<String, LoraPair> {
    let mut found = BTreeMap::new();
    for info in file.tensors() {
        for (up, down) in PAIR_SUFFIXES {
            if let Some(stem) = info.name.strip_suffix(up) {
                let down_name = format!("{stem}{down}");
                if file.get(&down_name).is_some() {
                    let alpha = format!("{stem}.alpha");
                    found.insert(
                        stem.to_owned(),
                        LoraPair {
                            up: info.name.clone(),
                            down: down_name,
                            alpha: file.get(&alpha).is_some().then_some(alpha),
                        },
                    );
                }
            }
        }
    }
    found
}

/// diffusers' name for a resnet sub-layer of the LDM UNet.
fn resnet_part(rest: &str) -> String {
    for (ldm, diffusers) in [
        ("in_layers.0", "norm1"),
        ("in_layers.2", "conv1"),
        ("emb_layers.1", "time_emb_proj"),
        ("out_layers.0", "norm2"),
        ("out_layers.3", "conv2"),
        ("skip_connection", "conv_shortcut"),
    ] {
        if let Some(tail) = rest.strip_prefix(ldm) {
            return format!("{diffusers}{tail}");
        }
    }
    rest.to_owned()
}

/// The diffusers module path of an LDM UNet module (SD1/SD2/SDXL, two layers per block), the
/// inverse of ComfyUI's `unet_to_diffusers`.
pub(crate) fn ldm_to_diffusers(module: &str) -> Option<String> {
    let fixed = [
        ("input_blocks.0.0", "conv_in"),
        ("time_embed.0", "time_embedding.linear_1"),
        ("time_embed.2", "time_embedding.linear_2"),
        ("label_emb.0.0", "add_embedding.linear_1"),
        ("label_emb.0.2", "add_embedding.linear_2"),
        ("out.0", "conv_norm_out"),
        ("out.2", "conv_out"),
    ];
    for (ldm, diffusers) in fixed {
        if module == ldm {
            return Some(diffusers.to_owned());
        }
    }
    let mut parts = module.splitn(4, '.');
    let (block, index) = (parts.next()?, parts.next()?);
    let kind = parts.next().unwrap_or("");
    let rest = parts.next().unwrap_or("");
    let n: usize = index.parse().ok()?;
    // `middle_block.N.rest` has no sub-index; the other blocks do.
    let k: usize = if block == "middle_block" {
        0
    } else {
        kind.parse().ok()?
    };
    let join = |head: String, tail: &str| {
        if tail.is_empty() {
            head
        } else {
            format!("{head}.{tail}")
        }
    };
    match block {
        "input_blocks" if n >= 1 => {
            let (i, j) = ((n - 1) / 3, (n - 1) % 3);
            match (j, k) {
                (2, 0) => Some(format!("down_blocks.{i}.downsamplers.0.conv")),
                (_, 0) => Some(join(
                    format!("down_blocks.{i}.resnets.{j}"),
                    &resnet_part(rest),
                )),
                (_, 1) => Some(join(format!("down_blocks.{i}.attentions.{j}"), rest)),
                _ => None,
            }
        }
        "middle_block" => match index {
            "0" | "2" => {
                let resnet = if index == "0" { 0 } else { 1 };
                let rest = module.splitn(3, '.').nth(2).unwrap_or("");
                Some(join(
                    format!("mid_block.resnets.{resnet}"),
                    &resnet_part(rest),
                ))
            }
            "1" => {
                let rest = module.splitn(3, '.').nth(2).unwrap_or("");
                Some(join("mid_block.attentions.0".to_owned(), rest))
            }
            _ => None,
        },
        "output_blocks" => {
            let (i, j) = (n / 3, n % 3);
            if k == 0 {
                Some(join(
                    format!("up_blocks.{i}.resnets.{j}"),
                    &resnet_part(rest),
                ))
            } else if rest.starts_with("conv") {
                Some(format!("up_blocks.{i}.upsamplers.0.conv"))
            } else if k == 1 {
                Some(join(format!("up_blocks.{i}.attentions.{j}"), rest))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Which model part a LoRA targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LoraTarget {
    /// The diffusion model.
    Unet,
    /// A text encoder.
    TextEncoder(ComponentKind),
}

/// LoRA module stems → (target, internal module path) for a model's weight names.
pub(crate) fn key_table(
    architecture: Architecture,
    unet: Option<&WeightStore>,
    encoders: &[(ComponentKind, &WeightStore)],
) -> HashMap<String, (LoraTarget, String)> {
    let mut table = HashMap::new();
    let modules = |store: &WeightStore| -> Vec<String> {
        store
            .names()
            .filter_map(|name| name.strip_suffix(".weight").map(str::to_owned))
            .collect()
    };
    if let Some(store) = unet {
        for module in modules(store) {
            let target = (LoraTarget::Unet, module.clone());
            table.insert(
                format!("lora_unet_{}", module.replace('.', "_")),
                target.clone(),
            );
            table.insert(format!("diffusion_model.{module}"), target.clone());
            table.insert(format!("model.diffusion_model.{module}"), target.clone());
            if let Some(diffusers) = ldm_to_diffusers(&module) {
                table.insert(
                    format!("lora_unet_{}", diffusers.replace('.', "_")),
                    target.clone(),
                );
                // ComfyUI's diffusers aliases (`model_lora_keys_unet`): attention projections
                // under `processor.`, with or without `unet.`; plain `unet.<path>` (PEFT) keys
                // are not among them, so they are not applied, as in ComfyUI.
                let mut processor = diffusers.replace(".to_", ".processor.to_");
                if let Some(stripped) = processor.strip_suffix(".to_out.0") {
                    processor = format!("{stripped}.to_out");
                }
                table.insert(processor.clone(), target.clone());
                table.insert(format!("unet.{processor}"), target.clone());
            }
        }
    }
    let two_encoders = architecture == Architecture::Sdxl;
    for &(kind, store) in encoders {
        let (kohya, dotted) = match (two_encoders, kind) {
            (true, ComponentKind::ClipL) => ("lora_te1_", "text_encoder."),
            (true, _) => ("lora_te2_", "text_encoder_2."),
            (false, ComponentKind::ClipG) if architecture == Architecture::SdxlRefiner => {
                ("lora_te2_", "text_encoder_2.")
            }
            (false, _) => ("lora_te_", "text_encoder."),
        };
        for module in modules(store) {
            let target = (LoraTarget::TextEncoder(kind), module.clone());
            table.insert(
                format!("{kohya}{}", module.replace('.', "_")),
                target.clone(),
            );
            table.insert(format!("{dotted}{module}"), target);
        }
    }
    table
}

/// One LoRA file opened for merging.
pub(crate) struct LoraFile {
    file: WeightFile,
    pairs: BTreeMap<String, LoraPair>,
}

impl LoraFile {
    /// Opens `path` and finds its low-rank pairs.
    pub(crate) fn open(path: &Path, node: &'static str) -> Result<Self, NodesError> {
        let file = WeightFile::open(path).map_err(|e| NodesError::Lora {
            node,
            file: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let pairs = pairs(&file);
        if pairs.is_empty() {
            return Err(NodesError::Lora {
                node,
                file: path.to_path_buf(),
                reason: "no LoRA weights (lora_up/lora_down, lora_A/lora_B) in the file".to_owned(),
            });
        }
        Ok(LoraFile { file, pairs })
    }

    /// The f32 delta `(up @ down) · alpha / rank` for a weight of `shape`.
    fn delta(&self, pair: &LoraPair, shape: &[usize]) -> Result<Tensor, String> {
        let load = |name: &str| {
            self.file
                .load(name, DType::F32, &Device::Cpu)
                .map_err(|e| format!("{name}: {e}"))
        };
        let up = load(&pair.up)?;
        let down = load(&pair.down)?;
        let rank = down.dims().first().copied().unwrap_or(0);
        if rank == 0 {
            return Err(format!("{}: empty rank", pair.down));
        }
        let scale = match &pair.alpha {
            Some(alpha) => {
                let value = load(alpha)?
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(|e| e.to_string())?;
                f64::from(*value.first().unwrap_or(&(rank as f32))) / rank as f64
            }
            None => 1.0,
        };
        let up2 = up.flatten_from(1).map_err(|e| e.to_string())?;
        let down2 = down.flatten_from(1).map_err(|e| e.to_string())?;
        let product = up2
            .matmul(&down2)
            .map_err(|e| format!("{}: {e}", pair.up))?;
        if product.elem_count() != shape.iter().product::<usize>() {
            return Err(format!(
                "{} × {} gives {:?}, the weight is {shape:?}",
                pair.up,
                pair.down,
                product.dims()
            ));
        }
        product
            .reshape(shape)
            .and_then(|t| t.affine(scale, 0.0))
            .map_err(|e| e.to_string())
    }
}

/// The stores with the LoRA merged: per target, a new store (unchanged targets are absent).
/// `strengths` gives the strength per target; targets with strength 0 are skipped. Fails when
/// no key of the file matches any weight of the targets with a non-zero strength.
pub(crate) fn merge(
    lora: &LoraFile,
    path: &Path,
    node: &'static str,
    table: &HashMap<String, (LoraTarget, String)>,
    stores: &HashMap<LoraTarget, Arc<WeightStore>>,
    strength: impl Fn(LoraTarget) -> f64,
) -> Result<HashMap<LoraTarget, WeightStore>, NodesError> {
    let lora_error = |reason: String| NodesError::Lora {
        node,
        file: path.to_path_buf(),
        reason,
    };
    let mut replacements: HashMap<LoraTarget, BTreeMap<String, Tensor>> = HashMap::new();
    let mut matched = 0usize;
    for (stem, pair) in &lora.pairs {
        let Some((target, module)) = table.get(stem) else {
            continue;
        };
        let factor = strength(*target);
        let Some(store) = stores.get(target) else {
            continue;
        };
        matched += 1;
        if factor == 0.0 {
            continue;
        }
        let name = format!("{module}.weight");
        let held = store.held(&name).map_err(|e| lora_error(e.to_string()))?;
        let shape = held.shape().dims().to_vec();
        let delta = lora.delta(pair, &shape).map_err(lora_error)?;
        let base = held
            .widen(DType::F32)
            .map_err(|e| lora_error(e.to_string()))?
            .to_device(&Device::Cpu)
            .map_err(|e| lora_error(e.to_string()))?;
        let merged = base
            .add(
                &delta
                    .affine(factor, 0.0)
                    .map_err(|e| lora_error(e.to_string()))?,
            )
            .map_err(|e| lora_error(e.to_string()))?;
        replacements
            .entry(*target)
            .or_default()
            .insert(name, merged);
    }
    if matched == 0 {
        return Err(lora_error(format!(
            "none of its {} LoRA weights match this model (a LoRA for another architecture?)",
            lora.pairs.len()
        )));
    }
    let skipped = lora
        .pairs
        .keys()
        .filter(|stem| !table.contains_key(*stem))
        .count();
    if skipped > 0 {
        tracing::warn!(
            "{node}: {skipped} LoRA weights of {} match no weight",
            path.display()
        );
    }
    replacements
        .into_iter()
        .map(|(target, tensors)| {
            let store = stores
                .get(&target)
                .ok_or_else(|| lora_error("target store missing".to_owned()))?;
            let patched = store
                .with_replaced(tensors)
                .map_err(|e| lora_error(e.to_string()))?;
            Ok((target, patched))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldm_names_map_to_diffusers_like_comfyui() {
        for (ldm, diffusers) in [
            ("input_blocks.0.0", "conv_in"),
            (
                "input_blocks.1.0.in_layers.2",
                "down_blocks.0.resnets.0.conv1",
            ),
            (
                "input_blocks.2.1.proj_in",
                "down_blocks.0.attentions.1.proj_in",
            ),
            ("input_blocks.3.0.op", "down_blocks.0.downsamplers.0.conv"),
            (
                "input_blocks.4.1.transformer_blocks.0.attn2.to_k",
                "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
            ),
            (
                "input_blocks.4.0.skip_connection",
                "down_blocks.1.resnets.0.conv_shortcut",
            ),
            (
                "middle_block.0.emb_layers.1",
                "mid_block.resnets.0.time_emb_proj",
            ),
            ("middle_block.1.proj_out", "mid_block.attentions.0.proj_out"),
            ("middle_block.2.out_layers.3", "mid_block.resnets.1.conv2"),
            ("output_blocks.2.1.conv", "up_blocks.0.upsamplers.0.conv"),
            ("output_blocks.5.2.conv", "up_blocks.1.upsamplers.0.conv"),
            (
                "output_blocks.4.1.proj_in",
                "up_blocks.1.attentions.1.proj_in",
            ),
            (
                "output_blocks.11.0.out_layers.0",
                "up_blocks.3.resnets.2.norm2",
            ),
            ("time_embed.2", "time_embedding.linear_2"),
            ("label_emb.0.0", "add_embedding.linear_1"),
            ("out.2", "conv_out"),
        ] {
            assert_eq!(ldm_to_diffusers(ldm).as_deref(), Some(diffusers), "{ldm}");
        }
    }
}
