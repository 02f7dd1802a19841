//! `beta`: timesteps placed at quantiles of a Beta(0.6, 0.6) distribution (arXiv 2407.12173),
//! rounded to table indices and deduplicated.

use super::Scheduler;
use crate::beta_distribution::beta_ppf;
use crate::model_sampling::ModelSampling;

/// `beta_scheduler(alpha=0.6, beta=0.6)`.
#[derive(Clone, Copy, Debug)]
pub struct Beta;

const ALPHA: f64 = 0.6;
const BETA: f64 = 0.6;

impl Scheduler for Beta {
    fn name(&self) -> &'static str {
        "beta"
    }

    fn sigmas(&self, model: &ModelSampling, steps: usize) -> Vec<f32> {
        let table = model.sigmas();
        let total_timesteps = (table.len() - 1) as f64;
        // numpy.linspace(0, 1, steps, endpoint=False) computes i * (1 / steps).
        let step = 1.0 / steps as f64;
        let mut sigmas = Vec::with_capacity(steps + 1);
        let mut last = None;
        for i in 0..steps {
            let quantile = 1.0 - i as f64 * step;
            let timestep = (beta_ppf(quantile, ALPHA, BETA) * total_timesteps).round_ties_even();
            if last != Some(timestep) {
                let index = (timestep.max(0.0) as usize).min(table.len() - 1);
                sigmas.push(table[index]);
            }
            last = Some(timestep);
        }
        sigmas.push(0.0);
        sigmas
    }
}
