//! `ModelSampling`: a model's noise schedule (sigma table, timestep ↔ sigma) and prediction type
//! (how raw model output becomes a denoised latent), as in ComfyUI's `comfy/model_sampling.py`.
//!
//! Tables and conversions are computed with the same float32/float64 operations torch performs,
//! so the sigmas are bit-identical to ComfyUI's.

use candle_core::Tensor;

use crate::error::{Result, SamplingError};
use crate::tensor_ops::{add, div_scalar, scale, sub};
use crate::torch_math::{linspace_f64, rdiv};

/// What the model predicts, which decides how its output becomes a denoised latent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Prediction {
    /// ε-prediction (`EPS`): SD 1.x, SD 2.x base, SDXL.
    Eps,
    /// v-prediction (`V_PREDICTION`): SD 2.x 768-v and other v models.
    V,
    /// Rectified flow (`CONST`): SD3, Flux. `x_t = σ·noise + (1 − σ)·x₀`.
    Const,
}

/// How sigmas relate to timesteps.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SigmaSchedule {
    /// `ModelSamplingDiscrete`: a "linear" β schedule, `β_i = linspace(√start, √end, n)²`,
    /// `σ_i = √((1 − ᾱ_i)/ᾱ_i)`.
    Discrete {
        /// First β (0.00085 for SD/SDXL).
        linear_start: f64,
        /// Last β (0.012 for SD/SDXL).
        linear_end: f64,
        /// Number of training timesteps (1000).
        timesteps: usize,
    },
    /// `ModelSamplingDiscreteFlow`: `σ(t) = shift·t / (1 + (shift − 1)·t)`, `t = timestep /
    /// multiplier`, tabulated at `t = 1/1000 … 1`.
    DiscreteFlow {
        /// Time shift (3.0 for SD3, 1.0 for Flux schnell).
        shift: f64,
        /// Timestep multiplier (1000 for SD3, 1 for Flux schnell).
        multiplier: f64,
    },
    /// `ModelSamplingFlux`: `σ(t) = e^μ / (e^μ + (1/t − 1))`, tabulated at `t = 1/10000 … 1`.
    Flux {
        /// μ (1.15 by default; see [`flux_shift_for_resolution`]).
        shift: f64,
    },
}

/// `ModelSamplingFlux` node: μ from the image size (`base_shift` at 256 tokens, `max_shift` at
/// 4096 tokens, linear in the token count `width·height/256`).
pub fn flux_shift_for_resolution(width: u32, height: u32, max_shift: f64, base_shift: f64) -> f64 {
    let (x1, x2) = (256.0, 4096.0);
    let slope = (max_shift - base_shift) / (x2 - x1);
    let intercept = base_shift - slope * x1;
    (f64::from(width) * f64::from(height) / (8.0 * 8.0 * 2.0 * 2.0)) * slope + intercept
}

/// A model's sampling behaviour: sigma table plus prediction type.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSampling {
    schedule: SigmaSchedule,
    prediction: Prediction,
    sigmas: Vec<f32>,
    log_sigmas: Vec<f32>,
}

impl ModelSampling {
    /// Builds the sigma table for `schedule`.
    pub fn new(schedule: SigmaSchedule, prediction: Prediction) -> Result<Self> {
        validate(schedule)?;
        Ok(Self::from_valid_schedule(schedule, prediction))
    }

    /// SD 1.x / SDXL: discrete linear-β schedule (0.00085 … 0.012, 1000 steps).
    pub fn discrete(prediction: Prediction) -> Self {
        Self::from_valid_schedule(
            SigmaSchedule::Discrete {
                linear_start: 0.00085,
                linear_end: 0.012,
                timesteps: 1000,
            },
            prediction,
        )
    }

    /// SD3 / SD3.5: discrete flow, shift 3.0, multiplier 1000.
    pub fn sd3() -> Self {
        Self::from_valid_schedule(
            SigmaSchedule::DiscreteFlow {
                shift: 3.0,
                multiplier: 1000.0,
            },
            Prediction::Const,
        )
    }

    /// Flux schnell: discrete flow, shift 1.0, multiplier 1.
    pub fn flux_schnell() -> Self {
        Self::from_valid_schedule(
            SigmaSchedule::DiscreteFlow {
                shift: 1.0,
                multiplier: 1.0,
            },
            Prediction::Const,
        )
    }

