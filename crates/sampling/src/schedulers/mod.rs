//! Noise schedules: the [`Scheduler`] trait and [`SCHEDULERS`], the registry of every ComfyUI
//! scheduler in ComfyUI's order (`comfy/samplers.py: SCHEDULER_HANDLERS`).
//!
//! A scheduler turns a model's [`ModelSampling`] and a step count into the descending sigma
//! sequence a sampler walks, ending with 0 (or close to it). Values are float32, computed with
//! the same operations torch performs, so they match ComfyUI's bit for bit except where torch
//! evaluates `exp`/`pow`/`tan` with its SLEEF vector code and Kiln with the C library: those can
//! differ in the last bit (relative error ≤ 1.2e-7).

mod beta;
mod ddim_uniform;
mod exponential;
mod karras;
mod kl_optimal;
mod linear_quadratic;
mod normal;
mod simple;

pub use beta::Beta;
pub use ddim_uniform::DdimUniform;
pub use exponential::Exponential;
pub use karras::Karras;
pub use kl_optimal::KlOptimal;
pub use linear_quadratic::LinearQuadratic;
pub use normal::{Normal, SgmUniform};
pub use simple::Simple;

use crate::error::{Result, SamplingError};
use crate::model_sampling::ModelSampling;

/// A named way to place `steps` noise levels on a model's schedule.
pub trait Scheduler: Send + Sync {
    /// The name ComfyUI uses (`"karras"`, …).
    fn name(&self) -> &'static str;

    /// The sigmas for `steps` steps, descending, usually `steps + 1` long with a final 0.
    ///
    /// `steps` is at least 1; [`calculate_sigmas`] rejects 0.
    fn sigmas(&self, model: &ModelSampling, steps: usize) -> Vec<f32>;
}

/// Every scheduler, in ComfyUI's order (this order is what the UI combo shows).
pub static SCHEDULERS: &[&dyn Scheduler] = &[
    &Simple,
    &SgmUniform,
    &Karras,
    &Exponential,
    &DdimUniform,
    &Beta,
    &Normal,
    &LinearQuadratic,
    &KlOptimal,
];

/// The scheduler called `name`.
pub fn scheduler_by_name(name: &str) -> Result<&'static dyn Scheduler> {
    SCHEDULERS
        .iter()
        .copied()
        .find(|scheduler| scheduler.name() == name)
        .ok_or_else(|| SamplingError::UnknownScheduler {
            name: name.to_owned(),
        })
}

/// `comfy.samplers.calculate_sigmas(model_sampling, scheduler_name, steps)`.
pub fn calculate_sigmas(
    model: &ModelSampling,
    scheduler: &dyn Scheduler,
    steps: usize,
) -> Result<Vec<f32>> {
    if steps == 0 {
        return Err(SamplingError::InvalidParameter {
            what: "scheduler",
            field: "steps",
            reason: "must be at least 1".to_owned(),
        });
    }
    Ok(scheduler.sigmas(model, steps))
}

/// `math.isclose(value, 0, abs_tol=0.00001)`.
fn is_close_to_zero(value: f32) -> bool {
    f64::from(value).abs() <= 1e-5
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_sampling::Prediction;

    #[test]
    fn registry_is_in_comfyui_order() {
        let names: Vec<_> = SCHEDULERS.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "simple",
                "sgm_uniform",
                "karras",
                "exponential",
                "ddim_uniform",
                "beta",
                "normal",
                "linear_quadratic",
                "kl_optimal"
            ]
        );
    }

    #[test]
    fn lookup_by_name() {
        assert_eq!(scheduler_by_name("karras").unwrap().name(), "karras");
        assert!(matches!(
            scheduler_by_name("nope"),
            Err(SamplingError::UnknownScheduler { .. })
        ));
    }

    #[test]
    fn zero_steps_is_an_error() {
        let model = ModelSampling::discrete(Prediction::Eps);
        assert!(matches!(
            calculate_sigmas(&model, &Simple, 0),
            Err(SamplingError::InvalidParameter { field: "steps", .. })
        ));
    }

    #[test]
    fn every_scheduler_descends_to_zero() {
        let model = ModelSampling::discrete(Prediction::Eps);
        for scheduler in SCHEDULERS {
            let sigmas = calculate_sigmas(&model, *scheduler, 10).unwrap();
            assert_eq!(*sigmas.last().unwrap(), 0.0, "{}", scheduler.name());
            assert!(
                sigmas.windows(2).all(|w| w[0] >= w[1]),
                "{} not descending: {sigmas:?}",
                scheduler.name()
            );
        }
    }
}
