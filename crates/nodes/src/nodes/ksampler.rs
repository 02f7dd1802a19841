//! `KSampler`: denoises a latent with a model, positive/negative conditioning, a seed, steps,
//! CFG, sampler and scheduler, optionally only partly (`denoise`).

use kiln_graph::{
    ComboInput, ExecutionContext, FloatInput, InputSpec, IntInput, Node, NodeError, NodeInputs,
    NodeOutput, NodeSchema, OutputSpec,
};
use kiln_sampling::samplers::COMFYUI_SAMPLER_NAMES;
use kiln_sampling::schedulers::SCHEDULERS;
use kiln_sampling::StepRange;

use crate::ksampler_run::{common_ksampler, SamplerSettings};
use crate::node_util::{object, size_input};
use crate::services::NodeServices;
use crate::types::{Conditioning, Latent, Model};

/// `KSampler`.
pub struct KSampler;

/// ComfyUI's `KSampler.SAMPLERS` combo.
pub(crate) fn sampler_combo() -> ComboInput {
    ComboInput::new(COMFYUI_SAMPLER_NAMES.iter().copied())
}

/// ComfyUI's `KSampler.SCHEDULERS` combo.
pub(crate) fn scheduler_combo() -> ComboInput {
    ComboInput::new(SCHEDULERS.iter().map(|s| s.name()))
}

/// The seed input (`0..=u64::MAX`, with the UI's control-after-generate widget).
pub(crate) fn seed_input() -> IntInput {
    IntInput::new(0, 0, i128::from(u64::MAX)).control_after_generate()
}

impl Node for KSampler {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("KSampler")
            .category("sampling")
            .description("Uses the provided model, positive and negative conditioning to denoise the latent image.")
            .input(InputSpec::required("model", "MODEL").tooltip("The model used for denoising the input latent."))
            .input(InputSpec::required("seed", seed_input()).tooltip("The random seed used for creating the noise."))
            .input(InputSpec::required("steps", IntInput::new(20, 1, 10000)).tooltip("The number of steps used in the denoising process."))
            .input(
                InputSpec::required("cfg", FloatInput::new(8.0, 0.0, 100.0).step(0.1).round(0.01))
                    .tooltip("The Classifier-Free Guidance scale balances creativity and adherence to the prompt. Higher values result in images more closely matching the prompt however too high values will negatively impact quality."),
            )
            .input(InputSpec::required("sampler_name", sampler_combo()).tooltip("The algorithm used when sampling, this can affect the quality, speed, and style of the generated output."))
            .input(InputSpec::required("scheduler", scheduler_combo()).tooltip("The scheduler controls how noise is gradually removed to form the image."))
            .input(InputSpec::required("positive", "CONDITIONING").tooltip("The conditioning describing the attributes you want to include in the image."))
            .input(InputSpec::required("negative", "CONDITIONING").tooltip("The conditioning describing the attributes you want to exclude from the image."))
            .input(InputSpec::required("latent_image", "LATENT").tooltip("The latent image to denoise."))
            .input(
                InputSpec::required("denoise", FloatInput::new(1.0, 0.0, 1.0).step(0.01))
                    .tooltip("The amount of denoising applied, lower values will maintain the structure of the initial image allowing for image to image sampling."),
            )
            .output(OutputSpec::new("LATENT").tooltip("The denoised latent."))
    }

    fn execute(
        &self,
        inputs: &NodeInputs,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<NodeOutput, NodeError> {
        let model = object::<Model>(inputs, "model")?;
        let positive = object::<Conditioning>(inputs, "positive")?;
        let negative = object::<Conditioning>(inputs, "negative")?;
        let latent = object::<Latent>(inputs, "latent_image")?;
        let settings = SamplerSettings {
            seed: inputs.uint("seed")?,
            steps: size_input(inputs, "steps")?,
            cfg: inputs.float("cfg")?,
            sampler_name: inputs.string("sampler_name")?,
            scheduler: inputs.string("scheduler")?,
            denoise: inputs.opt_float("denoise")?.unwrap_or(1.0),
            disable_noise: false,
            window: StepRange::default(),
        };
        let kernel = NodeServices::of(ctx)?.noise_kernel();
        let out = common_ksampler(
            kernel, ctx, &model, &positive, &negative, &latent, &settings,
        )?;
        Ok(NodeOutput::new(vec![out.into_value()]))
    }
}
