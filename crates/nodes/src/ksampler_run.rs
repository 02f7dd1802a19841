//! The one sampling path of `KSampler`, `KSamplerAdvanced`, `SamplerCustom` and
//! `SamplerCustomAdvanced` (ComfyUI's `common_ksampler` / `sample_custom` →
//! `CFGGuider.sample`): the empty latent fixed to the model's channels, initial noise from a
//! [`Noise`], the sigmas, conditioning turned into guided entries (SDXL ADM vectors from the size
//! options, pooled vectors and Flux guidance for the DiTs, Flux Fill's `c_concat`),
//! classifier-free guidance over the network, the noise-mask blending of inpainting
//! (`KSamplerX0Inpaint`, thresholded per step under `DifferentialDiffusion`), the sampler, and
//! per-step progress (with a preview of the denoised prediction under `--preview-method`),
//! interruption and the last denoised prediction (`denoised_output`). Before a run, text
//! encoders are released when the model's plan frees them before diffusion.

use std::ops::ControlFlow;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use kiln_detect::Architecture;
use kiln_graph::ExecutionContext;
use kiln_models::{
    sdxl_adm, sdxl_refiner_adm, CfgDenoiser, GuidedCond, PromptKind, RefinerSize, SdxlSize,
    FLUX_DEFAULT_GUIDANCE,
};
use kiln_runtime::TextEncoderPolicy;
use kiln_sampling::samplers::{Denoiser, SamplerContext, StepInfo};
use kiln_sampling::schedulers::scheduler_by_name;
use kiln_sampling::{
    ksampler_sigmas, sample, ModelSampling, NormalKernel, StepRange, TorchCpuNoise,
};

use crate::concat_cond::{ConcatChannels, ConcatTarget};
use crate::error::{NodesError, TensorContext};
use crate::network::Network;
use crate::nodes::differential_diffusion::StepMask;
use crate::preview::{Previewer, StepPreviews};
use crate::resample::{common_upscale, Crop, Planes, UpscaleMethod};
use crate::services::NodeServices;
use crate::types::{
    CondMeta, Conditioning, Guider, Latent, Model, Noise, NoiseKind, SamplerChoice,
    SizeConditioning,
};

/// Everything `common_ksampler` takes besides the model, conditioning and latent.
#[derive(Clone, Debug)]
pub(crate) struct SamplerSettings<'a> {
    /// The noise seed.
    pub(crate) seed: u64,
    /// Steps of the full schedule.
    pub(crate) steps: usize,
    /// Guidance scale.
    pub(crate) cfg: f64,
    /// Sampler combo value.
    pub(crate) sampler_name: &'a str,
    /// Scheduler combo value.
    pub(crate) scheduler: &'a str,
    /// Denoise strength.
    pub(crate) denoise: f64,
    /// `add_noise = disable`.
    pub(crate) disable_noise: bool,
    /// `KSamplerAdvanced`'s window.
    pub(crate) window: StepRange,
}

fn sampling_error(context: &str) -> impl Fn(kiln_sampling::SamplingError) -> NodesError + '_ {
    move |source| NodesError::Sampling {
        context: context.to_owned(),
        source: Box::new(source),
    }
}

