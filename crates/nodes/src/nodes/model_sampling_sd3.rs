//! `ModelSamplingSD3`: a copy of the model sampled as rectified flow with a discrete-flow
//! schedule of the given shift (multiplier 1000), as SD3 is.

use kiln_graph::{
    ExecutionContext, FloatInput, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};
use kiln_sampling::ModelSampling;

use crate::error::NodesError;
use crate::node_util::object;
use crate::types::Model;

/// `ModelSamplingSD3`.
pub struct ModelSamplingSd3;

/// `ModelSamplingSD3.patch(model, shift, multiplier)`: the model with a `DiscreteFlow` + `CONST`
/// sampling (ComfyUI's object patch on a model clone).
pub(crate) fn with_discrete_flow(
    model: &Model,
    shift: f64,
    multiplier: f64,
) -> Result<Model, NodesError> {
    let sampling = ModelSampling::discrete_flow(shift, multiplier)
        .map_err(|source| NodesError::input("shift", source.to_string()))?;
    Ok(Model {
        sampling,
        ..model.clone()
    })
}

impl Node for ModelSamplingSd3 {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("ModelSamplingSD3")
            .category("advanced/model")
            .python_module("comfy_extras.nodes_model_advanced")
            .input(InputSpec::required("model", Model::TYPE))
            .input(InputSpec::required(
                "shift",
                FloatInput::new(3.0, 0.0, 100.0).step(0.01),
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
        let patched = with_discrete_flow(&model, shift, 1000.0)?;
        Ok(NodeOutput::new(vec![patched.into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_matches_comfyui() {
        let info = ModelSamplingSd3.schema().to_object_info(&|_| Vec::new());
        assert_eq!(
            info["input"]["required"]["shift"],
            serde_json::json!(["FLOAT", {"default": 3.0, "min": 0.0, "max": 100.0, "step": 0.01}])
        );
        assert_eq!(info["output"], serde_json::json!(["MODEL"]));
        assert_eq!(info["category"], "advanced/model");
        assert_eq!(info["name"], "ModelSamplingSD3");
    }
}
