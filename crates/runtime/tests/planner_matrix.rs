//! Every simulated profile × every checkpoint scenario: the plan is valid for its profile, 8-bit
//! stays 8-bit, and the diffusion model's decisions match the expectation table row by row.
// Test helpers outside `#[test]` functions unwrap too; clippy.toml only covers the latter.
#![allow(clippy::unwrap_used)]

mod common;

use kiln_detect::ComponentKind;
use kiln_runtime::{
    profile_names, simulated, AttentionKernel, LoadMode, PlanOptions, Planner, Widening,
};

/// (profile, scenario, storage, held, compute, widening, attention, load mode, a fact the reason
/// must state)
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Widening,
    AttentionKernel,
    LoadMode,
    &'static str,
);

use AttentionKernel::{Fused, SubQuadratic};
use LoadMode::Resident;
use Widening::{CastOnDevice, GgufDequant, LookupTable, ScaledFp8};

const NONE: Widening = Widening::None;

#[rustfmt::skip]
const DIFFUSION: &[Row] = &[
    // --- cpu: ComfyUI stores f32 on the CPU, Kiln keeps 16-bit files 16-bit (widened per layer to
    // the same values); 8-bit stays 8-bit; f32 compute; fused attention.
    ("cpu", "sd1-f32", "f32", "f32", "f32", NONE, Fused, Resident, "f32 on the CPU"),
    ("cpu", "sd1-f16", "f16", "f16", "f32", CastOnDevice, Fused, Resident, "held as stored and widened per layer"),
    ("cpu", "sd1-fp8-e4m3fn", "fp8_e4m3fn", "f8e4m3", "f32", CastOnDevice, Fused, Resident, "held as f8e4m3"),
    ("cpu", "sd1-fp8-e5m2", "fp8_e5m2", "u8", "f32", LookupTable, Fused, Resident, "no fp8_e5m2 dtype"),
    ("cpu", "sdxl-bf16", "bf16", "bf16", "f32", CastOnDevice, Fused, Resident, "held as stored and widened per layer"),
    ("cpu", "flux-fp8-e4m3fn", "fp8_e4m3fn", "f8e4m3", "f32", CastOnDevice, Fused, Resident, "never computes 16-bit on the CPU"),
    ("cpu", "flux-fp8-e5m2", "fp8_e5m2", "u8", "f32", LookupTable, Fused, Resident, "no fp8_e5m2 dtype"),
    ("cpu", "flux-scaled-fp8", "fp8_e4m3fn", "f8e4m3", "f32", ScaledFp8, Fused, Resident, "per-tensor scale"),
    ("cpu", "flux-gguf-q8_0", "q8_0", "q8_0", "f32", GgufDequant, Fused, Resident, "GGUF q8_0"),
    ("cpu", "sd3-f16", "f16", "f16", "f32", CastOnDevice, Fused, Resident, "held as stored and widened per layer"),
    // --- cpu-avx512bf16: fast bf16, but without --bf16-unet nothing changes.
    ("cpu-avx512bf16", "sd1-f32", "f32", "f32", "f32", NONE, Fused, Resident, "f32 on the CPU"),
    ("cpu-avx512bf16", "sd1-f16", "f16", "f16", "f32", CastOnDevice, Fused, Resident, "held as stored and widened per layer"),
    ("cpu-avx512bf16", "sd1-fp8-e4m3fn", "fp8_e4m3fn", "f8e4m3", "f32", CastOnDevice, Fused, Resident, "held as f8e4m3"),
    ("cpu-avx512bf16", "sd1-fp8-e5m2", "fp8_e5m2", "u8", "f32", LookupTable, Fused, Resident, "no fp8_e5m2 dtype"),
    ("cpu-avx512bf16", "sdxl-bf16", "bf16", "bf16", "f32", CastOnDevice, Fused, Resident, "held as stored and widened per layer"),
    ("cpu-avx512bf16", "flux-fp8-e4m3fn", "fp8_e4m3fn", "f8e4m3", "f32", CastOnDevice, Fused, Resident, "never computes 16-bit on the CPU"),
    ("cpu-avx512bf16", "flux-fp8-e5m2", "fp8_e5m2", "u8", "f32", LookupTable, Fused, Resident, "no fp8_e5m2 dtype"),
    ("cpu-avx512bf16", "flux-scaled-fp8", "fp8_e4m3fn", "f8e4m3", "f32", ScaledFp8, Fused, Resident, "per-tensor scale"),
    ("cpu-avx512bf16", "flux-gguf-q8_0", "q8_0", "q8_0", "f32", GgufDequant, Fused, Resident, "GGUF q8_0"),
    ("cpu-avx512bf16", "sd3-f16", "f16", "f16", "f32", CastOnDevice, Fused, Resident, "held as stored and widened per layer"),
    // --- metal-m1: macOS 13, no bf16, no fp8: fp8 as u8 bytes + table, f16 compute.
    ("metal-m1", "sd1-f32", "f16", "f16", "f16", NONE, SubQuadratic, Resident, "first of the model's [f16, bf16, f32]"),
    ("metal-m1", "sd1-f16", "f16", "f16", "f16", NONE, SubQuadratic, Resident, "stored f16"),
    ("metal-m1", "sd1-fp8-e4m3fn", "fp8_e4m3fn", "u8", "f16", LookupTable, SubQuadratic, Resident, "cannot hold fp8_e4m3fn"),
    ("metal-m1", "sd1-fp8-e5m2", "fp8_e5m2", "u8", "f16", LookupTable, SubQuadratic, Resident, "no fp8_e5m2 dtype"),
    ("metal-m1", "sdxl-bf16", "f16", "f16", "f16", NONE, SubQuadratic, Resident, "stored bf16 → f16"),
    ("metal-m1", "flux-fp8-e4m3fn", "fp8_e4m3fn", "u8", "f16", LookupTable, SubQuadratic, Resident, "cannot compute bf16"),
    ("metal-m1", "flux-fp8-e5m2", "fp8_e5m2", "u8", "f16", LookupTable, SubQuadratic, Resident, "cannot compute bf16"),
    ("metal-m1", "flux-scaled-fp8", "fp8_e4m3fn", "u8", "f16", ScaledFp8, SubQuadratic, Resident, "cannot hold fp8_e4m3fn"),
    ("metal-m1", "flux-gguf-q8_0", "q8_0", "q8_0", "f16", GgufDequant, SubQuadratic, Resident, "quantised matmul"),
    ("metal-m1", "sd3-f16", "f16", "f16", "f16", NONE, SubQuadratic, Resident, "stored f16"),
    // --- metal-m3: macOS 15, bf16: Flux computes bf16, SD1/SDXL/SD3 f16 (model lists).
    ("metal-m3", "sd1-f32", "f16", "f16", "f16", NONE, SubQuadratic, Resident, "[f16, bf16, f32]"),
    ("metal-m3", "sd1-f16", "f16", "f16", "f16", NONE, SubQuadratic, Resident, "stored f16"),
    ("metal-m3", "sd1-fp8-e4m3fn", "fp8_e4m3fn", "u8", "f16", LookupTable, SubQuadratic, Resident, "cannot hold fp8_e4m3fn"),
    ("metal-m3", "sd1-fp8-e5m2", "fp8_e5m2", "u8", "f16", LookupTable, SubQuadratic, Resident, "no fp8_e5m2 dtype"),
    ("metal-m3", "sdxl-bf16", "f16", "f16", "f16", NONE, SubQuadratic, Resident, "stored bf16 → f16"),
    ("metal-m3", "flux-fp8-e4m3fn", "fp8_e4m3fn", "u8", "bf16", LookupTable, SubQuadratic, Resident, "computes bf16"),
    ("metal-m3", "flux-fp8-e5m2", "fp8_e5m2", "u8", "bf16", LookupTable, SubQuadratic, Resident, "computes bf16"),
    ("metal-m3", "flux-scaled-fp8", "fp8_e4m3fn", "u8", "bf16", ScaledFp8, SubQuadratic, Resident, "per-tensor scale"),
    ("metal-m3", "flux-gguf-q8_0", "q8_0", "q8_0", "bf16", GgufDequant, SubQuadratic, Resident, "computes bf16"),
    ("metal-m3", "sd3-f16", "f16", "f16", "f16", NONE, SubQuadratic, Resident, "stored f16"),
    // --- cuda-sm75: fp16 only, no fused kernel.
    ("cuda-sm75", "sd1-f32", "f16", "f16", "f16", NONE, SubQuadratic, Resident, "no fused attention"),
    ("cuda-sm75", "sd1-f16", "f16", "f16", "f16", NONE, SubQuadratic, Resident, "stored f16"),
    ("cuda-sm75", "sd1-fp8-e4m3fn", "fp8_e4m3fn", "u8", "f16", LookupTable, SubQuadratic, Resident, "cannot hold fp8_e4m3fn"),
    ("cuda-sm75", "sd1-fp8-e5m2", "fp8_e5m2", "u8", "f16", LookupTable, SubQuadratic, Resident, "no fp8_e5m2 dtype"),
    ("cuda-sm75", "sdxl-bf16", "f16", "f16", "f16", NONE, SubQuadratic, Resident, "stored bf16 → f16"),
    ("cuda-sm75", "flux-fp8-e4m3fn", "fp8_e4m3fn", "u8", "f16", LookupTable, SubQuadratic, Resident, "cannot compute bf16"),
    ("cuda-sm75", "flux-fp8-e5m2", "fp8_e5m2", "u8", "f16", LookupTable, SubQuadratic, Resident, "cannot compute bf16"),
    ("cuda-sm75", "flux-scaled-fp8", "fp8_e4m3fn", "u8", "f16", ScaledFp8, SubQuadratic, Resident, "cannot hold fp8_e4m3fn"),
    ("cuda-sm75", "flux-gguf-q8_0", "q8_0", "q8_0", "f16", GgufDequant, SubQuadratic, Resident, "quantised matmul"),
    ("cuda-sm75", "sd3-f16", "f16", "f16", "f16", NONE, SubQuadratic, Resident, "stored f16"),
    // --- cuda-sm86: f16 + bf16, fused attention; fp8 as u8 bytes + table (candle's CUDA F8E4M3
    // casts do not load).
    ("cuda-sm86", "sd1-f32", "f16", "f16", "f16", NONE, Fused, Resident, "fused attention"),
    ("cuda-sm86", "sd1-f16", "f16", "f16", "f16", NONE, Fused, Resident, "stored f16"),
    ("cuda-sm86", "sd1-fp8-e4m3fn", "fp8_e4m3fn", "u8", "f16", LookupTable, Fused, Resident, "cannot hold fp8_e4m3fn"),
    ("cuda-sm86", "sd1-fp8-e5m2", "fp8_e5m2", "u8", "f16", LookupTable, Fused, Resident, "no fp8_e5m2 dtype"),
    ("cuda-sm86", "sdxl-bf16", "f16", "f16", "f16", NONE, Fused, Resident, "stored bf16 → f16"),
    ("cuda-sm86", "flux-fp8-e4m3fn", "fp8_e4m3fn", "u8", "bf16", LookupTable, Fused, Resident, "computes bf16"),
    ("cuda-sm86", "flux-fp8-e5m2", "fp8_e5m2", "u8", "bf16", LookupTable, Fused, Resident, "computes bf16"),
    ("cuda-sm86", "flux-scaled-fp8", "fp8_e4m3fn", "u8", "bf16", ScaledFp8, Fused, Resident, "per-tensor scale"),
    ("cuda-sm86", "flux-gguf-q8_0", "q8_0", "q8_0", "bf16", GgufDequant, Fused, Resident, "GGUF q8_0"),
    ("cuda-sm86", "sd3-f16", "f16", "f16", "f16", NONE, Fused, Resident, "stored f16"),
    // --- cuda-sm89: like sm86 (candle has no fp8 gemm; the plan notes it).
    ("cuda-sm89", "sd1-f32", "f16", "f16", "f16", NONE, Fused, Resident, "[f16, bf16, f32]"),
    ("cuda-sm89", "sd1-f16", "f16", "f16", "f16", NONE, Fused, Resident, "stored f16"),
    ("cuda-sm89", "sd1-fp8-e4m3fn", "fp8_e4m3fn", "u8", "f16", LookupTable, Fused, Resident, "cannot hold fp8_e4m3fn"),
    ("cuda-sm89", "sd1-fp8-e5m2", "fp8_e5m2", "u8", "f16", LookupTable, Fused, Resident, "no fp8_e5m2 dtype"),
    ("cuda-sm89", "sdxl-bf16", "f16", "f16", "f16", NONE, Fused, Resident, "stored bf16 → f16"),
    ("cuda-sm89", "flux-fp8-e4m3fn", "fp8_e4m3fn", "u8", "bf16", LookupTable, Fused, Resident, "computes bf16"),
    ("cuda-sm89", "flux-fp8-e5m2", "fp8_e5m2", "u8", "bf16", LookupTable, Fused, Resident, "computes bf16"),
    ("cuda-sm89", "flux-scaled-fp8", "fp8_e4m3fn", "u8", "bf16", ScaledFp8, Fused, Resident, "per-tensor scale"),
    ("cuda-sm89", "flux-gguf-q8_0", "q8_0", "q8_0", "bf16", GgufDequant, Fused, Resident, "GGUF q8_0"),
    ("cuda-sm89", "sd3-f16", "f16", "f16", "f16", NONE, Fused, Resident, "stored f16"),
    // --- cuda-sm90: 80 GiB.
    ("cuda-sm90", "sd1-f32", "f16", "f16", "f16", NONE, Fused, Resident, "fits"),
    ("cuda-sm90", "sd1-f16", "f16", "f16", "f16", NONE, Fused, Resident, "stored f16"),
    ("cuda-sm90", "sd1-fp8-e4m3fn", "fp8_e4m3fn", "u8", "f16", LookupTable, Fused, Resident, "cannot hold fp8_e4m3fn"),
    ("cuda-sm90", "sd1-fp8-e5m2", "fp8_e5m2", "u8", "f16", LookupTable, Fused, Resident, "no fp8_e5m2 dtype"),
    ("cuda-sm90", "sdxl-bf16", "f16", "f16", "f16", NONE, Fused, Resident, "stored bf16 → f16"),
    ("cuda-sm90", "flux-fp8-e4m3fn", "fp8_e4m3fn", "u8", "bf16", LookupTable, Fused, Resident, "computes bf16"),
    ("cuda-sm90", "flux-fp8-e5m2", "fp8_e5m2", "u8", "bf16", LookupTable, Fused, Resident, "computes bf16"),
    ("cuda-sm90", "flux-scaled-fp8", "fp8_e4m3fn", "u8", "bf16", ScaledFp8, Fused, Resident, "per-tensor scale"),
    ("cuda-sm90", "flux-gguf-q8_0", "q8_0", "q8_0", "bf16", GgufDequant, Fused, Resident, "GGUF q8_0"),
    ("cuda-sm90", "sd3-f16", "f16", "f16", "f16", NONE, Fused, Resident, "stored f16"),
];