/// `GuidedCond`s for one side: SDXL's ADM vectors for the latent's size, the pooled vector as
/// `y` for SD3 and Flux (`encode_adm`), Flux guidance and `c_concat` (`concat_cond`).
fn guided(
    model: &Model,
    conditioning: &Conditioning,
    prompt: PromptKind,
    concat: &ConcatTarget<'_>,
    device: &Device,
) -> Result<Vec<GuidedCond>, NodesError> {
    let (_, _, height, width) = concat.shape;
    let model_error = |source| NodesError::Model {
        context: "building SDXL size conditioning".to_owned(),
        source: Box::new(source),
    };
    conditioning
        .entries
        .iter()
        .map(|entry| {
            let y = match (model.architecture, &entry.meta.pooled) {
                (Architecture::Sdxl, Some(pooled)) => {
                    let size = match entry.meta.size {
                        Some(SizeConditioning::Sdxl(size)) => size,
                        _ => SdxlSize::for_latent(height, width),
                    };
                    Some(sdxl_adm(pooled, &size).map_err(model_error)?)
                }
                (Architecture::SdxlRefiner, Some(pooled)) => {
                    let size = match entry.meta.size {
                        Some(SizeConditioning::Refiner(size)) => size,
                        _ => RefinerSize::for_latent(height, width, prompt),
                    };
                    Some(sdxl_refiner_adm(pooled, &size).map_err(model_error)?)
                }
                (Architecture::Sd3 | Architecture::Flux, Some(pooled)) => Some(pooled.clone()),
                _ => None,
            };
            let y = match y {
                Some(y) => Some(y.to_device(device).context("placing the ADM vector")?),
                None => None,
            };
            let concat = match concat.for_entry(&entry.meta)? {
                Some(concat) => Some(concat.to_device(device).context("placing c_concat")?),
                None => None,
            };
            Ok(GuidedCond {
                context: entry
                    .cond
                    .to_device(device)
                    .context("placing the conditioning")?,
                y,
                area: entry.meta.area,
                strength: entry.meta.strength,
                start_percent: entry.meta.start_percent,
                end_percent: entry.meta.end_percent,
                guidance: flux_guidance(model.architecture, &entry.meta),
                concat,
            })
        })
        .collect()
}

/// `model_base.Flux.extra_conds`' `guidance`: the entry's value, ComfyUI's default 3.5 where
/// none was set, and nothing after `FluxDisableGuidance` (the network then adds no guidance
/// term). Other architectures keep the value as set (they ignore it).
fn flux_guidance(architecture: Architecture, meta: &CondMeta) -> Option<f64> {
    match (architecture, meta.guidance) {
        (Architecture::Flux, None) if meta.guidance_disabled => None,
        (Architecture::Flux, None) => Some(f64::from(FLUX_DEFAULT_GUIDANCE)),
        (_, guidance) => guidance,
    }
}

/// The extra input channels a network reads besides the latent: Flux models whose `img_in`
/// is wider than their output (Fill, and the image-conditioned control models). ComfyUI's
/// UNet inpainting `concat_keys` are not supported; other UNets read none.
fn concat_channels(network: &Network) -> Option<ConcatChannels> {
    match network {
        Network::Flux(flux) => Some(ConcatChannels {
            input: flux.config().in_channels,
            output: flux.config().out_channels,
        }),
        _ => None,
    }
}

/// `comfy.sampler_helpers.prepare_mask`: the noise mask resized bilinearly to the latent,
/// repeated over channels and to the batch size.
fn prepare_mask(mask: &Tensor, shape: (usize, usize, usize, usize)) -> Result<Tensor, NodesError> {
    let (batch, channels, height, width) = shape;
    let dims = mask.dims();
    let (mh, mw) = match dims {
        [.., h, w] if dims.len() >= 2 => (*h, *w),
        _ => {
            return Err(NodesError::input(
                "latent_image",
                "noise_mask must be at least 2-D",
            ))
        }
    };
    let count = mask.elem_count() / (mh * mw).max(1);
    let planes = Planes::from_nchw(&mask.reshape((count, 1, mh, mw)).context("prepare_mask")?)?;
    let resized = common_upscale(
        &planes,
        width,
        height,
        UpscaleMethod::Bilinear,
        Crop::Disabled,
    )?;
    let resized = resized.to_nchw()?;
    let per_channel = Tensor::cat(&vec![&resized; channels], 1).context("prepare_mask")?;
    let repeated = if count < batch {
        per_channel
            .repeat((batch.div_ceil(count), 1, 1, 1))
            .context("prepare_mask")?
    } else {
        per_channel
    };
    repeated
        .narrow(0, 0, batch.min(repeated.dim(0).unwrap_or(0)))
        .context("prepare_mask")
}

/// `KSamplerX0Inpaint`: keeps the unmasked part of the latent at the noised original, and the
/// prediction there at the original.
/// Under `DifferentialDiffusion` the mask is first thresholded for the step ([`StepMask`]).
struct InpaintDenoiser<'a> {
    inner: &'a mut dyn Denoiser,
    sampling: &'a ModelSampling,
    mask: Tensor,
    step_mask: Option<StepMask>,
    latent: Tensor,
    noise: Tensor,
}

