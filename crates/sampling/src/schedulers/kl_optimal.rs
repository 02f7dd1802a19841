//! `kl_optimal`: tangent of a linear interpolation between `atan(sigma_max)` and
//! `atan(sigma_min)` (AUTOMATIC1111 PR 15608).

use super::Scheduler;
use crate::model_sampling::ModelSampling;

/// `kl_optimal_scheduler(n, sigma_min, sigma_max)`. With one step ComfyUI divides 0 by 0 and
/// returns `[NaN, 0]`; this does the same.
#[derive(Clone, Copy, Debug)]
pub struct KlOptimal;

impl Scheduler for KlOptimal {
    fn name(&self) -> &'static str {
        "kl_optimal"
    }

    fn sigmas(&self, model: &ModelSampling, steps: usize) -> Vec<f32> {
        let atan_min = f64::from(model.sigma_min()).atan() as f32;
        let atan_max = f64::from(model.sigma_max()).atan() as f32;
        let denominator = steps as f32 - 1.0;
        let mut sigmas: Vec<f32> = (0..steps)
            .map(|i| {
                let position = i as f32 / denominator;
                (position * atan_min + (1.0 - position) * atan_max).tan()
            })
            .collect();
        sigmas.push(0.0);
        sigmas
    }
}
