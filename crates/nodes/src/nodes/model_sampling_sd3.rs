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
    Ok(with_sampling(model, sampling))
}

/// A clone of `model` sampled with `sampling` (ComfyUI's `model.clone()` +
/// `add_object_patch("model_sampling", ...)`).
pub(crate) fn with_sampling(model: &Model, sampling: ModelSampling) -> Model {
    Model {
        sampling,
        ..model.clone()
    }
}

/// A shift input of the model-sampling nodes: `default [0..100, step 0.01]`.
pub(crate) fn shift_spec(default: f64) -> FloatInput {
    FloatInput::new(default, 0.0, 100.0).step(0.01)
}

/// The schema of `ModelSamplingSD3` and its variants: a model and one `shift` in, a model out.
pub(crate) fn discrete_flow_schema(name: &str, default_shift: f64) -> NodeSchema {
    NodeSchema::new(name)
        .category("advanced/model")
        .python_module("comfy_extras.nodes_model_advanced")
        .input(InputSpec::required("model", Model::TYPE))
        .input(InputSpec::required("shift", shift_spec(default_shift)))
        .output(OutputSpec::new(Model::TYPE))
}

/// Runs `ModelSamplingSD3` or a variant: the input model with a discrete-flow schedule of the
/// `shift` input and the variant's timestep `multiplier`.
pub(crate) fn execute_discrete_flow(
    inputs: &NodeInputs,
    multiplier: f64,
) -> Result<NodeOutput, NodeError> {
    let model = object::<Model>(inputs, "model")?;
    let shift = inputs.float("shift")?;
    let patched = with_discrete_flow(&model, shift, multiplier)?;
    Ok(NodeOutput::new(vec![patched.into_value()]))
}

impl Node for ModelSamplingSd3 {
    fn schema(&self) -> NodeSchema {
        discrete_flow_schema("ModelSamplingSD3", 3.0)
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        execute_discrete_flow(inputs, 1000.0)
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
