//! `normal` and `sgm_uniform`: evenly spaced in timestep space between the model's largest and
//! smallest sigma, mapped back to sigmas.

use super::{is_close_to_zero, Scheduler};
use crate::model_sampling::ModelSampling;
use crate::torch_math::linspace_f32;

/// `normal_scheduler`.
#[derive(Clone, Copy, Debug)]
pub struct Normal;

/// `normal_scheduler(sgm=True)`: `steps + 1` points with the last dropped, then 0.
#[derive(Clone, Copy, Debug)]
pub struct SgmUniform;

impl Scheduler for Normal {
    fn name(&self) -> &'static str {
        "normal"
    }

    fn sigmas(&self, model: &ModelSampling, steps: usize) -> Vec<f32> {
        normal_scheduler(model, steps, false)
    }
}

impl Scheduler for SgmUniform {
    fn name(&self) -> &'static str {
        "sgm_uniform"
    }

    fn sigmas(&self, model: &ModelSampling, steps: usize) -> Vec<f32> {
        normal_scheduler(model, steps, true)
    }
}

fn normal_scheduler(model: &ModelSampling, steps: usize, sgm: bool) -> Vec<f32> {
    let start = model.timestep(model.sigma_max());
    let end = model.timestep(model.sigma_min());
    let mut append_zero = true;
    let timesteps = if sgm {
        let mut points = linspace_f32(start, end, steps + 1);
        points.pop();
        points
    } else {
        let mut count = steps;
        if is_close_to_zero(model.sigma(end)) {
            count += 1;
            append_zero = false;
        }
        linspace_f32(start, end, count)
    };
    let mut sigmas: Vec<f32> = timesteps.into_iter().map(|t| model.sigma(t)).collect();
    if append_zero {
        sigmas.push(0.0);
    }
    sigmas
}
