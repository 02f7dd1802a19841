//! `BasicGuider`: a model with one conditioning and no classifier-free guidance (Flux's usual
//! guider).

use kiln_graph::{
    ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, OutputSpec,
};

use crate::node_util::object;
use crate::types::{Conditioning, Guider, Model};

/// `BasicGuider`.
pub struct BasicGuider;

impl Node for BasicGuider {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("BasicGuider")
            .category("sampling/custom_sampling/guiders")
            .python_module("comfy_extras.nodes_custom_sampler")
            .input(InputSpec::required("model", Model::TYPE))
            .input(InputSpec::required("conditioning", Conditioning::TYPE))
            .output(OutputSpec::new(Guider::TYPE))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let model = object::<Model>(inputs, "model")?;
        let conditioning = object::<Conditioning>(inputs, "conditioning")?;
        Ok(NodeOutput::new(vec![
            Guider::basic(model, conditioning).into_value()
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;
    use kiln_graph::Value;

    #[test]
    fn schema_matches_comfyui_and_inputs_are_checked() {
        let info = BasicGuider.schema().to_object_info(&|_| Vec::new());
        assert_eq!(
            info["input"]["required"],
            serde_json::json!({"model": ["MODEL"], "conditioning": ["CONDITIONING"]})
        );
        assert_eq!(info["output"], serde_json::json!(["GUIDER"]));
        assert_eq!(info["category"], "sampling/custom_sampling/guiders");
        let err = run_node(
            &BasicGuider,
            &NodeInputs::new()
                .with("model", Value::Int(1))
                .with("conditioning", Conditioning::default().into_value()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("model"), "{err}");
    }
}