    /// Flux dev: `ModelSamplingFlux` with μ = 1.15.
    pub fn flux_dev() -> Self {
        Self::flux(1.15)
    }

    /// `ModelSamplingDiscreteFlow` + `CONST` with the given shift and multiplier (the
    /// `ModelSamplingSD3` node).
    pub fn discrete_flow(shift: f64, multiplier: f64) -> Result<Self> {
        Self::new(
            SigmaSchedule::DiscreteFlow { shift, multiplier },
            Prediction::Const,
        )
    }

    /// `ModelSamplingFlux` + `CONST` with μ = `shift`.
    pub fn flux(shift: f64) -> Self {
        Self::from_valid_schedule(SigmaSchedule::Flux { shift }, Prediction::Const)
    }

    /// Builds the table; `schedule` must have passed [`validate`] (the presets are valid by
    /// construction).
    fn from_valid_schedule(schedule: SigmaSchedule, prediction: Prediction) -> Self {
        let (sigmas, log_sigmas) = match schedule {
            SigmaSchedule::Discrete {
                linear_start,
                linear_end,
                timesteps,
            } => discrete_table(linear_start, linear_end, timesteps),
            SigmaSchedule::DiscreteFlow { shift, multiplier } => {
                let multiplier32 = multiplier as f32;
                let sigmas = (1..=1000u32)
                    .map(|i| {
                        let timestep = (i as f32 / 1000.0) * multiplier32;
                        time_snr_shift_f32(shift, timestep / multiplier32)
                    })
                    .collect();
                (sigmas, Vec::new())
            }
            SigmaSchedule::Flux { shift } => {
                let sigmas = (1..=10_000u32)
                    .map(|i| flux_time_shift_f32(shift, i as f32 / 10_000.0))
                    .collect();
                (sigmas, Vec::new())
            }
        };
        Self {
            schedule,
            prediction,
            sigmas,
            log_sigmas,
        }
    }

    /// The schedule this table was built from.
    pub fn schedule(&self) -> SigmaSchedule {
        self.schedule
    }

    /// The prediction type.
    pub fn prediction(&self) -> Prediction {
        self.prediction
    }

    /// Whether this is a rectified-flow (`CONST`) model, which several samplers special-case.
    pub fn is_const(&self) -> bool {
        self.prediction == Prediction::Const
    }

    /// The model's sigma table, ascending (`model_sampling.sigmas`).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// `sigma_min`: the first table entry.
    pub fn sigma_min(&self) -> f32 {
        self.sigmas.first().copied().unwrap_or(0.0)
    }

    /// `sigma_max`: the last table entry.
    pub fn sigma_max(&self) -> f32 {
        self.sigmas.last().copied().unwrap_or(0.0)
    }

    /// `model_sampling.timestep(sigma)`: the model's timestep input for a noise level.
    ///
    /// For discrete schedules this is the index of the nearest table entry in log space (an
    /// integer, returned as f32).
    pub fn timestep(&self, sigma: f32) -> f32 {
        match self.schedule {
            SigmaSchedule::Discrete { .. } => {
                let log_sigma = sigma.ln();
                let mut best = 0usize;
                let mut best_distance = f32::INFINITY;
                for (i, &entry) in self.log_sigmas.iter().enumerate() {
                    let distance = (log_sigma - entry).abs();
                    if distance < best_distance {
                        best = i;
                        best_distance = distance;
                    }
                }
                best as f32
            }
            SigmaSchedule::DiscreteFlow { multiplier, .. } => sigma * multiplier as f32,
            SigmaSchedule::Flux { .. } => sigma,
        }
    }

    /// `model_sampling.sigma(timestep)`: the noise level at a (possibly fractional) timestep.
    pub fn sigma(&self, timestep: f32) -> f32 {
        match self.schedule {
            SigmaSchedule::Discrete { .. } => {
                let last = self.log_sigmas.len().saturating_sub(1);
                let t = timestep.clamp(0.0, last as f32);
                let low = t.floor();
                let high = t.ceil();
                let weight = t - low;
                let low_log = self.log_sigmas.get(low as usize).copied().unwrap_or(0.0);
                let high_log = self.log_sigmas.get(high as usize).copied().unwrap_or(0.0);
                ((1.0 - weight) * low_log + weight * high_log).exp()
            }
            SigmaSchedule::DiscreteFlow { shift, multiplier } => {
                time_snr_shift_f32(shift, timestep / multiplier as f32)
            }
            SigmaSchedule::Flux { shift } => flux_time_shift_f32(shift, timestep),
        }
    }

