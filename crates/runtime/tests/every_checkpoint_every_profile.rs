//! The matrix: every generated checkpoint (every family × layout × storage dtype of
//! `kiln_test_checkpoints::all_specs`) planned on every simulated profile. Each component plan
//! must pass `check` against the profile of the device it is placed on, 8-bit and GGUF storage
//! must stay 8-bit (or quantised), and the compute dtype must be one that device computes in.
#![allow(clippy::unwrap_used)]

use kiln_detect::Checkpoint;
use kiln_runtime::{profile_names, simulated, OpFamily, PlanOptions, Planner};
use kiln_test_checkpoints::{all_specs, write, Packaging};
use kiln_weights::StorageDType;

#[test]
fn every_generated_checkpoint_plans_on_every_profile() {
    let dir = tempfile::tempdir().unwrap();
    let mut planned = 0;
    let mut failures = Vec::new();
    for spec in all_specs() {
        let written = write(&spec, dir.path()).unwrap();
        // A diffusers VAE is written as the safetensors inside its folder.
        let target = if spec.packaging == Packaging::Diffusers && written.is_file() {
            written.parent().unwrap().to_path_buf()
        } else {
            written
        };
        let checkpoint = Checkpoint::open(&target).unwrap();
        for name in profile_names() {
            let planner = Planner::new(PlanOptions::default(), simulated(name).unwrap());
            let plan = match planner.plan(checkpoint.detection()) {
                Ok(plan) => plan,
                Err(error) => {
                    failures.push(format!("{spec} on {name}: {error}"));
                    continue;
                }
            };
            for (component, detected) in plan
                .components
                .iter()
                .zip(&checkpoint.detection().components)
            {
                let profile = planner.profile_for(component.device);
                if let Err(error) = component.check(profile) {
                    failures.push(format!("{spec} on {name}: {error}"));
                }
                let stored = detected.scaled_fp8.unwrap_or(detected.dominant_dtype);
                let quantized = detected
                    .dtypes
                    .keys()
                    .any(|d| matches!(d, StorageDType::Gguf(g) if g.block_layout().0 > 1));
                if quantized && !matches!(component.storage_dtype, StorageDType::Gguf(_)) {
                    failures.push(format!(
                        "{spec} on {name}: {} holds GGUF blocks but planned {}",
                        component.component, component.storage_dtype
                    ));
                }
                if stored.is_fp8() && component.storage_dtype != stored {
                    failures.push(format!(
                        "{spec} on {name}: {} stored {stored} but planned {}",
                        component.component, component.storage_dtype
                    ));
                }
                if !profile.computes(OpFamily::Matmul, component.compute_dtype) {
                    failures.push(format!(
                        "{spec} on {name}: {} computes in {:?}, which {} cannot",
                        component.component, component.compute_dtype, profile.name
                    ));
                }
                if component.reason.is_empty() {
                    failures.push(format!("{spec} on {name}: no reason"));
                }
                planned += 1;
            }
        }
        // Keep the temporary directory small: 88 checkpoints are ~1.4 GB together.
        let _ = std::fs::remove_dir_all(dir.path().join(spec.relative_path()));
        let _ = std::fs::remove_file(dir.path().join(spec.relative_path()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(planned > 88 * 7, "planned {planned} components");
}
