//! `FluxDisableGuidance`: removes the distilled guidance embedding from every conditioning
//! entry, so Flux (and Flux-like) models add no guidance term at all.

use kiln_graph::{
    ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, OutputSpec,
};

use crate::node_util::object;
use crate::types::Conditioning;

/// `FluxDisableGuidance`.
pub struct FluxDisableGuidance;

impl Node for FluxDisableGuidance {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("FluxDisableGuidance")
            .category("advanced/conditioning/flux")
            .python_module("comfy_extras.nodes_flux")
            .description(
                "This node completely disables the guidance embed on Flux and Flux like models",
            )
            .input(InputSpec::required("conditioning", Conditioning::TYPE))
            .output(OutputSpec::new(Conditioning::TYPE))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let conditioning = object::<Conditioning>(inputs, "conditioning")?;
        let updated = conditioning.map_meta(|meta| {
            meta.guidance = None;
            meta.guidance_disabled = true;
        });
        Ok(NodeOutput::new(vec![updated.into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;
    use crate::types::{CondEntry, CondMeta};
    use candle_core::{DType, Device, Tensor};

    #[test]
    fn schema_matches_comfyui() {
        let info = FluxDisableGuidance.schema().to_object_info(&|_| Vec::new());
        assert_eq!(
            info["input"]["required"]["conditioning"],
            serde_json::json!(["CONDITIONING"])
        );
        assert_eq!(info["output"], serde_json::json!(["CONDITIONING"]));
        assert_eq!(info["category"], "advanced/conditioning/flux");
        assert_eq!(info["python_module"], "comfy_extras.nodes_flux");
        assert_eq!(
            info["description"],
            "This node completely disables the guidance embed on Flux and Flux like models"
        );
    }

    #[test]
    fn clears_guidance_on_every_entry_and_keeps_the_rest() {
        let entry = CondEntry {
            cond: Tensor::ones((1, 2, 3), DType::F32, &Device::Cpu).unwrap(),
            meta: CondMeta {
                guidance: Some(4.0),
                strength: 0.5,
                ..CondMeta::default()
            },
        };
        let input = Conditioning::new(vec![entry.clone(), entry]);
        let out = run_node(
            &FluxDisableGuidance,
            &NodeInputs::new().with("conditioning", input.into_value()),
        )
        .unwrap();
        let updated = out.values[0].downcast::<Conditioning>("c").unwrap();
        for entry in &updated.entries {
            assert_eq!(entry.meta.guidance, None);
            assert!(entry.meta.guidance_disabled);
            assert_eq!(entry.meta.strength, 0.5);
        }
    }
}
