//! `LoraLoader` ("Load LoRA"): merges a LoRA of the `loras` folder into the diffusion model
//! and the text encoders, each with its own strength (both 0: inputs pass through).

use std::collections::HashMap;
use std::sync::Arc;

use kiln_graph::{
    ComboInput, ExecutionContext, FloatInput, InputSpec, Node, NodeError, NodeInputs, NodeOutput,
    NodeSchema, OutputSpec,
};

use crate::error::NodesError;
use crate::lora::{key_table, merge, LoraFile, LoraTarget};
use crate::node_util::object;
use crate::nodes::checkpoint_loader_simple::model_path;
use crate::releasable_store::ReleasableStore;
use crate::services::NodeServices;
use crate::types::{Clip, Model};

/// `LoraLoader`.
pub struct LoraLoader;

/// The strength input (`-100..100`).
pub(crate) fn strength_input() -> FloatInput {
    FloatInput::new(1.0, -100.0, 100.0).step(0.01)
}

/// Merges the LoRA named by `lora_name` into `model` and (when given) `clip`.
pub(crate) fn apply_lora(
    services: &NodeServices,
    inputs: &NodeInputs,
    node: &'static str,
    model: &Model,
    clip: Option<&Clip>,
    strength_model: f64,
    strength_clip: f64,
) -> Result<(Model, Option<Clip>), NodeError> {
    let path = model_path(services, inputs, "loras", "lora_name")?;
    let lora = LoraFile::open(&path, node)?;
    // Released encoders are loaded again: the merge reads their weights.
    let encoder_stores = clip
        .map(|c| {
            c.encoders
                .iter()
                .map(|e| Ok((e.kind, e.weights()?)))
                .collect::<Result<Vec<_>, NodesError>>()
        })
        .transpose()?
        .unwrap_or_default();
    let encoders: Vec<_> = encoder_stores
        .iter()
        .map(|(kind, store)| (*kind, store.as_ref()))
        .collect();
    let table = key_table(model.architecture, Some(&model.weights), &encoders);
    let mut stores: HashMap<LoraTarget, Arc<kiln_runtime::WeightStore>> = HashMap::new();
    stores.insert(LoraTarget::Unet, model.weights.clone());
    for (kind, store) in &encoder_stores {
        stores.insert(LoraTarget::TextEncoder(*kind), store.clone());
    }
    let strength = |target| match target {
        LoraTarget::Unet => strength_model,
        LoraTarget::TextEncoder(_) => strength_clip,
    };
    let mut merged = merge(&lora, &path, node, &table, &stores, strength)?;
    let mut model = model.clone();
    if let Some(store) = merged.remove(&LoraTarget::Unet) {
        model.weights = Arc::new(store);
        model.loras.push((path.clone(), strength_model));
    }
    let clip = clip.map(|clip| {
        let mut clip = clip.clone();
        let mut changed = false;
        for encoder in &mut clip.encoders {
            if let Some(store) = merged.remove(&LoraTarget::TextEncoder(encoder.kind)) {
                // Reloading merged weights would mean merging again, so they stay in memory
                // while the CLIP is referenced and are never released before sampling.
                let label = format!("{} of {} + LoRA", encoder.kind, encoder.source.display());
                encoder.store = Arc::new(ReleasableStore::fixed(label, Arc::new(store)));
                changed = true;
            }
        }
        if changed {
            clip.loras.push((path.clone(), strength_clip));
        }
        clip
    });
    Ok((model, clip))
}

impl Node for LoraLoader {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("LoraLoader")
            .display_name("Load LoRA")
            .category("loaders")
            .description("LoRAs are used to modify diffusion and CLIP models, altering the way in which latents are denoised such as applying styles. Multiple LoRA nodes can be linked together.")
            .input(InputSpec::required("model", "MODEL").tooltip("The diffusion model the LoRA will be applied to."))
            .input(InputSpec::required("clip", "CLIP").tooltip("The CLIP model the LoRA will be applied to."))
            .input(InputSpec::required("lora_name", ComboInput::dynamic("loras")).tooltip("The name of the LoRA."))
            .input(InputSpec::required("strength_model", strength_input()).tooltip("How strongly to modify the diffusion model. This value can be negative."))
            .input(InputSpec::required("strength_clip", strength_input()).tooltip("How strongly to modify the CLIP model. This value can be negative."))
            .output(OutputSpec::new("MODEL").tooltip("The modified diffusion model."))
            .output(OutputSpec::new("CLIP").tooltip("The modified CLIP model."))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let model = object::<Model>(inputs, "model")?;
        let clip = object::<Clip>(inputs, "clip")?;
        let strength_model = inputs.float("strength_model")?;
        let strength_clip = inputs.float("strength_clip")?;
        if strength_model == 0.0 && strength_clip == 0.0 {
            return Ok(NodeOutput::new(vec![
                model.as_ref().clone().into_value(),
                clip.as_ref().clone().into_value(),
            ]));
        }
        let services = NodeServices::of(ctx)?;
        let (model, clip) = apply_lora(
            services,
            inputs,
            "LoraLoader",
            &model,
            Some(&clip),
            strength_model,
            strength_clip,
        )?;
        let clip = clip.ok_or_else(|| NodeError::failed("RuntimeError", "LoRA lost the CLIP"))?;
        Ok(NodeOutput::new(vec![model.into_value(), clip.into_value()]))
    }
}
