//! Kiln's opt-in bf16 compute on CPUs with AVX512-BF16: `--bf16-unet`/`--bf16-vae` on a profile
//! with fast bf16 store that part in bf16 and multiply its matrix products in bf16 around f32
//! activations; without the flag or the CPU feature the plan computes ComfyUI's f32. 16-bit
//! files stay 16-bit on the CPU, widened per layer to the values of ComfyUI's f32 copy.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use kiln_detect::ComponentKind;
use kiln_runtime::{simulated, ForcedDType, GlobalPrecision, PlanOptions, Planner, Widening};
use kiln_weights::StorageDType;

fn plan_with(
    options: PlanOptions,
    profile: &str,
    detection: &kiln_detect::Detection,
) -> kiln_runtime::Plan {
    Planner::new(options, simulated(profile).unwrap())
        .plan(detection)
        .unwrap()
}

fn bf16_flags() -> PlanOptions {
    PlanOptions {
        unet_dtype: Some(ForcedDType::BF16),
        vae_dtype: Some(ForcedDType::BF16),
        ..PlanOptions::default()
    }
}

#[test]
fn fast_bf16_cpu_with_the_flags_stores_and_computes_bf16() {
    let plan = plan_with(
        bf16_flags(),
        "cpu-avx512bf16",
        &common::sd1(StorageDType::F32),
    );
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.storage_dtype, StorageDType::BF16, "{}", dm.reason);
    assert_eq!(dm.compute_dtype.as_str(), "f32", "{}", dm.reason);
    assert!(dm.bf16_products, "{}", dm.reason);
    assert!(
        dm.reason.contains(
            "bf16 matrix products with f32 sums, f32 activations: CPU has AVX512-BF16 \
             (--bf16-unet)"
        ),
        "{}",
        dm.reason
    );
    let vae = plan.component(ComponentKind::Vae).unwrap();
    assert_eq!(vae.storage_dtype, StorageDType::BF16, "{}", vae.reason);
    assert_eq!(vae.compute_dtype.as_str(), "f32", "{}", vae.reason);
    assert!(vae.bf16_products, "{}", vae.reason);
    assert!(
        vae.reason.contains("AVX512-BF16 (--bf16-vae)"),
        "{}",
        vae.reason
    );
    for encoder in plan.components.iter().filter(|p| {
        !matches!(
            p.component,
            ComponentKind::DiffusionModel | ComponentKind::Vae
        )
    }) {
        assert_eq!(encoder.compute_dtype.as_str(), "f32", "{}", encoder.reason);
        assert!(!encoder.bf16_products, "{}", encoder.reason);
    }
}

#[test]
fn plain_cpu_with_the_flags_keeps_f32_compute() {
    let plan = plan_with(bf16_flags(), "cpu", &common::sd1(StorageDType::F32));
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.storage_dtype, StorageDType::BF16, "{}", dm.reason);
    assert_eq!(dm.compute_dtype.as_str(), "f32", "{}", dm.reason);
    assert_eq!(dm.widening, Widening::CastOnDevice, "{}", dm.reason);
    assert!(!dm.bf16_products, "{}", dm.reason);
    assert!(!dm.reason.contains("AVX512-BF16 (--"), "{}", dm.reason);
    let vae = plan.component(ComponentKind::Vae).unwrap();
    assert_eq!(vae.compute_dtype.as_str(), "f32", "{}", vae.reason);
    assert!(vae.reason.contains("no AVX512-BF16"), "{}", vae.reason);
}

#[test]
fn fast_bf16_cpu_without_the_flags_plans_like_comfyui() {
    let detection = common::sd1(StorageDType::F32);
    let fast = plan_with(PlanOptions::default(), "cpu-avx512bf16", &detection);
    let plain = plan_with(PlanOptions::default(), "cpu", &detection);
    for (a, b) in fast.components.iter().zip(&plain.components) {
        assert_eq!(a.component, b.component);
        assert_eq!(a.storage_dtype, b.storage_dtype, "{}", a.reason);
        assert_eq!(a.compute_dtype, b.compute_dtype, "{}", a.reason);
        assert_eq!(a.compute_dtype.as_str(), "f32", "{}", a.reason);
        assert!(!a.bf16_products, "{}", a.reason);
    }
    let dm = fast.component(ComponentKind::DiffusionModel).unwrap();
    assert!(!dm.reason.contains("AVX512-BF16"), "{}", dm.reason);
}

#[test]
fn force_fp32_and_other_unet_flags_keep_f32_on_the_fast_cpu() {
    let detection = common::sd1(StorageDType::F32);
    let forced = PlanOptions {
        precision: GlobalPrecision::ForceFp32,
        ..bf16_flags()
    };
    let plan = plan_with(forced, "cpu-avx512bf16", &detection);
    for part in &plan.components {
        assert_eq!(part.compute_dtype.as_str(), "f32", "{}", part.reason);
    }
    let fp16 = PlanOptions {
        unet_dtype: Some(ForcedDType::F16),
        ..PlanOptions::default()
    };
    let plan = plan_with(fp16, "cpu-avx512bf16", &detection);
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.compute_dtype.as_str(), "f32", "{}", dm.reason);
}

#[test]
fn flux_on_the_fast_cpu_computes_bf16_with_the_unet_flag() {
    let options = PlanOptions {
        unet_dtype: Some(ForcedDType::BF16),
        ..PlanOptions::default()
    };
    let detection = common::flux(StorageDType::BF16);
    let fast = plan_with(options.clone(), "cpu-avx512bf16", &detection);
    let dm = fast.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.compute_dtype.as_str(), "f32", "{}", dm.reason);
    assert!(dm.bf16_products, "{}", dm.reason);
    let plain = plan_with(options, "cpu", &detection);
    let dm = plain.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.compute_dtype.as_str(), "f32", "{}", dm.reason);
    assert!(!dm.bf16_products, "{}", dm.reason);
}

#[test]
fn sixteen_bit_files_stay_sixteen_bit_on_the_cpu_unless_fp32_is_forced() {
    for storage in [StorageDType::F16, StorageDType::BF16] {
        let detection = common::sd1(storage);
        let plan = plan_with(PlanOptions::default(), "cpu", &detection);
        for kind in [ComponentKind::DiffusionModel, ComponentKind::Vae] {
            let part = plan.component(kind).unwrap();
            assert_eq!(part.storage_dtype, storage, "{}", part.reason);
            assert_eq!(part.compute_dtype.as_str(), "f32", "{}", part.reason);
            assert!(!part.bf16_products, "{}", part.reason);
            assert!(
                part.reason.contains("held as stored and widened per layer"),
                "{}",
                part.reason
            );
        }
        let forced = PlanOptions {
            precision: GlobalPrecision::ForceFp32,
            ..PlanOptions::default()
        };
        let plan = plan_with(forced, "cpu", &detection);
        for kind in [ComponentKind::DiffusionModel, ComponentKind::Vae] {
            let part = plan.component(kind).unwrap();
            assert_eq!(part.storage_dtype, StorageDType::F32, "{}", part.reason);
        }
    }
    // A GPU plan is ComfyUI's own: f16 there is computed in f16.
    let plan = plan_with(
        PlanOptions::default(),
        "cuda-sm86",
        &common::sd1(StorageDType::F16),
    );
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert!(!dm.reason.contains("held as stored"), "{}", dm.reason);
}
