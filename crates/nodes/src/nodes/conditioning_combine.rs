//! `ConditioningCombine`: the two conditioning lists concatenated.

use kiln_graph::{
    ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, OutputSpec,
};

use crate::node_util::object;
use crate::types::Conditioning;

/// `ConditioningCombine` ("Conditioning (Combine)").
pub struct ConditioningCombine;

impl Node for ConditioningCombine {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("ConditioningCombine")
            .display_name("Conditioning (Combine)")
            .category("conditioning")
            .input(InputSpec::required("conditioning_1", "CONDITIONING"))
            .input(InputSpec::required("conditioning_2", "CONDITIONING"))
            .output(OutputSpec::new("CONDITIONING"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let first = object::<Conditioning>(inputs, "conditioning_1")?;
        let second = object::<Conditioning>(inputs, "conditioning_2")?;
        let mut entries = first.entries.clone();
        entries.extend(second.entries.iter().cloned());
        Ok(NodeOutput::new(vec![
            Conditioning::new(entries).into_value()
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;
    use crate::types::CondMeta;
    use candle_core::{DType, Device, Tensor};

    #[test]
    fn concatenates_in_order() {
        let cond = |v: f64| {
            Conditioning::single(
                Tensor::full(v as f32, (1, 2, 3), &Device::Cpu).unwrap(),
                CondMeta {
                    strength: v,
                    ..CondMeta::default()
                },
            )
        };
        let mut two = cond(2.0);
        two.entries.extend(cond(3.0).entries);
        let inputs = NodeInputs::new()
            .with("conditioning_1", cond(1.0).into_value())
            .with("conditioning_2", two.into_value());
        let out = run_node(&ConditioningCombine, &inputs).unwrap();
        let combined = out.values[0].downcast::<Conditioning>("c").unwrap();
        let strengths: Vec<f64> = combined.entries.iter().map(|e| e.meta.strength).collect();
        assert_eq!(strengths, [1.0, 2.0, 3.0]);
        assert_eq!(combined.entries[0].cond.dtype(), DType::F32);
    }
}