#[test]
fn table_covers_every_profile_and_scenario() {
    let scenarios = common::scenarios();
    for profile in profile_names() {
        for (scenario, _) in &scenarios {
            let rows = DIFFUSION
                .iter()
                .filter(|row| row.0 == profile && row.1 == *scenario)
                .count();
            assert_eq!(rows, 1, "{profile} × {scenario}");
        }
    }
}

#[test]
fn diffusion_model_matches_the_table() {
    let scenarios = common::scenarios();
    for row in DIFFUSION {
        let (profile, scenario, storage, held, compute, widening, attention, load, fact) = *row;
        let detection = &scenarios
            .iter()
            .find(|(name, _)| *name == scenario)
            .unwrap()
            .1;
        let planner = Planner::new(PlanOptions::default(), simulated(profile).unwrap());
        let plan = planner.plan(detection).unwrap();
        let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
        let at = format!("{profile} × {scenario}: {}", dm.reason);
        assert_eq!(dm.storage_dtype.name(), storage, "storage, {at}");
        assert_eq!(dm.held_as.to_string(), held, "held, {at}");
        assert_eq!(dm.compute_dtype.as_str(), compute, "compute, {at}");
        assert_eq!(dm.widening, widening, "widening, {at}");
        assert_eq!(dm.attention, attention, "attention, {at}");
        assert_eq!(dm.load_mode, load, "load mode, {at}");
        assert!(dm.reason.contains(fact), "reason lacks `{fact}`, {at}");
        assert!(!dm.reason.contains('\n'), "reason is one line, {at}");
    }
}