impl Denoiser for InpaintDenoiser<'_> {
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> kiln_sampling::Result<Tensor> {
        let wrap = |source| kiln_sampling::SamplingError::Tensor {
            context: "inpainting mask",
            source,
        };
        let mask = match &self.step_mask {
            Some(step) => step
                .at(&self.mask, self.sampling.timestep(sigma as f32))
                .map_err(|error| kiln_sampling::SamplingError::Denoiser {
                    sigma,
                    source: Box::new(error),
                })?,
            None => self.mask.clone(),
        };
        let keep = (1.0 - &mask).map_err(wrap)?;
        let noised = self
            .sampling
            .noise_scaling(sigma as f32, &self.noise, &self.latent, false)?;
        let x = ((x * &mask).map_err(wrap)? + (noised * &keep).map_err(wrap)?).map_err(wrap)?;
        let out = self.inner.denoise(&x, sigma)?;
        ((out * &mask).map_err(wrap)? + (&self.latent * &keep).map_err(wrap)?).map_err(wrap)
    }
}

fn is_all_zero(x: &Tensor) -> Result<bool, NodesError> {
    let nonzero = x
        .ne(0.0)
        .and_then(|m| m.to_dtype(DType::F32))
        .and_then(|m| m.sum_all())
        .and_then(|s| s.to_scalar::<f32>())
        .context("checking for an empty latent")?;
    Ok(nonzero == 0.0)
}

/// What `KSampler`/`KSamplerAdvanced` turn into a [`SamplingRun`].
fn ksampler_run_parts(
    model: &Model,
    settings: &SamplerSettings<'_>,
) -> Result<(SamplerChoice, Vec<f32>), NodesError> {
    let sampler = SamplerChoice::by_name("sampler_name", settings.sampler_name)?;
    let scheduler = scheduler_by_name(settings.scheduler)
        .map_err(|source| NodesError::input("scheduler", source.to_string()))?;
    let sigmas = ksampler_sigmas(
        &model.sampling,
        scheduler,
        sampler.sampler,
        settings.steps,
        settings.denoise,
    )
    .map_err(sampling_error("computing sigmas"))?;
    // An empty `KSamplerAdvanced` window returns the latent unchanged, as empty sigmas do.
    let sigmas = settings.window.apply(&sigmas).unwrap_or_default();
    Ok((sampler, sigmas))
}

/// `common_ksampler`: runs the sampler and returns the new latent.
#[allow(clippy::too_many_arguments)]
pub(crate) fn common_ksampler(
    noise_kernel: NormalKernel,
    ctx: &mut ExecutionContext<'_>,
    model: &Arc<Model>,
    positive: &Arc<Conditioning>,
    negative: &Arc<Conditioning>,
    latent: &Latent,
    settings: &SamplerSettings<'_>,
) -> Result<Latent, NodesError> {
    let (sampler, sigmas) = ksampler_run_parts(model, settings)?;
    let noise = Noise {
        kind: if settings.disable_noise {
            NoiseKind::Empty
        } else {
            NoiseKind::Random
        },
        seed: settings.seed,
    };
    let guider = Guider::cfg(
        model.clone(),
        positive.clone(),
        negative.clone(),
        settings.cfg,
    );
    let run = SamplingRun {
        noise: &noise,
        guider: &guider,
        sampler,
        sigmas: &sigmas,
        latent,
    };
    Ok(run.execute(noise_kernel, ctx)?.output)
}

/// One sampling run: `guider.sample(noise.generate_noise(latent), latent, sampler, sigmas)`.
#[derive(Debug)]
pub(crate) struct SamplingRun<'a> {
    /// The initial noise and the per-step seed.
    pub(crate) noise: &'a Noise,
    /// The model, conditioning and guidance scale.
    pub(crate) guider: &'a Guider,
    /// The algorithm.
    pub(crate) sampler: SamplerChoice,
    /// The noise levels to walk.
    pub(crate) sigmas: &'a [f32],
    /// The input latent (with its noise mask and batch index).
    pub(crate) latent: &'a Latent,
}

