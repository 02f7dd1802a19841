//! `simple`: `steps` evenly strided entries of the model's sigma table, from the top.

use super::Scheduler;
use crate::model_sampling::ModelSampling;

/// `simple_scheduler`.
#[derive(Clone, Copy, Debug)]
pub struct Simple;

impl Scheduler for Simple {
    fn name(&self) -> &'static str {
        "simple"
    }

    fn sigmas(&self, model: &ModelSampling, steps: usize) -> Vec<f32> {
        let table = model.sigmas();
        let stride = table.len() as f64 / steps as f64;
        let mut sigmas: Vec<f32> = (0..steps)
            .map(|x| {
                let from_top = (x as f64 * stride) as usize;
                table[table.len() - 1 - from_top.min(table.len() - 1)]
            })
            .collect();
        sigmas.push(0.0);
        sigmas
    }
}
