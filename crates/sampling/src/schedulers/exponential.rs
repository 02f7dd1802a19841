//! `exponential`: evenly spaced in log sigma between the model's largest and smallest sigma.

use super::Scheduler;
use crate::model_sampling::ModelSampling;
use crate::torch_math::linspace_f32;

/// `get_sigmas_exponential(n, sigma_min, sigma_max)`.
#[derive(Clone, Copy, Debug)]
pub struct Exponential;

impl Scheduler for Exponential {
    fn name(&self) -> &'static str {
        "exponential"
    }

    fn sigmas(&self, model: &ModelSampling, steps: usize) -> Vec<f32> {
        let top = f64::from(model.sigma_max()).ln() as f32;
        let bottom = f64::from(model.sigma_min()).ln() as f32;
        let mut sigmas: Vec<f32> = linspace_f32(top, bottom, steps)
            .into_iter()
            .map(f32::exp)
            .collect();
        sigmas.push(0.0);
        sigmas
    }
}
