//! `karras`: Karras et al. (2022) ρ = 7 spacing between the model's smallest and largest sigma.

use super::Scheduler;
use crate::model_sampling::ModelSampling;
use crate::torch_math::linspace_f32;

/// `get_sigmas_karras(n, sigma_min, sigma_max, rho=7)`.
#[derive(Clone, Copy, Debug)]
pub struct Karras;

/// Karras' ρ.
const RHO: f64 = 7.0;

impl Scheduler for Karras {
    fn name(&self) -> &'static str {
        "karras"
    }

    fn sigmas(&self, model: &ModelSampling, steps: usize) -> Vec<f32> {
        let min_inv_rho = f64::from(model.sigma_min()).powf(1.0 / RHO);
        let max_inv_rho = f64::from(model.sigma_max()).powf(1.0 / RHO);
        let span = (min_inv_rho - max_inv_rho) as f32;
        let mut sigmas: Vec<f32> = linspace_f32(0.0, 1.0, steps)
            .into_iter()
            .map(|ramp| (max_inv_rho as f32 + ramp * span).powf(RHO as f32))
            .collect();
        sigmas.push(0.0);
        sigmas
    }
}
