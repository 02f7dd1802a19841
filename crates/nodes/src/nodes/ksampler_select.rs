//! `KSamplerSelect`: picks a sampling algorithm by name for the custom samplers.

use kiln_graph::{
    ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, OutputSpec,
};

use crate::nodes::ksampler::sampler_combo;
use crate::types::SamplerChoice;

/// `KSamplerSelect`.
pub struct KSamplerSelect;

impl Node for KSamplerSelect {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("KSamplerSelect")
            .category("sampling/custom_sampling/samplers")
            .python_module("comfy_extras.nodes_custom_sampler")
            .input(InputSpec::required("sampler_name", sampler_combo()))
            .output(OutputSpec::new(SamplerChoice::TYPE))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let name = inputs.string("sampler_name")?;
        let choice = SamplerChoice::by_name("sampler_name", name)?;
        Ok(NodeOutput::new(vec![choice.into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;
    use kiln_graph::Value;

    fn select(name: &str) -> Result<NodeOutput, NodeError> {
        run_node(
            &KSamplerSelect,
            &NodeInputs::new().with("sampler_name", Value::String(name.into())),
        )
    }

    #[test]
    fn combo_is_comfyuis_sampler_list() {
        let info = KSamplerSelect.schema().to_object_info(&|_| Vec::new());
        let combo = &info["input"]["required"]["sampler_name"][0];
        assert_eq!(combo[0], "euler");
        assert_eq!(combo.as_array().unwrap().len(), 42);
        assert_eq!(info["output"], serde_json::json!(["SAMPLER"]));
    }

    #[test]
    fn picks_the_named_sampler_and_names_the_input_otherwise() {
        let out = select("dpmpp_2m").unwrap();
        let choice = out.values[0].downcast::<SamplerChoice>("SAMPLER").unwrap();
        assert_eq!(choice.sampler.name(), "dpmpp_2m");
        for bad in ["sa_solver", "no_such_sampler"] {
            let err = select(bad).unwrap_err();
            assert!(err.to_string().contains("sampler_name"), "{err}");
        }
    }
}
