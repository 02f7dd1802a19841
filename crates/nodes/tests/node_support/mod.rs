//! Shared by the node tests that run on tiny checkpoints: CPU-only services over a temporary
//! ComfyUI base folder, writing a tiny checkpoint into one of its model folders, and the
//! largest-difference measures the assertions use.

// Each test binary uses only some of these helpers.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use candle_core::Tensor;
use kiln_folders::FolderPaths;
use kiln_nodes::NodeServices;
use kiln_runtime::{detect_host, PlanOptions, Planner};
use kiln_test_checkpoints::{write, CheckpointSpec};

/// A planner that keeps every weight and activation on the CPU.
pub(crate) fn cpu_planner() -> Planner {
    Planner::new(
        PlanOptions {
            cpu: true,
            ..PlanOptions::default()
        },
        detect_host(),
    )
}

/// Node services over the base folder `base` with [`cpu_planner`].
pub(crate) fn cpu_services(base: &Path) -> NodeServices {
    NodeServices::builder(FolderPaths::new(base).unwrap(), cpu_planner()).build()
}

/// Writes the tiny checkpoint `spec` into `base/models/<folder>` and returns its file name.
pub(crate) fn write_model(base: &Path, folder: &str, spec: &CheckpointSpec) -> String {
    let dir = base.join("models").join(folder);
    let path = write(spec, &dir).unwrap();
    path.file_name().unwrap().to_str().unwrap().to_owned()
}

/// The largest absolute value of `t`.
pub(crate) fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// The largest absolute difference of two same-shaped tensors.
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    max_abs(&(a - b).unwrap())
}
