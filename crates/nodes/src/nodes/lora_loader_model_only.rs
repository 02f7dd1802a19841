//! `LoraLoaderModelOnly`: `LoraLoader` for the diffusion model alone.

use kiln_graph::{
    ComboInput, ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};

use crate::node_util::object;
use crate::nodes::lora_loader::{apply_lora, strength_input};
use crate::services::NodeServices;
use crate::types::Model;

/// `LoraLoaderModelOnly`.
pub struct LoraLoaderModelOnly;

impl Node for LoraLoaderModelOnly {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("LoraLoaderModelOnly")
            .category("loaders")
            .input(InputSpec::required("model", "MODEL"))
            .input(InputSpec::required(
                "lora_name",
                ComboInput::dynamic("loras"),
            ))
            .input(InputSpec::required("strength_model", strength_input()))
            .output(OutputSpec::new("MODEL"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let model = object::<Model>(inputs, "model")?;
        let strength = inputs.float("strength_model")?;
        if strength == 0.0 {
            return Ok(NodeOutput::new(vec![model.as_ref().clone().into_value()]));
        }
        let services = NodeServices::of(ctx)?;
        let (model, _) = apply_lora(
            services,
            inputs,
            "LoraLoaderModelOnly",
            &model,
            None,
            strength,
            0.0,
        )?;
        Ok(NodeOutput::new(vec![model.into_value()]))
    }
}
