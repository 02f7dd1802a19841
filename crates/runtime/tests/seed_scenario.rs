//! The seed scenario: SD1.5 and Flux stored as fp8 e4m3fn and e5m2, planned for a Mac without
//! bf16, a Mac with bf16, a CPU and an Ampere GPU. ComfyUI crashes on the Macs ("Trying to convert
//! Float8_e4m3fn to the MPS backend"); Kiln must plan every one, keep the weights 8-bit and compute
//! in a dtype the device runs, and say so.
// Test helpers outside `#[test]` functions unwrap too; clippy.toml only covers the latter.
#![allow(clippy::unwrap_used)]

mod common;

use kiln_detect::{ComponentKind, Detection};
use kiln_runtime::{simulated, HeldAs, PlanOptions, Planner, Widening};
use kiln_weights::StorageDType;

fn seeds() -> Vec<(&'static str, Detection)> {
    vec![
        ("sd1.5 e4m3fn", common::sd1(StorageDType::F8E4M3)),
        ("sd1.5 e5m2", common::sd1(StorageDType::F8E5M2)),
        ("flux e4m3fn", common::flux(StorageDType::F8E4M3)),
        ("flux e5m2", common::flux(StorageDType::F8E5M2)),
    ]
}

#[test]
fn every_seed_plans_without_error_and_stays_eight_bit() {
    for profile_name in ["metal-m1", "metal-m3", "cpu", "cuda-sm86"] {
        let profile = simulated(profile_name).unwrap();
        let planner = Planner::new(PlanOptions::default(), profile.clone());
        for (seed, detection) in seeds() {
            let plan = planner
                .plan(&detection)
                .unwrap_or_else(|e| panic!("{profile_name} × {seed}: {e}"));
            let stored = detection.components[0].dominant_dtype;
            let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
            let at = format!("{profile_name} × {seed}: {}", dm.reason);
            assert_eq!(dm.storage_dtype, stored, "{at}");
            assert!(
                matches!(dm.held_as, HeldAs::Dtype(d) if d.size_in_bytes() == 1),
                "held 8-bit, {at}"
            );
            assert!(
                profile.computes_for(&dm.op_families, dm.compute_dtype),
                "compute dtype runs on the profile, {at}"
            );
            assert!(dm.reason.contains(stored.name()), "{at}");
            assert!(
                dm.reason
                    .contains(&format!("computes {}", dm.compute_dtype.as_str())),
                "{at}"
            );
            assert!(!plan.notes.is_empty());
        }
    }
}

#[test]
fn macs_hold_fp8_as_bytes_and_say_why() {
    for (profile_name, flux_compute) in [("metal-m1", "f16"), ("metal-m3", "bf16")] {
        let planner = Planner::new(PlanOptions::default(), simulated(profile_name).unwrap());
        for (seed, detection) in seeds() {
            let plan = planner.plan(&detection).unwrap();
            let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
            assert_eq!(dm.held_as.to_string(), "u8", "{profile_name} × {seed}");
            assert_eq!(dm.widening, Widening::LookupTable);
            assert!(
                dm.reason
                    .contains("kept as 8-bit bytes (u8), widened per layer by lookup table"),
                "{}",
                dm.reason
            );
            if seed.ends_with("e4m3fn") {
                assert!(
                    dm.reason.contains(&format!("{profile_name} (macOS")),
                    "names the profile: {}",
                    dm.reason
                );
                assert!(
                    dm.reason.contains("cannot hold fp8_e4m3fn"),
                    "{}",
                    dm.reason
                );
            } else {
                assert!(dm.reason.contains("no fp8_e5m2 dtype"), "{}", dm.reason);
            }
            let expected = if seed.starts_with("flux") {
                flux_compute
            } else {
                "f16"
            };
            assert_eq!(
                dm.compute_dtype.as_str(),
                expected,
                "{profile_name} × {seed}"
            );
        }
    }
}

#[test]
fn m1_reason_names_missing_bf16_for_flux() {
    let plan = Planner::new(PlanOptions::default(), simulated("metal-m1").unwrap())
        .plan(&common::flux(StorageDType::F8E4M3))
        .unwrap();
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert!(dm.reason.contains("cannot compute bf16"), "{}", dm.reason);
    assert!(dm.reason.contains("to f16"), "{}", dm.reason);
}

#[test]
fn gpus_keep_both_fp8_formats_8_bit_as_bytes() {
    // Both formats stay 8-bit on the GPU as codes widened through a table: candle's CUDA
    // F8E4M3 casts do not load (their kernel names mismatch), so no F8E4M3 tensor is made.
    let planner = Planner::new(PlanOptions::default(), simulated("cuda-sm86").unwrap());
    let e4 = planner.plan(&common::flux(StorageDType::F8E4M3)).unwrap();
    let dm = e4.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.held_as.to_string(), "u8");
    assert_eq!(dm.widening, Widening::LookupTable);
    assert_eq!(dm.storage_dtype, StorageDType::F8E4M3);
    let e5 = planner.plan(&common::flux(StorageDType::F8E5M2)).unwrap();
    let dm = e5.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.held_as.to_string(), "u8");
    assert_eq!(dm.widening, Widening::LookupTable);
}

#[test]
fn json_has_the_doctor_shape() {
    let plan = Planner::new(PlanOptions::default(), simulated("metal-m1").unwrap())
        .plan(&common::flux(StorageDType::F8E4M3))
        .unwrap();
    let json = plan.to_json();
    let dm = &json["diffusion_model"];
    assert_eq!(dm["device"], "metal");
    assert_eq!(dm["storage_dtype"], "fp8_e4m3fn");
    assert_eq!(dm["compute_dtype"], "f16");
    assert_eq!(dm["attention"], "sub_quadratic");
    assert_eq!(dm["load_mode"], "resident");
    assert_eq!(dm["widening"], "lookup_table");
    assert_eq!(dm["held_as"], "u8");
    assert!(dm["reason"].as_str().unwrap().contains("cannot hold"));
    assert_eq!(json["t5xxl"]["device"], "cpu");
    assert_eq!(json["vae"]["compute_dtype"], "f32");
    // The full serialisation nests the same objects under `components`.
    let full = serde_json::to_value(&plan).unwrap();
    assert_eq!(full["components"]["diffusion_model"], *dm);
    assert_eq!(full["profile"], "metal-m1");
    assert!(full["peak_bytes"].as_u64().unwrap() > 11 << 30);
}
