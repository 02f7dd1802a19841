//! `CFGGuider`: a model with positive and negative conditioning and a classifier-free guidance
//! scale (what `KSampler` uses internally).

use kiln_graph::{
    ExecutionContext, FloatInput, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};

use crate::error::NodesError;
use crate::node_util::object;
use crate::types::{Conditioning, Guider, Model};

/// `CFGGuider`.
pub struct CfgGuider;

/// The `cfg` input shared with `SamplerCustom` (`8.0 [0..100, 0.1, round 0.01]`).
pub(crate) fn cfg_input() -> FloatInput {
    FloatInput::new(8.0, 0.0, 100.0).step(0.1).round(0.01)
}

/// The `cfg` input, rejected when not finite.
pub(crate) fn read_cfg(inputs: &NodeInputs) -> Result<f64, NodeError> {
    let cfg = inputs.float("cfg")?;
    if cfg.is_finite() {
        Ok(cfg)
    } else {
        Err(NodesError::input("cfg", format!("must be finite, got {cfg}")).into())
    }
}

impl Node for CfgGuider {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("CFGGuider")
            .category("sampling/custom_sampling/guiders")
            .python_module("comfy_extras.nodes_custom_sampler")
            .input(InputSpec::required("model", Model::TYPE))
            .input(InputSpec::required("positive", Conditioning::TYPE))
            .input(InputSpec::required("negative", Conditioning::TYPE))
            .input(InputSpec::required("cfg", cfg_input()))
            .output(OutputSpec::new(Guider::TYPE))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let model = object::<Model>(inputs, "model")?;
        let positive = object::<Conditioning>(inputs, "positive")?;
        let negative = object::<Conditioning>(inputs, "negative")?;
        let cfg = read_cfg(inputs)?;
        Ok(NodeOutput::new(vec![Guider::cfg(
            model, positive, negative, cfg,
        )
        .into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_matches_comfyui() {
        let info = CfgGuider.schema().to_object_info(&|_| Vec::new());
        assert_eq!(
            info["input_order"]["required"],
            serde_json::json!(["model", "positive", "negative", "cfg"])
        );
        assert_eq!(
            info["input"]["required"]["cfg"],
            serde_json::json!(["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1,
                "round": 0.01}])
        );
        assert_eq!(info["name"], "CFGGuider");
        assert_eq!(info["output"], serde_json::json!(["GUIDER"]));
    }

    #[test]
    fn non_finite_cfg_names_the_input() {
        let inputs = NodeInputs::new().with("cfg", kiln_graph::Value::Float(f64::NAN));
        let err = read_cfg(&inputs).unwrap_err();
        assert!(err.to_string().contains("cfg"), "{err}");
    }
}
