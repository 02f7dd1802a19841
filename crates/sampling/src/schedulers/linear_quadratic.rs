//! `linear_quadratic`: Mochi's schedule, linear for the first half of the steps and quadratic
//! after, scaled by the model's largest sigma.

use super::Scheduler;
use crate::model_sampling::ModelSampling;

/// `linear_quadratic_schedule(threshold_noise=0.025, linear_steps=steps // 2)`.
#[derive(Clone, Copy, Debug)]
pub struct LinearQuadratic;

const THRESHOLD_NOISE: f64 = 0.025;

impl Scheduler for LinearQuadratic {
    fn name(&self) -> &'static str {
        "linear_quadratic"
    }

    fn sigmas(&self, model: &ModelSampling, steps: usize) -> Vec<f32> {
        let schedule: Vec<f64> = if steps == 1 {
            vec![1.0, 0.0]
        } else {
            let linear_steps = steps / 2;
            let linear = linear_steps as f64;
            let quadratic = (steps - linear_steps) as f64;
            let step_diff = linear - THRESHOLD_NOISE * steps as f64;
            let quadratic_coef = step_diff / (linear * quadratic * quadratic);
            let linear_coef = THRESHOLD_NOISE / linear - 2.0 * step_diff / (quadratic * quadratic);
            let constant = quadratic_coef * (linear * linear);
            (0..linear_steps)
                .map(|i| i as f64 * THRESHOLD_NOISE / linear)
                .chain((linear_steps..steps).map(|i| {
                    let i = i as f64;
                    quadratic_coef * (i * i) + linear_coef * i + constant
                }))
                .chain(std::iter::once(1.0))
                .map(|x| 1.0 - x)
                .collect()
        };
        let sigma_max = model.sigma_max();
        schedule.into_iter().map(|x| x as f32 * sigma_max).collect()
    }
}