#[test]
fn every_plan_passes_its_own_profile_check() {
    for profile_name in profile_names() {
        let profile = simulated(profile_name).unwrap();
        let planner = Planner::new(PlanOptions::default(), profile);
        for (scenario, detection) in common::scenarios() {
            let plan = planner.plan(&detection).unwrap();
            assert_eq!(plan.components.len(), detection.components.len());
            for component in &plan.components {
                let device_profile = planner.profile_for(component.device);
                component
                    .check(device_profile)
                    .unwrap_or_else(|e| panic!("{profile_name} × {scenario}: {e}"));
                assert!(component.weight_bytes > 0);
            }
            assert!(plan.peak_bytes > 0, "{profile_name} × {scenario}");
        }
    }
}

#[test]
fn eight_bit_storage_stays_eight_bit_everywhere() {
    for profile_name in profile_names() {
        let planner = Planner::new(PlanOptions::default(), simulated(profile_name).unwrap());
        for (scenario, detection) in common::scenarios() {
            let plan = planner.plan(&detection).unwrap();
            for (component, planned) in detection.components.iter().zip(&plan.components) {
                let stored = component.dominant_dtype;
                let eight_bit = stored.is_fp8()
                    || matches!(stored, kiln_weights::StorageDType::Gguf(g) if g != kiln_weights::GgufType::F32);
                if eight_bit {
                    assert_eq!(
                        planned.storage_dtype, stored,
                        "{profile_name} × {scenario} × {}",
                        planned.component
                    );
                    // …and 8-bit means about one byte per parameter, not two.
                    assert!(
                        planned.weight_bytes < component.params * 3 / 2,
                        "{profile_name} × {scenario}: {} bytes",
                        planned.weight_bytes
                    );
                }
            }
        }
    }
}