    /// `model_sampling.percent_to_sigma(percent)`: the sigma at a fraction of the way through
    /// sampling (0 = start, 1 = end), used by conditioning ranges and some samplers.
    pub fn percent_to_sigma(&self, percent: f64) -> f64 {
        match self.schedule {
            SigmaSchedule::Discrete { .. } => {
                if percent <= 0.0 {
                    return 999_999_999.9;
                }
                if percent >= 1.0 {
                    return 0.0;
                }
                f64::from(self.sigma(((1.0 - percent) * 999.0) as f32))
            }
            SigmaSchedule::DiscreteFlow { shift, .. } => {
                if percent <= 0.0 {
                    return 1.0;
                }
                if percent >= 1.0 {
                    return 0.0;
                }
                time_snr_shift_f64(shift, 1.0 - percent)
            }
            SigmaSchedule::Flux { shift } => {
                if percent <= 0.0 {
                    return 1.0;
                }
                if percent >= 1.0 {
                    return 0.0;
                }
                shift.exp() / (shift.exp() + (1.0 / (1.0 - percent) - 1.0))
            }
        }
    }

    /// `calculate_input`: what the network sees for a noisy latent `x` at `sigma`.
    pub fn calculate_input(&self, sigma: f32, x: &Tensor) -> Result<Tensor> {
        match self.prediction {
            Prediction::Eps | Prediction::V => div_scalar(x, (sigma * sigma + 1.0).sqrt()),
            Prediction::Const => Ok(x.clone()),
        }
    }

    /// `calculate_denoised`: the denoised latent from the network output.
    pub fn calculate_denoised(
        &self,
        sigma: f32,
        model_output: &Tensor,
        model_input: &Tensor,
    ) -> Result<Tensor> {
        match self.prediction {
            Prediction::Eps | Prediction::Const => sub(model_input, &scale(model_output, sigma)?),
            Prediction::V => {
                let variance = sigma * sigma + 1.0;
                let kept = div_scalar(model_input, variance)?;
                let removed = div_scalar(&scale(model_output, sigma)?, variance.sqrt())?;
                sub(&kept, &removed)
            }
        }
    }

    /// `noise_scaling`: the starting latent from unit noise and the (possibly empty) input
    /// latent. `max_denoise` (full denoise from the top of the schedule) scales EPS/V noise by
    /// `√(1 + σ²)` instead of `σ`.
    pub fn noise_scaling(
        &self,
        sigma: f32,
        noise: &Tensor,
        latent_image: &Tensor,
        max_denoise: bool,
    ) -> Result<Tensor> {
        match self.prediction {
            Prediction::Eps | Prediction::V => {
                let factor = if max_denoise {
                    (1.0 + sigma * sigma).sqrt()
                } else {
                    sigma
                };
                add(&scale(noise, factor)?, latent_image)
            }
            Prediction::Const => add(&scale(noise, sigma)?, &scale(latent_image, 1.0 - sigma)?),
        }
    }

    /// `inverse_noise_scaling`: undoes the flow scaling at the final sigma (identity for EPS/V).
    pub fn inverse_noise_scaling(&self, sigma: f32, latent: &Tensor) -> Result<Tensor> {
        match self.prediction {
            Prediction::Eps | Prediction::V => Ok(latent.clone()),
            Prediction::Const => div_scalar(latent, 1.0 - sigma),
        }
    }

    /// `KSampler.max_denoise`: whether `first_sigma` starts from (or above) the top of the table.
    pub fn is_max_denoise(&self, first_sigma: f32) -> bool {
        let max = f64::from(self.sigma_max());
        let sigma = f64::from(first_sigma);
        // math.isclose(max, sigma, rel_tol=1e-05)
        (max - sigma).abs() <= 1e-5 * max.abs().max(sigma.abs()) || sigma > max
    }
}

fn check_positive(what: &'static str, field: &'static str, value: f64) -> Result<()> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(SamplingError::InvalidParameter {
            what,
            field,
            reason: format!("must be a positive finite number, got {value}"),
        })
    }
}

