//! `ModelSamplingAuraFlow`: `ModelSamplingSD3` with timestep multiplier 1 and AuraFlow's
//! default shift 1.73.

use kiln_graph::{
    ExecutionContext, FloatInput, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};

use crate::node_util::object;
use crate::nodes::model_sampling_sd3::with_discrete_flow;
use crate::types::Model;

/// `ModelSamplingAuraFlow`.
pub struct ModelSamplingAuraFlow;

impl Node for ModelSamplingAuraFlow {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("ModelSamplingAuraFlow")
            .category("advanced/model")
            .python_module("comfy_extras.nodes_model_advanced")
            .input(InputSpec::required("model", Model::TYPE))
            .input(InputSpec::required(
                "shift",
                FloatInput::new(1.73, 0.0, 100.0).step(0.01),
            ))
            .output(OutputSpec::new(Model::TYPE))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let model = object::<Model>(inputs, "model")?;
        let shift = inputs.float("shift")?;
        let patched = with_discrete_flow(&model, shift, 1.0)?;
        Ok(NodeOutput::new(vec![patched.into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_matches_comfyui() {
        let info = ModelSamplingAuraFlow
            .schema()
            .to_object_info(&|_| Vec::new());
        assert_eq!(
            info["input"]["required"]["shift"],
            serde_json::json!(["FLOAT", {"default": 1.73, "min": 0.0, "max": 100.0, "step": 0.01}])
        );
        assert_eq!(info["category"], "advanced/model");
    }
}