/// The two latents a custom sampler returns.
#[derive(Debug)]
pub(crate) struct SamplingOutcome {
    /// The sampled latent (`output`).
    pub(crate) output: Latent,
    /// The last step's denoised prediction in VAE space (`denoised_output`); the output itself
    /// when no step ran.
    pub(crate) denoised: Latent,
}

/// `comfy.sample.fix_empty_latent_channels`: an all-zero latent whose channel count is not the
/// model's is remade with the model's channels; anything else is read as f32.
fn fix_empty_latent_channels(model: &Model, latent: &Latent) -> Result<Tensor, NodesError> {
    let (batch, channels, height, width) = latent.dims4("latent_image")?;
    let latent_channels = model.latent_format.channels;
    if channels != latent_channels && is_all_zero(&latent.samples)? {
        Tensor::zeros(
            (batch, latent_channels, height, width),
            DType::F32,
            &Device::Cpu,
        )
        .context("fixing empty latent channels")
    } else {
        latent
            .samples
            .to_dtype(DType::F32)
            .context("reading the latent")
    }
}

/// ComfyUI's `load_models_gpu` before sampling: under the model's
/// [`TextEncoderPolicy::FreeBeforeDiffusion`] every loaded text encoder drops its weights (the
/// next encode loads them again), so the diffusion model has their memory.
fn release_text_encoders(services: &NodeServices, model: &Model) {
    if model.text_encoders != TextEncoderPolicy::FreeBeforeDiffusion {
        return;
    }
    let released = services.text_encoders().release_all();
    if !released.is_empty() {
        tracing::info!(
            "released text encoders {} before sampling: {}",
            released.join(", "),
            model.text_encoders_reason
        );
    }
}