/// Rejects parameters the tables cannot be built from.
fn validate(schedule: SigmaSchedule) -> Result<()> {
    match schedule {
        SigmaSchedule::Discrete {
            linear_start,
            linear_end,
            timesteps,
        } => {
            if !(1..=1_000_000).contains(&timesteps) {
                return Err(SamplingError::InvalidParameter {
                    what: "ModelSamplingDiscrete",
                    field: "timesteps",
                    reason: format!("must be between 1 and 1000000, got {timesteps}"),
                });
            }
            check_positive("ModelSamplingDiscrete", "linear_start", linear_start)?;
            check_positive("ModelSamplingDiscrete", "linear_end", linear_end)
        }
        SigmaSchedule::DiscreteFlow { shift, multiplier } => {
            check_finite("ModelSamplingDiscreteFlow", "shift", shift)?;
            check_positive("ModelSamplingDiscreteFlow", "multiplier", multiplier)
        }
        SigmaSchedule::Flux { shift } => check_finite("ModelSamplingFlux", "shift", shift),
    }
}

fn check_finite(what: &'static str, field: &'static str, value: f64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(SamplingError::InvalidParameter {
            what,
            field,
            reason: format!("must be finite, got {value}"),
        })
    }
}

/// The discrete table in float64 (as `make_beta_schedule` and `torch.cumprod` do), stored as
/// float32 sigmas and float32 logs of the float64 sigmas.
fn discrete_table(start: f64, end: f64, timesteps: usize) -> (Vec<f32>, Vec<f32>) {
    let mut alphas_cumprod = 1.0f64;
    let mut sigmas = Vec::with_capacity(timesteps);
    let mut log_sigmas = Vec::with_capacity(timesteps);
    for root_beta in linspace_f64(start.powf(0.5), end.powf(0.5), timesteps) {
        alphas_cumprod *= 1.0 - root_beta * root_beta;
        let sigma = ((1.0 - alphas_cumprod) / alphas_cumprod).sqrt();
        sigmas.push(sigma as f32);
        log_sigmas.push(sigma.ln() as f32);
    }
    (sigmas, log_sigmas)
}

/// `time_snr_shift` on a float32 tensor.
fn time_snr_shift_f32(shift: f64, t: f32) -> f32 {
    if shift == 1.0 {
        return t;
    }
    (shift as f32 * t) / (1.0 + (shift - 1.0) as f32 * t)
}

/// `time_snr_shift` on Python floats.
fn time_snr_shift_f64(shift: f64, t: f64) -> f64 {
    if shift == 1.0 {
        return t;
    }
    shift * t / (1.0 + (shift - 1.0) * t)
}

/// `flux_time_shift(mu, 1.0, t)` on a float32 tensor: `e^μ / (e^μ + (1/t − 1))`, where Python
/// evaluates each `scalar / tensor` as a reciprocal times the scalar.
fn flux_time_shift_f32(mu: f64, t: f32) -> f32 {
    let e_mu = mu.exp() as f32;
    let denominator = e_mu + (rdiv(1.0, t) - 1.0);
    rdiv(e_mu, denominator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd1_table_has_comfyui_endpoints() {
        let sampling = ModelSampling::discrete(Prediction::Eps);
        assert_eq!(sampling.sigmas().len(), 1000);
        assert!((sampling.sigma_min() - 0.029_167_5).abs() < 1e-6);
        assert!((sampling.sigma_max() - 14.614_643).abs() < 1e-4);
    }

    #[test]
    fn discrete_timestep_round_trips_through_sigma() {
        let sampling = ModelSampling::discrete(Prediction::Eps);
        for t in [0.0f32, 1.0, 250.0, 999.0] {
            assert_eq!(sampling.timestep(sampling.sigma(t)), t);
        }
    }

    #[test]
    fn flow_sigmas_end_at_one() {
        assert_eq!(ModelSampling::sd3().sigma_max(), 1.0);
        assert_eq!(ModelSampling::flux_dev().sigma_max(), 1.0);
        assert_eq!(ModelSampling::flux_dev().sigmas().len(), 10_000);
    }

    #[test]
    fn flux_shift_for_1024_square_is_max_shift() {
        let shift = flux_shift_for_resolution(1024, 1024, 1.15, 0.5);
        assert!((shift - 1.15).abs() < 1e-12);
    }

    #[test]
    fn invalid_discrete_parameters_are_rejected() {
        let bad = SigmaSchedule::Discrete {
            linear_start: -1.0,
            linear_end: 0.012,
            timesteps: 1000,
        };
        assert!(matches!(
            ModelSampling::new(bad, Prediction::Eps),
            Err(SamplingError::InvalidParameter {
                field: "linear_start",
                ..
            })
        ));
    }
}
