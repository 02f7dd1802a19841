//! `KSamplerAdvanced` ("KSampler (Advanced)"): `KSampler` with noise on/off, a step window and
//! the choice to return with leftover noise.

use kiln_graph::{
    ComboInput, ExecutionContext, FloatInput, InputSpec, IntInput, Node, NodeError, NodeInputs,
    NodeOutput, NodeSchema, OutputSpec,
};
use kiln_sampling::StepRange;

use crate::error::NodesError;
use crate::ksampler_run::{common_ksampler, SamplerSettings};
use crate::node_util::{object, size_input};
use crate::nodes::ksampler::{sampler_combo, scheduler_combo, seed_input};
use crate::services::NodeServices;
use crate::types::{Conditioning, Latent, Model};

/// `KSamplerAdvanced`.
pub struct KSamplerAdvanced;

fn enabled(inputs: &NodeInputs, name: &str) -> Result<bool, NodeError> {
    match inputs.string(name)? {
        "enable" => Ok(true),
        "disable" => Ok(false),
        other => {
            Err(NodesError::input(name, format!("must be enable or disable, got '{other}'")).into())
        }
    }
}

impl Node for KSamplerAdvanced {
    fn schema(&self) -> NodeSchema {
        NodeSchema::new("KSamplerAdvanced")
            .display_name("KSampler (Advanced)")
            .category("sampling")
            .input(InputSpec::required("model", "MODEL"))
            .input(InputSpec::required(
                "add_noise",
                ComboInput::new(["enable", "disable"]),
            ))
            .input(InputSpec::required("noise_seed", seed_input()))
            .input(InputSpec::required("steps", IntInput::new(20, 1, 10000)))
            .input(InputSpec::required(
                "cfg",
                FloatInput::new(8.0, 0.0, 100.0).step(0.1).round(0.01),
            ))
            .input(InputSpec::required("sampler_name", sampler_combo()))
            .input(InputSpec::required("scheduler", scheduler_combo()))
            .input(InputSpec::required("positive", "CONDITIONING"))
            .input(InputSpec::required("negative", "CONDITIONING"))
            .input(InputSpec::required("latent_image", "LATENT"))
            .input(InputSpec::required(
                "start_at_step",
                IntInput::new(0, 0, 10000),
            ))
            .input(InputSpec::required(
                "end_at_step",
                IntInput::new(10000, 0, 10000),
            ))
            .input(InputSpec::required(
                "return_with_leftover_noise",
                ComboInput::new(["disable", "enable"]),
            ))
            .output(OutputSpec::new("LATENT"))
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
            seed: inputs.uint("noise_seed")?,
            steps: size_input(inputs, "steps")?,
            cfg: inputs.float("cfg")?,
            sampler_name: inputs.string("sampler_name")?,
            scheduler: inputs.string("scheduler")?,
            denoise: 1.0,
            disable_noise: !enabled(inputs, "add_noise")?,
            window: StepRange {
                start_step: Some(size_input(inputs, "start_at_step")?),
                last_step: Some(size_input(inputs, "end_at_step")?),
                force_full_denoise: !enabled(inputs, "return_with_leftover_noise")?,
            },
        };
        let kernel = NodeServices::of(ctx)?.noise_kernel();
        let out = common_ksampler(
            kernel, ctx, &model, &positive, &negative, &latent, &settings,
        )?;
        Ok(NodeOutput::new(vec![out.into_value()]))
    }
}
