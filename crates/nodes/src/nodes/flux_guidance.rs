//! `FluxGuidance`: sets the distilled guidance strength (`guidance`) on every conditioning entry
//! for Flux dev.

use kiln_graph::{
    ExecutionContext, FloatInput, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};

use crate::error::NodesError;
use crate::node_util::object;
use crate::types::Conditioning;

/// `FluxGuidance`.
pub struct FluxGuidance;

impl Node for FluxGuidance {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("FluxGuidance")
            .category("advanced/conditioning/flux")
            .python_module("comfy_extras.nodes_flux")
            .input(InputSpec::required("conditioning", Conditioning::TYPE))
            .input(InputSpec::required(
                "guidance",
                FloatInput::new(3.5, 0.0, 100.0).step(0.1),
            ))
            .output(OutputSpec::new(Conditioning::TYPE))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let conditioning = object::<Conditioning>(inputs, "conditioning")?;
        let guidance = inputs.float("guidance")?;
        if !guidance.is_finite() {
            return Err(
                NodesError::input("guidance", format!("must be finite, got {guidance}")).into(),
            );
        }
        let updated = conditioning.map_meta(|meta| meta.guidance = Some(guidance));
        Ok(NodeOutput::new(vec![updated.into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;
    use crate::types::{CondEntry, CondMeta};
    use candle_core::{DType, Device, Tensor};
    use kiln_graph::Value;

    #[test]
    fn schema_matches_comfyui() {
        let info = FluxGuidance.schema().to_object_info(&|_| Vec::new());
        assert_eq!(
            info["input"]["required"]["guidance"],
            serde_json::json!(["FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1}])
        );
        assert_eq!(info["category"], "advanced/conditioning/flux");
        assert_eq!(info["python_module"], "comfy_extras.nodes_flux");
    }

    #[test]
    fn sets_guidance_on_every_entry_and_keeps_the_rest() {
        let cond = Tensor::ones((1, 2, 3), DType::F32, &Device::Cpu).unwrap();
        let entry = |strength| CondEntry {
            cond: cond.clone(),
            meta: CondMeta {
                strength,
                ..CondMeta::default()
            },
        };
        let input = Conditioning::new(vec![entry(0.5), entry(2.0)]);
        let out = run_node(
            &FluxGuidance,
            &NodeInputs::new()
                .with("conditioning", input.into_value())
                .with("guidance", Value::Float(4.0)),
        )
        .unwrap();
        let updated = out.values[0].downcast::<Conditioning>("c").unwrap();
        let got: Vec<(f64, Option<f64>)> = updated
            .entries
            .iter()
            .map(|e| (e.meta.strength, e.meta.guidance))
            .collect();
        assert_eq!(got, [(0.5, Some(4.0)), (2.0, Some(4.0))]);
        let err = run_node(
            &FluxGuidance,
            &NodeInputs::new()
                .with("conditioning", Conditioning::default().into_value())
                .with("guidance", Value::Float(f64::NAN)),
        )
        .unwrap_err();
        assert!(err.to_string().contains("guidance"), "{err}");
    }
}
