//! `DifferentialDiffusion` ("Differential Diffusion"): a model whose inpainting noise mask is
//! thresholded at every step by how far sampling has got, so soft mask values are inpainted
//! for a matching fraction of the steps ([`StepMask`], ComfyUI's `denoise_mask_function`).

use candle_core::{DType, Tensor};
use kiln_graph::{
    ExecutionContext, FloatInput, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
    OutputSpec,
};
use kiln_sampling::ModelSampling;

use crate::error::{NodesError, TensorContext};
use crate::node_util::object;
use crate::types::Model;

/// `DifferentialDiffusion`.
pub struct DifferentialDiffusion;

impl Node for DifferentialDiffusion {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("DifferentialDiffusion")
            .display_name("Differential Diffusion")
            .category("_for_testing")
            .python_module("comfy_extras.nodes_differential_diffusion")
            .experimental()
            .input(InputSpec::required("model", Model::TYPE))
            .input(InputSpec::optional(
                "strength",
                FloatInput::new(1.0, 0.0, 1.0).step(0.01),
            ))
            .output(OutputSpec::new(Model::TYPE))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        _ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let model = object::<Model>(inputs, "model")?;
        let strength = inputs.opt_float("strength")?.unwrap_or(1.0);
        if !strength.is_finite() {
            return Err(
                NodesError::input("strength", format!("must be finite, got {strength}")).into(),
            );
        }
        let patched = Model {
            differential_diffusion: Some(strength),
            ..model.as_ref().clone()
        };
        Ok(NodeOutput::new(vec![patched.into_value()]))
    }
}

/// The per-step mask of one sampling run under `DifferentialDiffusion`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepMask {
    strength: f64,
    timestep_from: f32,
    timestep_to: f32,
}

impl StepMask {
    /// For a run over `sigmas` (the full list the sampler walks) with `sampling`.
    pub(crate) fn new(strength: f64, sampling: &ModelSampling, sigmas: &[f32]) -> StepMask {
        let first = sigmas.first().copied().unwrap_or(0.0);
        let last = sigmas.last().copied().unwrap_or(0.0);
        let sigma_to = if last > sampling.sigma_min() {
            last
        } else {
            sampling.sigma_min()
        };
        StepMask {
            strength,
            timestep_from: sampling.timestep(first),
            timestep_to: sampling.timestep(sigma_to),
        }
    }

    /// The mask used at `timestep` (`model_sampling.timestep(sigma)`): values at or above the
    /// fraction of the schedule still to go become 1, the rest 0, blended with `mask` by
    /// `1 − strength` when `0 < strength < 1` (ComfyUI treats 0 as 1).
    pub(crate) fn at(&self, mask: &Tensor, timestep: f32) -> Result<Tensor, NodesError> {
        let threshold = (timestep - self.timestep_to) / (self.timestep_from - self.timestep_to);
        let binary = mask
            .ge(threshold)
            .and_then(|m| m.to_dtype(DType::F32))
            .context("DifferentialDiffusion: thresholding the mask")?;
        if self.strength != 0.0 && self.strength < 1.0 {
            // `strength * binary + (1 - strength) * mask`: Python floats applied as f32.
            let strength = self.strength as f32;
            let rest = (1.0 - self.strength) as f32;
            let blended = (binary * f64::from(strength))
                .and_then(|b| b + (mask * f64::from(rest))?)
                .context("DifferentialDiffusion: blending the mask")?;
            Ok(blended)
        } else {
            Ok(binary)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_node;
    use candle_core::Device;

    #[test]
    fn schema_matches_comfyui() {
        let info = DifferentialDiffusion
            .schema()
            .to_object_info(&|_| Vec::new());
        assert_eq!(
            info["input"]["optional"]["strength"],
            serde_json::json!(["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}])
        );
        assert_eq!(
            info["input"]["required"]["model"],
            serde_json::json!(["MODEL"])
        );
        assert_eq!(info["output"], serde_json::json!(["MODEL"]));
        assert_eq!(info["output_name"], serde_json::json!(["MODEL"]));
        assert_eq!(info["category"], "_for_testing");
        assert_eq!(info["display_name"], "Differential Diffusion");
        assert_eq!(info["experimental"], true);
        assert_eq!(
            info["python_module"],
            "comfy_extras.nodes_differential_diffusion"
        );
        let err = run_node(&DifferentialDiffusion, &NodeInputs::new()).unwrap_err();
        assert!(err.to_string().contains("model"), "{err}");
    }

    #[test]
    fn thresholds_follow_the_schedule_and_blend_by_strength() {
        let sampling = ModelSampling::flux(1.0);
        let sigmas = [1.0f32, 0.75, 0.5, 0.25, 0.0];
        let mask = Tensor::new(&[0.1f32, 0.4, 0.6, 0.9], &Device::Cpu).unwrap();
        let full = StepMask::new(1.0, &sampling, &sigmas);
        let sigma_min = sampling.sigma_min();
        let at = |step: &StepMask, sigma: f32| {
            step.at(&mask, sampling.timestep(sigma))
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        // Threshold (0.5 − σmin) / (1 − σmin) ≈ 0.5: only the values above it are inpainted.
        assert!(sigma_min < 0.01, "{sigma_min}");
        assert_eq!(at(&full, 0.5), vec![0.0, 0.0, 1.0, 1.0]);
        assert_eq!(at(&full, 1.0), vec![0.0, 0.0, 0.0, 0.0]);
        assert_eq!(at(&full, 0.25), vec![0.0, 1.0, 1.0, 1.0]);
        let half = StepMask::new(0.5, &sampling, &sigmas);
        let blended = at(&half, 0.5);
        assert!((blended[0] - 0.05).abs() < 1e-6, "{blended:?}");
        assert!((blended[3] - 0.95).abs() < 1e-6, "{blended:?}");
        // Strength 0 is falsy in ComfyUI: the plain binary mask.
        assert_eq!(
            at(&StepMask::new(0.0, &sampling, &sigmas), 0.5),
            vec![0.0, 0.0, 1.0, 1.0]
        );
    }
}
