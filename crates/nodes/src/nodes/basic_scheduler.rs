//! `BasicScheduler`: a model's sigmas for a scheduler, step count and denoise strength (the
//! last `steps + 1` of an `int(steps / denoise)`-step schedule).

use kiln_graph::{
    ExecutionContext, FloatInput, InputSpec, IntInput, Node, NodeError, NodeInputs, NodeOutput,
    NodeSchema, OutputSpec,
};
use kiln_sampling::schedulers::{calculate_sigmas, scheduler_by_name};
use kiln_sampling::ModelSampling;

use crate::error::NodesError;
use crate::node_util::{object, size_input};
use crate::nodes::ksampler::scheduler_combo;
use crate::types::{Model, Sigmas};

/// `BasicScheduler`.
pub struct BasicScheduler;

/// `BasicScheduler.get_sigmas` on a model's sampling.
pub(crate) fn basic_sigmas(
    sampling: &ModelSampling,
    scheduler: &str,
    steps: usize,
    denoise: f64,
) -> Result<Vec<f32>, NodesError> {
    let scheduler = scheduler_by_name(scheduler)
        .map_err(|source| NodesError::input("scheduler", source.to_string()))?;
    let mut total_steps = steps;
    if denoise < 1.0 {
        if denoise <= 0.0 {
            return Ok(Vec::new());
        }
        // Python's `int(steps / denoise)` truncates toward zero, as `as` does.
        total_steps = (steps as f64 / denoise) as usize;
    }
    let sigmas = calculate_sigmas(sampling, scheduler, total_steps)
        .map_err(|source| NodesError::input("steps", source.to_string()))?;
    let keep = steps.saturating_add(1).min(sigmas.len());
    Ok(sigmas[sigmas.len() - keep..].to_vec())
}

impl Node for BasicScheduler {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("BasicScheduler")
            .category("sampling/custom_sampling/schedulers")
            .python_module("comfy_extras.nodes_custom_sampler")
            .input(InputSpec::required("model", Model::TYPE))
            .input(InputSpec::required("scheduler", scheduler_combo()))
            .input(InputSpec::required("steps", IntInput::new(20, 1, 10000)))
            .input(InputSpec::required(
                "denoise",
                FloatInput::new(1.0, 0.0, 1.0).step(0.01),
            ))
            .output(OutputSpec::new(Sigmas::TYPE))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let model = object::<Model>(inputs, "model")?;
        let scheduler = inputs.string("scheduler")?;
        let steps = size_input(inputs, "steps")?;
        let denoise = inputs.float("denoise")?;
        if denoise.is_nan() {
            return Err(NodesError::input("denoise", "must be a number").into());
        }
        let sigmas = basic_sigmas(&model.sampling, scheduler, steps, denoise)?;
        Ok(NodeOutput::new(vec![Sigmas::new(sigmas).into_value()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_sampling::schedulers::Karras;
    use kiln_sampling::Prediction;

    #[test]
    fn schema_matches_comfyui() {
        let info = BasicScheduler.schema().to_object_info(&|_| Vec::new());
        assert_eq!(
            info["input_order"]["required"],
            serde_json::json!(["model", "scheduler", "steps", "denoise"])
        );
        assert_eq!(
            info["input"]["required"]["steps"],
            serde_json::json!(["INT", {"default": 20, "min": 1, "max": 10000}])
        );
        assert_eq!(
            info["input"]["required"]["denoise"],
            serde_json::json!(["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}])
        );
        assert_eq!(info["input"]["required"]["scheduler"][0][0], "simple");
        assert_eq!(info["category"], "sampling/custom_sampling/schedulers");
        assert_eq!(info["python_module"], "comfy_extras.nodes_custom_sampler");
    }

    #[test]
    fn partial_denoise_keeps_the_tail_of_a_longer_schedule() {
        let sampling = ModelSampling::discrete(Prediction::Eps);
        // int(10 / 0.3) = 33 steps; keep the last 11 sigmas.
        let partial = basic_sigmas(&sampling, "karras", 10, 0.3).unwrap();
        let long = calculate_sigmas(&sampling, &Karras, 33).unwrap();
        assert_eq!(partial, long[23..]);
        assert!(basic_sigmas(&sampling, "karras", 10, 0.0)
            .unwrap()
            .is_empty());
        assert_eq!(basic_sigmas(&sampling, "karras", 4, 1.0).unwrap().len(), 5);
    }

    #[test]
    fn unknown_scheduler_and_zero_steps_name_their_input() {
        let sampling = ModelSampling::discrete(Prediction::Eps);
        let err = basic_sigmas(&sampling, "nope", 4, 1.0).unwrap_err();
        assert!(err.to_string().contains("'scheduler'"), "{err}");
        let err = basic_sigmas(&sampling, "normal", 0, 1.0).unwrap_err();
        assert!(err.to_string().contains("'steps'"), "{err}");
    }
}
