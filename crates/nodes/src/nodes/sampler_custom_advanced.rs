//! `SamplerCustomAdvanced`: samples a latent from separately built noise, guider, sampler and
//! sigmas; returns the result and the last denoised prediction.

use kiln_graph::{
    ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, OutputSpec,
};

use crate::ksampler_run::SamplingRun;
use crate::node_util::object;
use crate::services::NodeServices;
use crate::types::{Guider, Latent, Noise, SamplerChoice, Sigmas};

/// `SamplerCustomAdvanced`.
pub struct SamplerCustomAdvanced;

/// The inputs both custom samplers end with (`sampler`, `sigmas`, `latent_image`) and their
/// two outputs (`output`, `denoised_output`).
pub(crate) fn with_sampling_inputs_and_outputs(schema: NodeSchema) -> NodeSchema {
    schema
        .input(InputSpec::required("sampler", SamplerChoice::TYPE))
        .input(InputSpec::required("sigmas", Sigmas::TYPE))
        .input(InputSpec::required("latent_image", Latent::TYPE))
        .output(OutputSpec::new(Latent::TYPE).named("output"))
        .output(OutputSpec::new(Latent::TYPE).named("denoised_output"))
}

/// `sample_custom`: runs the sampling with the services' noise kernel and returns `output` and
/// `denoised_output`.
pub(crate) fn sample_custom(
    run: SamplingRun<'_>,
    ctx: &mut ExecutionContext<'_>,
) -> Result<NodeOutput, NodeError> {
    let kernel = NodeServices::of(ctx)?.noise_kernel();
    let outcome = run.execute(kernel, ctx)?;
    Ok(NodeOutput::new(vec![
        outcome.output.into_value(),
        outcome.denoised.into_value(),
    ]))
}

impl Node for SamplerCustomAdvanced {
    fn schema(&self) -> NodeSchema {
        let schema = NodeSchema::new("SamplerCustomAdvanced")
            .category("sampling/custom_sampling")
            .python_module("comfy_extras.nodes_custom_sampler")
            .input(InputSpec::required("noise", Noise::TYPE))
            .input(InputSpec::required("guider", Guider::TYPE));
        with_sampling_inputs_and_outputs(schema)
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let noise = object::<Noise>(inputs, "noise")?;
        let guider = object::<Guider>(inputs, "guider")?;
        let sampler = object::<SamplerChoice>(inputs, "sampler")?;
        let sigmas = object::<Sigmas>(inputs, "sigmas")?;
        let latent = object::<Latent>(inputs, "latent_image")?;
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
        let info = SamplerCustomAdvanced
            .schema()
            .to_object_info(&|_| Vec::new());
        assert_eq!(
            info["input_order"]["required"],
            serde_json::json!(["noise", "guider", "sampler", "sigmas", "latent_image"])
        );
        assert_eq!(info["output"], serde_json::json!(["LATENT", "LATENT"]));
        assert_eq!(
            info["output_name"],
            serde_json::json!(["output", "denoised_output"])
        );
        assert_eq!(info["category"], "sampling/custom_sampling");
    }
}
