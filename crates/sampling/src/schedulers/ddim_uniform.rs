//! `ddim_uniform`: every `len/steps`-th entry of the sigma table counted from the bottom, as the
//! original DDIM sampler strides its timesteps.

use super::{is_close_to_zero, Scheduler};
use crate::model_sampling::ModelSampling;

/// `ddim_scheduler`. Can return more than `steps + 1` sigmas when the table length is not a
/// multiple of `steps`, exactly as ComfyUI does.
#[derive(Clone, Copy, Debug)]
pub struct DdimUniform;

impl Scheduler for DdimUniform {
    fn name(&self) -> &'static str {
        "ddim_uniform"
    }

    fn sigmas(&self, model: &ModelSampling, steps: usize) -> Vec<f32> {
        let table = model.sigmas();
        let mut steps = steps;
        let mut sigmas = Vec::new();
        if table.len() > 1 && is_close_to_zero(table[1]) {
            steps += 1;
        } else {
            sigmas.push(0.0);
        }
        let stride = (table.len() / steps).max(1);
        sigmas.extend(table.iter().skip(1).step_by(stride).copied());
        sigmas.reverse();
        sigmas
    }
}
