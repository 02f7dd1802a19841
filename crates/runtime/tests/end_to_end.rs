//! Generated checkpoints in real key layouts → detection → plan per simulated profile → every
//! component loaded on the CPU: no tensor in a form its profile cannot hold, and widened weights
//! equal the generator's reference values within storage rounding.
// Test helpers outside `#[test]` functions unwrap too; clippy.toml only covers the latter.
#![allow(clippy::unwrap_used)]

use candle_core::Device;
use kiln_detect::{Checkpoint, ComponentKind};
use kiln_runtime::{simulated, HeldAs, PlanOptions, Planner, WeightStore, Widening};
use kiln_test_checkpoints::{
    reference_tensor, write, CheckpointSpec, Component as RefComponent, Family, GgufQuant,
    Packaging, Storage,
};

fn reference_component(kind: ComponentKind) -> RefComponent {
    match kind {
        ComponentKind::DiffusionModel => RefComponent::DiffusionModel,
        ComponentKind::ClipL => RefComponent::ClipL,
        ComponentKind::ClipG => RefComponent::ClipG,
        ComponentKind::OpenClipH => RefComponent::OpenClipH,
        ComponentKind::T5xxl => RefComponent::T5Xxl,
        ComponentKind::Vae => RefComponent::Vae,
    }
}

/// Loads every component of `spec` for every profile and checks holdability and values.
fn round_trip(spec: CheckpointSpec, profiles: &[&str], tolerance: f32) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&spec, dir.path()).unwrap();
    let checkpoint = Checkpoint::open(&path).unwrap();
    let mut compared_total = 0;
    for profile_name in profiles {
        let profile = simulated(profile_name).unwrap();
        let planner = Planner::new(PlanOptions::default(), profile);
        let plan = planner.plan(checkpoint.detection()).unwrap();
        for component in &plan.components {
            let device_profile = planner.profile_for(component.device);
            let store = WeightStore::load(&checkpoint, component, device_profile, &Device::Cpu)
                .unwrap_or_else(|e| panic!("{spec:?} on {profile_name}: {e}"));
            let mut compared = 0;
            for name in store.names() {
                let held = store.held(name).unwrap();
                match held.held_as() {
                    HeldAs::Dtype(dtype) => assert!(
                        device_profile.can_hold_candle(dtype),
                        "{profile_name}: {name} held as {}",
                        dtype.as_str()
                    ),
                    HeldAs::Quantized(_) => assert_eq!(component.widening, Widening::GgufDequant),
                }
                if compared >= 4 || !name.ends_with("weight") {
                    continue;
                }
                let kind = reference_component(component.component);
                let Some(reference) = reference_tensor(&spec, kind, name) else {
                    continue;
                };
                let got = store.get(name).unwrap();
                assert_eq!(got.dims(), reference.shape.as_slice(), "{name}");
                assert_eq!(got.dtype(), component.compute_dtype);
                let got = got
                    .to_dtype(candle_core::DType::F32)
                    .and_then(|t| t.flatten_all())
                    .and_then(|t| t.to_vec1::<f32>())
                    .unwrap();
                for (g, want) in got.iter().zip(&reference.values) {
                    let bound = tolerance * want.abs().max(0.05);
                    assert!(
                        (g - want).abs() <= bound,
                        "{spec:?} on {profile_name}: {name}: {g} vs {want}"
                    );
                }
                compared += 1;
            }
            compared_total += compared;
        }
    }
    assert!(
        compared_total > 0,
        "{spec:?}: no weight compared with its reference"
    );
}

#[test]
fn sd1_fp8_checkpoints_load_on_every_seed_profile() {
    for storage in [Storage::F8E4M3, Storage::F8E5M2] {
        let spec = CheckpointSpec::new(Family::Sd1, storage, Packaging::SingleFile);
        // fp8 e5m2 keeps 2 mantissa bits: up to 12.5% relative error, plus f16 rounding.
        round_trip(spec, &["metal-m1", "metal-m3", "cpu", "cuda-sm86"], 0.15);
    }
}

#[test]
fn flux_scaled_fp8_loads_with_scales_on_a_mac() {
    let spec = CheckpointSpec::new(
        Family::FluxDev,
        Storage::ScaledF8E4M3,
        Packaging::Standalone,
    );
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint::open(write(&spec, dir.path()).unwrap()).unwrap();
    let plan = Planner::new(PlanOptions::default(), simulated("metal-m1").unwrap())
        .plan(checkpoint.detection())
        .unwrap();
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.widening, Widening::ScaledFp8, "{}", dm.reason);
    round_trip(spec, &["metal-m1", "cpu"], 0.15);
}

#[test]
fn flux_gguf_q8_0_stays_quantised() {
    let spec = CheckpointSpec::new(
        Family::FluxDev,
        Storage::Gguf(GgufQuant::Q8_0),
        Packaging::Gguf,
    );
    round_trip(spec, &["metal-m3", "cuda-sm75"], 0.1);
}

#[test]
fn flux_gguf_k_quants_keep_every_quantised_layer_quantised() {
    let spec = CheckpointSpec::new(
        Family::FluxDev,
        Storage::Gguf(GgufQuant::Q4_K_S),
        Packaging::Gguf,
    );
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint::open(write(&spec, dir.path()).unwrap()).unwrap();
    let profile = simulated("metal-m1").unwrap();
    let plan = Planner::new(PlanOptions::default(), profile.clone())
        .plan(checkpoint.detection())
        .unwrap();
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.widening, Widening::GgufDequant, "{}", dm.reason);
    let store = WeightStore::load(&checkpoint, dm, &profile, &Device::Cpu).unwrap();
    let file = &checkpoint.files()[0];
    for name in store.names() {
        let stored = &dm_source(&checkpoint, name);
        let info = file.get(stored).unwrap();
        let quantised = matches!(info.dtype, kiln_weights::StorageDType::Gguf(g)
            if !matches!(g, kiln_weights::GgufType::F32 | kiln_weights::GgufType::F16 | kiln_weights::GgufType::BF16));
        let held = store.held(name).unwrap();
        assert_eq!(
            held.as_quantized().is_some(),
            quantised,
            "{name} stored {}",
            info.dtype
        );
    }
}

fn dm_source(checkpoint: &Checkpoint, name: &str) -> String {
    checkpoint
        .detection()
        .component(ComponentKind::DiffusionModel)
        .unwrap()
        .keys[name]
        .name
        .clone()
}
