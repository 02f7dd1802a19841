//! `ModelSamplingFlux`: a copy of the model with Flux's time-shifted schedule, its μ linear in
//! the image's token count between `base_shift` (256 tokens) and `max_shift` (4096 tokens).

use kiln_graph::{
    ExecutionContext, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};
use kiln_sampling::{flux_shift_for_resolution, ModelSampling, Prediction, SigmaSchedule};

use crate::error::NodesError;
use crate::node_util::{object, MAX_RESOLUTION};
use crate::nodes::model_sampling_sd3::{shift_spec, with_sampling};
use crate::types::Model;

/// `ModelSamplingFlux`.
pub struct ModelSamplingFlux;

fn dimension(inputs: &NodeInputs, name: &str) -> Result<u32, NodeError> {
    let value = inputs.int(name)?;
    u32::try_from(value).map_err(|_| {
        NodesError::input(name, format!("must be a positive size, got {value}")).into()
    })
}

fn shift_input(inputs: &NodeInputs, name: &str) -> Result<f64, NodeError> {
    let value = inputs.float(name)?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(NodesError::input(name, format!("must be finite, got {value}")).into())
    }
}

impl Node for ModelSamplingFlux {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("ModelSamplingFlux")
            .category("advanced/model")
            .python_module("comfy_extras.nodes_model_advanced")
            .input(InputSpec::required("model", Model::TYPE))
            .input(InputSpec::required("max_shift", shift_spec(1.15)))
            .input(InputSpec::required("base_shift", shift_spec(0.5)))
            .input(InputSpec::required(
                "width",
                IntInput::new(1024, 16, MAX_RESOLUTION).step(8),
            ))
            .input(InputSpec::required(
                "height",
                IntInput::new(1024, 16, MAX_RESOLUTION).step(8),
            ))
            .output(OutputSpec::new(Model::TYPE))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let model = object::<Model>(inputs, "model")?;
        let max_shift = shift_input(inputs, "max_shift")?;
        let base_shift = shift_input(inputs, "base_shift")?;
        let width = dimension(inputs, "width")?;
        let height = dimension(inputs, "height")?;
        let shift = flux_shift_for_resolution(width, height, max_shift, base_shift);
        let sampling = ModelSampling::new(SigmaSchedule::Flux { shift }, Prediction::Const)
            .map_err(|source| NodesError::input("max_shift", source.to_string()))?;
        let patched = with_sampling(&model, sampling);
        Ok(NodeOutput::new(vec![patched.into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_matches_comfyui() {
        let info = ModelSamplingFlux.schema().to_object_info(&|_| Vec::new());
        assert_eq!(
            info["input_order"]["required"],
            serde_json::json!(["model", "max_shift", "base_shift", "width", "height"])
        );
        assert_eq!(
            info["input"]["required"]["max_shift"],
            serde_json::json!(["FLOAT", {"default": 1.15, "min": 0.0, "max": 100.0, "step": 0.01}])
        );
        assert_eq!(
            info["input"]["required"]["base_shift"],
            serde_json::json!(["FLOAT", {"default": 0.5, "min": 0.0, "max": 100.0, "step": 0.01}])
        );
        assert_eq!(
            info["input"]["required"]["height"],
            serde_json::json!(["INT", {"default": 1024, "min": 16, "max": 16384, "step": 8}])
        );
        assert_eq!(info["category"], "advanced/model");
    }

    #[test]
    fn bad_sizes_and_shifts_name_their_input() {
        let inputs = NodeInputs::new()
            .with("width", kiln_graph::Value::Int(-8))
            .with("max_shift", kiln_graph::Value::Float(f64::INFINITY));
        let err = dimension(&inputs, "width").unwrap_err();
        assert!(err.to_string().contains("width"), "{err}");
        let err = shift_input(&inputs, "max_shift").unwrap_err();
        assert!(err.to_string().contains("max_shift"), "{err}");
    }
}