impl SamplingRun<'_> {
    /// Runs the sampler.
    pub(crate) fn execute(
        &self,
        noise_kernel: NormalKernel,
        ctx: &mut ExecutionContext<'_>,
    ) -> Result<SamplingOutcome, NodesError> {
        let model = self.guider.model.as_ref();
        if let Ok(services) = ctx.services::<NodeServices>() {
            release_text_encoders(services, model);
        }
        // The diffusion model's weights stay resident only while it samples.
        let _in_use = model.weights.in_use();
        let latent_image = fix_empty_latent_channels(model, self.latent)?;
        let fixed = Latent {
            samples: latent_image.clone(),
            ..self.latent.clone()
        };
        if self.sigmas.is_empty() {
            return Ok(SamplingOutcome {
                output: fixed.clone(),
                denoised: fixed,
            });
        }
        let shape = latent_image.dims4().context("reading the latent")?;
        let noise = self.noise.generate(
            &latent_image,
            self.latent.batch_index.as_deref(),
            noise_kernel,
        )?;

        // ComfyUI's `sample`: noise, latent and mask go to the model's device, where the
        // sampler's state stays until the result returns to the CPU.
        let device = model.weights.device().clone();
        let latent_image = latent_image
            .to_device(&device)
            .context("placing the latent")?;
        let noise = noise.to_device(&device).context("placing the noise")?;
        let network = Network::build(model)?;
        let denoise_mask = match &self.latent.noise_mask {
            Some(mask) => Some(
                prepare_mask(mask, shape)?
                    .to_device(&device)
                    .context("placing the noise mask")?,
            ),
            None => None,
        };
        let concat = ConcatTarget {
            channels: concat_channels(&network),
            shape,
            latent_format: &model.latent_format,
            denoise_mask: denoise_mask.as_ref(),
        };
        let positive = guided(
            model,
            &self.guider.positive,
            PromptKind::Positive,
            &concat,
            &device,
        )?;
        let negative = guided(
            model,
            &self.guider.negative,
            PromptKind::Negative,
            &concat,
            &device,
        )?;
        let mut denoiser = CfgDenoiser::new(
            &network,
            model.sampling.clone(),
            positive,
            negative,
            self.guider.cfg,
        )
        .map_err(|source| NodesError::Model {
            context: "setting up guidance".to_owned(),
            source: Box::new(source),
        })?;

        let scaled_latent = if is_all_zero(&latent_image)? {
            latent_image.clone()
        } else {
            model
                .latent_format
                .process_in(&latent_image)
                .map_err(sampling_error("scaling the latent"))?
        };
        let mut inpaint;
        let denoiser: &mut dyn Denoiser = match denoise_mask {
            Some(mask) => {
                inpaint = InpaintDenoiser {
                    inner: &mut denoiser,
                    sampling: &model.sampling,
                    mask,
                    step_mask: model
                        .differential_diffusion
                        .map(|strength| StepMask::new(strength, &model.sampling, self.sigmas)),
                    latent: scaled_latent,
                    noise: noise.clone(),
                };
                &mut inpaint
            }
            None => &mut denoiser,
        };

        let noise_source = TorchCpuNoise {
            seed: self.noise.seed,
            kernel: noise_kernel,
        };
        // `prepare_callback`: one previewer per run, fed each step's denoised prediction, which
        // is also kept as `x0_output["x0"]`.
        let previewer = ctx.services::<NodeServices>().ok().and_then(|services| {
            Previewer::for_model(
                services,
                model.architecture,
                &device,
                services.preview_size(),
            )
        });
        let mut previews = StepPreviews::new(previewer);
        let mut last_denoised: Option<Tensor> = None;
        let mut progress = |info: &StepInfo<'_>| {
            // A GPU queues the step's kernels and returns; progress (and with it the step
            // timings clients and `kiln bench` see, and how soon an interrupt is noticed) must
            // mean the step's work is done. A failed wait surfaces at the next read instead.
            if !device.is_cpu() {
                let _ = device.synchronize();
            }
            let preview = previews.preview(info.denoised);
            last_denoised = Some(info.denoised.clone());
            ctx.progress(info.step as u64 + 1, info.total as u64, preview);
            if ctx.is_interrupted() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let mut sampler_ctx = SamplerContext {
            denoiser,
            model_sampling: &model.sampling,
            noise: &noise_source,
            progress: &mut progress,
        };
        let samples = sample(
            self.sampler.sampler,
            &mut sampler_ctx,
            &noise,
            &latent_image,
            self.sigmas,
            &model.latent_format,
        )
        .map_err(|source| match source {
            kiln_sampling::SamplingError::Interrupted { .. } => NodesError::Interrupted,
            other => NodesError::Sampling {
                context: "sampling".to_owned(),
                source: Box::new(other),
            },
        })?;
        let output = Latent {
            samples: to_cpu_f32(&samples)?,
            ..fixed.clone()
        };
        let denoised = match last_denoised {
            Some(x0) => {
                let x0 = model
                    .latent_format
                    .process_out(&x0)
                    .map_err(sampling_error("scaling the denoised latent"))?;
                Latent {
                    samples: to_cpu_f32(&x0)?,
                    ..fixed
                }
            }
            None => output.clone(),
        };
        Ok(SamplingOutcome { output, denoised })
    }
}

fn to_cpu_f32(samples: &Tensor) -> Result<Tensor, NodesError> {
    samples
        .to_device(&Device::Cpu)
        .and_then(|s| s.to_dtype(DType::F32))
        .context("moving the samples to the CPU")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_is_resized_repeated_over_channels_and_batch() {
        let mask =
            Tensor::from_vec(vec![0.0f32, 1.0, 1.0, 0.0], (1, 1, 2, 2), &Device::Cpu).unwrap();
        let out = prepare_mask(&mask, (3, 4, 4, 4)).unwrap();
        assert_eq!(out.dims(), &[3, 4, 4, 4]);
        let first: Vec<f32> = out
            .narrow(1, 0, 1)
            .unwrap()
            .narrow(0, 0, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let last: Vec<f32> = out
            .narrow(1, 3, 1)
            .unwrap()
            .narrow(0, 2, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(first, last);
        assert_eq!(first[0], 0.0);
    }
}
