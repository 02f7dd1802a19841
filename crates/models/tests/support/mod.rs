//! Shared by the integration tests: tensor comparisons and loading one component of a tiny
//! generated checkpoint.

#![allow(dead_code, clippy::unwrap_used)]

use candle_core::{DType, Device, Tensor};
use kiln_detect::{Checkpoint, ComponentKind};
use kiln_models::Attention;
use kiln_runtime::{simulated, PlanOptions, Planner, WeightStore};
use kiln_test_checkpoints::{write, CheckpointSpec};

/// The largest `|value|` of `t`, widened to f32.
pub(crate) fn max_abs(t: &Tensor) -> f32 {
    t.to_dtype(DType::F32)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The largest `|a − b|`, both widened to f32; the shapes must be equal.
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    max_abs(&(a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap())
}

/// `kind` of a freshly written tiny `spec` checkpoint, planned for the simulated `profile` and
/// loaded on the CPU as the engine does, with the attention the plan chose for it.
pub(crate) fn load_component(
    spec: &CheckpointSpec,
    kind: ComponentKind,
    profile: &str,
) -> (WeightStore, Attention) {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint::open(write(spec, dir.path()).unwrap()).unwrap();
    let planner = Planner::new(PlanOptions::default(), simulated(profile).unwrap());
    let plan = planner.plan(checkpoint.detection()).unwrap();
    let component = plan.component(kind).unwrap();
    let store = WeightStore::load(
        &checkpoint,
        component,
        planner.profile_for(component.device),
        &Device::Cpu,
    )
    .unwrap();
    (store, Attention::from_plan(component))
}