#[test]
fn text_encoders_and_vae_follow_comfyui_per_backend() {
    // (profile, TE device, TE storage of an f16 CLIP-L, TE attention, VAE compute, VAE attention)
    #[rustfmt::skip]
    let rows = [
        ("cpu", "cpu", "f16", AttentionKernel::Plain, "f32", AttentionKernel::Fused),
        ("metal-m1", "cpu", "f16", AttentionKernel::Plain, "f32", AttentionKernel::Split),
        ("metal-m3", "cpu", "f16", AttentionKernel::Plain, "bf16", AttentionKernel::Split),
        ("cuda-sm75", "cuda:0", "f16", AttentionKernel::Plain, "f32", AttentionKernel::Split),
        ("cuda-sm86", "cuda:0", "f16", AttentionKernel::Fused, "bf16", AttentionKernel::Fused),
        ("cuda-sm90", "cuda:0", "f16", AttentionKernel::Fused, "bf16", AttentionKernel::Fused),
    ];
    let detection = common::sd3_f16();
    for (profile, te_device, te_storage, te_attention, vae_compute, vae_attention) in rows {
        let plan = Planner::new(PlanOptions::default(), simulated(profile).unwrap())
            .plan(&detection)
            .unwrap();
        for te in [
            ComponentKind::ClipL,
            ComponentKind::ClipG,
            ComponentKind::T5xxl,
        ] {
            let te = plan.component(te).unwrap();
            assert_eq!(te.device.to_string(), te_device, "{profile}: {}", te.reason);
            assert_eq!(
                te.storage_dtype.name(),
                te_storage,
                "{profile}: {}",
                te.reason
            );
            assert_eq!(te.compute_dtype.as_str(), "f32", "{profile}");
            assert_eq!(te.attention, te_attention, "{profile}");
            assert!(te
                .reason
                .contains("f32 (ComfyUI runs text encoders in f32)"));
        }
        let vae = plan.component(ComponentKind::Vae).unwrap();
        assert_eq!(
            vae.compute_dtype.as_str(),
            vae_compute,
            "{profile}: {}",
            vae.reason
        );
        // On the CPU the f16 VAE is held as stored and widened per layer.
        let vae_storage = if profile == "cpu" { "f16" } else { vae_compute };
        assert_eq!(vae.storage_dtype.name(), vae_storage, "{profile}");
        assert_eq!(vae.attention, vae_attention, "{profile}: {}", vae.reason);
    }
}

