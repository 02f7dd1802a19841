//! What ComfyUI's `KSampler` does around a sampler: the sigmas for a scheduler, sampler, step
//! count and denoise strength; `KSamplerAdvanced`'s start/end slicing; and the run itself
//! (latent scaling, initial noise scaling, sampling, inverse scaling).

use candle_core::Tensor;

use crate::error::{Result, TensorContext};
use crate::latent_format::LatentFormat;
use crate::model_sampling::ModelSampling;
use crate::samplers::{Sampler, SamplerContext};
use crate::schedulers::{calculate_sigmas, Scheduler};

/// `KSampler.set_steps` + `calculate_sigmas`: the sigmas for `steps` steps at `denoise`.
///
/// * `denoise > 0.9999`: the full schedule.
/// * `denoise <= 0`: no sigmas (sampling returns the input latent).
/// * otherwise the schedule for `int(steps / denoise)` steps, keeping its last `steps + 1`.
///
/// Samplers with [`Sampler::discards_penultimate_sigma`] get one extra step with the
/// penultimate sigma removed.
pub fn ksampler_sigmas(
    model: &ModelSampling,
    scheduler: &dyn Scheduler,
    sampler: &dyn Sampler,
    steps: usize,
    denoise: f64,
) -> Result<Vec<f32>> {
    let full = |steps: usize| -> Result<Vec<f32>> {
        if sampler.discards_penultimate_sigma() {
            let mut sigmas = calculate_sigmas(model, scheduler, steps + 1)?;
            if sigmas.len() >= 2 {
                sigmas.remove(sigmas.len() - 2);
            }
            Ok(sigmas)
        } else {
            calculate_sigmas(model, scheduler, steps)
        }
    };
    if denoise.is_nan() || denoise > 0.9999 {
        return full(steps);
    }
    if denoise <= 0.0 {
        return Ok(Vec::new());
    }
    let new_steps = (steps as f64 / denoise) as usize;
    let sigmas = full(new_steps)?;
    let keep = (steps + 1).min(sigmas.len());
    Ok(sigmas[sigmas.len() - keep..].to_vec())
}

/// `KSamplerAdvanced`'s step window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepRange {
    /// First step to run (`start_at_step`).
    pub start_step: Option<usize>,
    /// Last step to run (`end_at_step`).
    pub last_step: Option<usize>,
    /// Whether to end at sigma 0 even when stopping early (`return_with_leftover_noise` off).
    pub force_full_denoise: bool,
}

impl StepRange {
    /// The sigmas to run, or `None` when the window is empty and ComfyUI returns the input
    /// latent unchanged.
    pub fn apply(&self, sigmas: &[f32]) -> Option<Vec<f32>> {
        let mut sigmas = sigmas.to_vec();
        let last_index = sigmas.len() as isize - 1;
        if let Some(last) = self.last_step {
            if (last as isize) < last_index {
                sigmas.truncate(last + 1);
                if self.force_full_denoise {
                    if let Some(final_sigma) = sigmas.last_mut() {
                        *final_sigma = 0.0;
                    }
                }
            }
        }
        if let Some(start) = self.start_step {
            if (start as isize) < sigmas.len() as isize - 1 {
                sigmas.drain(..start);
            } else {
                return None;
            }
        }
        Some(sigmas)
    }
}

/// `CFGGuider.sample` + `KSAMPLER.sample`: runs `sampler` from `noise` and `latent_image`
/// along `sigmas` and returns the latent in VAE space.
///
/// A non-empty `latent_image` is moved into sampler space with `latent_format` first (an
/// all-zero one is not, as in ComfyUI); the noise is scaled for the first sigma (full
/// `√(1 + σ²)` when starting from the top of the schedule); after sampling the flow scaling is
/// undone and the result moved back to VAE space. Empty `sigmas` return `latent_image`.
pub fn sample(
    sampler: &dyn Sampler,
    ctx: &mut SamplerContext<'_>,
    noise: &Tensor,
    latent_image: &Tensor,
    sigmas: &[f32],
    latent_format: &LatentFormat,
) -> Result<Tensor> {
    let Some(&first_sigma) = sigmas.first() else {
        return Ok(latent_image.clone());
    };
    let latent = if is_all_zero(latent_image)? {
        latent_image.clone()
    } else {
        latent_format.process_in(latent_image)?
    };
    let model = ctx.model_sampling;
    let x = model.noise_scaling(
        first_sigma,
        noise,
        &latent,
        model.is_max_denoise(first_sigma),
    )?;
    let samples = sampler.sample(ctx, x, sigmas)?;
    let samples = model.inverse_noise_scaling(sampler.final_sigma(sigmas), &samples)?;
    latent_format.process_out(&samples)
}

fn is_all_zero(x: &Tensor) -> Result<bool> {
    let nonzero = x
        .ne(0.0)
        .and_then(|mask| mask.to_dtype(candle_core::DType::U32))
        .and_then(|mask| mask.sum_all())
        .and_then(|count| count.to_scalar::<u32>())
        .context("count_nonzero")?;
    Ok(nonzero == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_sampling::Prediction;
    use crate::samplers::{Dpm2, Euler};
    use crate::schedulers::{Karras, Normal};

    #[test]
    fn denoise_zero_gives_no_sigmas() {
        let model = ModelSampling::discrete(Prediction::Eps);
        assert!(ksampler_sigmas(&model, &Normal, &Euler, 20, 0.0)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn partial_denoise_keeps_the_tail_of_a_longer_schedule() {
        let model = ModelSampling::discrete(Prediction::Eps);
        let partial = ksampler_sigmas(&model, &Karras, &Euler, 10, 0.5).unwrap();
        let long = ksampler_sigmas(&model, &Karras, &Euler, 20, 1.0).unwrap();
        assert_eq!(partial, long[10..]);
    }

    #[test]
    fn dpm_2_drops_the_penultimate_sigma() {
        let model = ModelSampling::discrete(Prediction::Eps);
        let sigmas = ksampler_sigmas(&model, &Normal, &Dpm2, 4, 1.0).unwrap();
        let longer = calculate_sigmas(&model, &Normal, 5).unwrap();
        assert_eq!(sigmas.len(), 5);
        assert_eq!(sigmas[..4], longer[..4]);
        assert_eq!(sigmas[4], 0.0);
    }

    #[test]
    fn step_range_slices_like_ksampler_advanced() {
        let sigmas = [5.0, 4.0, 3.0, 2.0, 1.0, 0.0];
        let window = StepRange {
            start_step: Some(1),
            last_step: Some(3),
            force_full_denoise: false,
        };
        assert_eq!(window.apply(&sigmas), Some(vec![4.0, 3.0, 2.0]));
        let forced = StepRange {
            force_full_denoise: true,
            ..window
        };
        assert_eq!(forced.apply(&sigmas), Some(vec![4.0, 3.0, 0.0]));
        let empty = StepRange {
            start_step: Some(5),
            ..StepRange::default()
        };
        assert_eq!(empty.apply(&sigmas), None);
        assert_eq!(StepRange::default().apply(&sigmas), Some(sigmas.to_vec()));
    }
}
