//! `SamplerCustom`: `KSampler` with the sampler and sigmas given as inputs; returns the result
//! and the last denoised prediction.

use kiln_graph::{
    BooleanInput, ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema,
};

use crate::ksampler_run::SamplingRun;
use crate::node_util::object;
use crate::nodes::cfg_guider::{cfg_input, read_cfg};
use crate::nodes::ksampler::seed_input;
use crate::nodes::sampler_custom_advanced::{sample_custom, with_sampling_inputs_and_outputs};
use crate::types::{Conditioning, Guider, Latent, Model, Noise, NoiseKind, SamplerChoice, Sigmas};

/// `SamplerCustom`.
pub struct SamplerCustom;

impl Node for SamplerCustom {
    fn schema(&self) -> NodeSchema {
        let schema = NodeSchema::new("SamplerCustom")
            .category("sampling/custom_sampling")
            .python_module("comfy_extras.nodes_custom_sampler")
            .input(InputSpec::required("model", Model::TYPE))
            .input(InputSpec::required("add_noise", BooleanInput::new(true)))
            .input(InputSpec::required("noise_seed", seed_input()))
            .input(InputSpec::required("cfg", cfg_input()))
            .input(InputSpec::required("positive", Conditioning::TYPE))
            .input(InputSpec::required("negative", Conditioning::TYPE));
        with_sampling_inputs_and_outputs(schema)
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let model = object::<Model>(inputs, "model")?;
        let positive = object::<Conditioning>(inputs, "positive")?;
        let negative = object::<Conditioning>(inputs, "negative")?;
        let sampler = object::<SamplerChoice>(inputs, "sampler")?;
        let sigmas = object::<Sigmas>(inputs, "sigmas")?;
        let latent = object::<Latent>(inputs, "latent_image")?;
        // `sample_custom` passes `noise_seed` as the step-noise seed even without added noise.
        let noise = Noise {
            kind: if inputs.bool("add_noise")? {
                NoiseKind::Random
            } else {
                NoiseKind::Empty
            },
            seed: inputs.uint("noise_seed")?,
        };
        let guider = Guider::cfg(model, positive, negative, read_cfg(inputs)?);
        let run = SamplingRun {
            noise: &noise,
            guider: &guider,
            sampler: *sampler,
            sigmas: &sigmas.values,
            latent: &latent,
        };
        sample_custom(run, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_matches_comfyui() {
        let info = SamplerCustom.schema().to_object_info(&|_| Vec::new());
        assert_eq!(
            info["input_order"]["required"],
            serde_json::json!([
                "model",
                "add_noise",
                "noise_seed",
                "cfg",
                "positive",
                "negative",
                "sampler",
                "sigmas",
                "latent_image"
            ])
        );
        assert_eq!(
            info["input"]["required"]["add_noise"],
            serde_json::json!(["BOOLEAN", {"default": true}])
        );
        assert_eq!(
            info["output_name"],
            serde_json::json!(["output", "denoised_output"])
        );
        assert_eq!(info["category"], "sampling/custom_sampling");
    }
}