#[test]
fn text_encoders_on_metal_run_on_the_cpu_and_say_so() {
    let plan = Planner::new(PlanOptions::default(), simulated("metal-m1").unwrap())
        .plan(&common::flux(kiln_weights::StorageDType::F8E4M3))
        .unwrap();
    let t5 = plan.component(ComponentKind::T5xxl).unwrap();
    assert_eq!(t5.device.to_string(), "cpu");
    assert!(t5.reason.contains("unified memory"), "{}", t5.reason);
    // On the host CPU the fp8 T5 is held natively and cast, still 8-bit.
    assert_eq!(t5.held_as.to_string(), "f8e4m3");
    assert_eq!(t5.widening, Widening::CastOnDevice);
}

#[test]
fn upcast_follows_macos_and_flags() {
    let detection = common::sd1(kiln_weights::StorageDType::F16);
    let m3 = Planner::new(PlanOptions::default(), simulated("metal-m3").unwrap())
        .plan(&detection)
        .unwrap();
    let dm = m3.component(ComponentKind::DiffusionModel).unwrap();
    assert!(dm.upcast_attention);
    assert!(dm.reason.contains("macOS 15.0"), "{}", dm.reason);
    let m1 = Planner::new(PlanOptions::default(), simulated("metal-m1").unwrap())
        .plan(&detection)
        .unwrap();
    assert!(
        !m1.component(ComponentKind::DiffusionModel)
            .unwrap()
            .upcast_attention
    );
    let forced = PlanOptions {
        upcast: kiln_runtime::UpcastRequest::Force,
        ..PlanOptions::default()
    };
    let sm86 = Planner::new(forced, simulated("cuda-sm86").unwrap())
        .plan(&detection)
        .unwrap();
    assert!(
        sm86.component(ComponentKind::DiffusionModel)
            .unwrap()
            .upcast_attention
    );
}

#[test]
fn fp8_capable_hardware_gets_a_note_about_candle() {
    let plan = Planner::new(PlanOptions::default(), simulated("cuda-sm89").unwrap())
        .plan(&common::flux(kiln_weights::StorageDType::F8E4M3))
        .unwrap();
    assert!(
        plan.notes.iter().any(|n| n.contains("no fp8 matmul")),
        "{:?}",
        plan.notes
    );
    let plan = Planner::new(PlanOptions::default(), simulated("cuda-sm86").unwrap())
        .plan(&common::flux(kiln_weights::StorageDType::F8E4M3))
        .unwrap();
    assert!(!plan.notes.iter().any(|n| n.contains("no fp8 matmul")));
}
