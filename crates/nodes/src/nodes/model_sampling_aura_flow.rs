//! `ModelSamplingAuraFlow`: `ModelSamplingSD3` with timestep multiplier 1 and AuraFlow's
//! default shift 1.73.

use kiln_graph::{ExecutionContext, Node, NodeError, NodeInputs, NodeOutput, NodeSchema};

use crate::nodes::model_sampling_sd3::{discrete_flow_schema, execute_discrete_flow};

/// `ModelSamplingAuraFlow`.
pub struct ModelSamplingAuraFlow;

impl Node for ModelSamplingAuraFlow {
    fn schema(&self) -> NodeSchema {
        discrete_flow_schema("ModelSamplingAuraFlow", 1.73)
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        execute_discrete_flow(inputs, 1.0)
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
