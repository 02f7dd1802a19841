//! `ConditioningZeroOut`: every tensor of the conditioning (and its pooled output) replaced by
//! zeros of the same shape.

use kiln_graph::{
    ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, OutputSpec,
};

use crate::error::TensorContext;
use crate::node_util::object;
use crate::types::{CondEntry, Conditioning};

/// `ConditioningZeroOut`.
pub struct ConditioningZeroOut;

impl Node for ConditioningZeroOut {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("ConditioningZeroOut")
            .category("advanced/conditioning")
            .input(InputSpec::required("conditioning", "CONDITIONING"))
            .output(OutputSpec::new("CONDITIONING"))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let conditioning = object::<Conditioning>(inputs, "conditioning")?;
        let mut entries = Vec::with_capacity(conditioning.entries.len());
        for entry in &conditioning.entries {
            let mut meta = entry.meta.clone();
            if let Some(pooled) = &meta.pooled {
                meta.pooled = Some(pooled.zeros_like().context("ConditioningZeroOut")?);
            }
            entries.push(CondEntry {
                cond: entry.cond.zeros_like().context("ConditioningZeroOut")?,
                meta,
            });
        }
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
    use candle_core::{Device, Tensor};

    #[test]
    fn zeroes_cond_and_pooled_keeping_shapes() {
        let cond = Conditioning::single(
            Tensor::ones((1, 3, 4), candle_core::DType::F32, &Device::Cpu).unwrap(),
            CondMeta {
                pooled: Some(Tensor::ones((1, 5), candle_core::DType::F32, &Device::Cpu).unwrap()),
                strength: 0.7,
                ..CondMeta::default()
            },
        );
        let inputs = NodeInputs::new().with("conditioning", cond.into_value());
        let out = run_node(&ConditioningZeroOut, &inputs).unwrap();
        let cond = out.values[0].downcast::<Conditioning>("c").unwrap();
        let entry = &cond.entries[0];
        assert_eq!(entry.cond.dims(), &[1, 3, 4]);
        let sum: f32 = entry.cond.sum_all().unwrap().to_scalar().unwrap();
        let pooled_sum: f32 = entry
            .meta
            .pooled
            .as_ref()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!((sum, pooled_sum), (0.0, 0.0));
        assert_eq!(entry.meta.strength, 0.7);
    }
}
