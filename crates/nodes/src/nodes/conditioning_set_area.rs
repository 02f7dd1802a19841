//! `ConditioningSetArea`: restricts conditioning to a pixel rectangle (stored in latent cells,
//! each value floor-divided by 8) with a strength.

use kiln_graph::{
    ExecutionContext, FloatInput, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput,
    NodeSchema, OutputSpec,
};
use kiln_models::LatentArea;

use crate::node_util::{object, size_input, MAX_RESOLUTION};
use crate::types::Conditioning;

/// `ConditioningSetArea` ("Conditioning (Set Area)").
pub struct ConditioningSetArea;

impl Node for ConditioningSetArea {
    fn schema(&self) -> NodeSchema {
        let size = || IntInput::new(64, 64, MAX_RESOLUTION).step(8);
        let offset = || IntInput::new(0, 0, MAX_RESOLUTION).step(8);
        NodeSchema::new("ConditioningSetArea")
            .display_name("Conditioning (Set Area)")
            .category("conditioning")
            .input(InputSpec::required("conditioning", "CONDITIONING"))
            .input(InputSpec::required("width", size()))
            .input(InputSpec::required("height", size()))
            .input(InputSpec::required("x", offset()))
            .input(InputSpec::required("y", offset()))
            .input(InputSpec::required(
                "strength",
                FloatInput::new(1.0, 0.0, 10.0).step(0.01),
            ))
            .output(OutputSpec::new("CONDITIONING"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let conditioning = object::<Conditioning>(inputs, "conditioning")?;
        let area = LatentArea::from_pixels(
            size_input(inputs, "width")?,
            size_input(inputs, "height")?,
            size_input(inputs, "x")?,
            size_input(inputs, "y")?,
        );
        let strength = inputs.float("strength")?;
        let out = conditioning.map_meta(|meta| {
            meta.area = Some(area);
            meta.strength = strength;
            meta.set_area_to_bounds = false;
        });
        Ok(NodeOutput::new(vec![out.into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;
    use crate::types::CondMeta;
    use candle_core::{Device, Tensor};
    use kiln_graph::Value;

    #[test]
    fn area_is_in_latent_cells() {
        let cond = Conditioning::single(
            Tensor::zeros((1, 77, 8), candle_core::DType::F32, &Device::Cpu).unwrap(),
            CondMeta::default(),
        );
        let inputs = NodeInputs::new()
            .with("conditioning", cond.into_value())
            .with("width", Value::Int(100))
            .with("height", Value::Int(64))
            .with("x", Value::Int(15))
            .with("y", Value::Int(8))
            .with("strength", Value::Float(0.5));
        let out = run_node(&ConditioningSetArea, &inputs).unwrap();
        let cond = out.values[0].downcast::<Conditioning>("c").unwrap();
        let meta = &cond.entries[0].meta;
        assert_eq!(
            meta.area,
            Some(LatentArea {
                height: 8,
                width: 12,
                y: 1,
                x: 1
            })
        );
        assert_eq!(meta.strength, 0.5);
    }
}
