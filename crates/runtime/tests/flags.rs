//! ComfyUI flags, each forcing its planner path explicitly.
// Test helpers outside `#[test]` functions unwrap too; clippy.toml only covers the latter.
#![allow(clippy::unwrap_used)]

mod common;

use kiln_detect::ComponentKind;
use kiln_runtime::{
    simulated, AttentionKernel, AttentionRequest, DevicePlacement, ForcedDType, GlobalPrecision,
    LoadMode, PlanOptions, Planner, VramMode, Widening,
};
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

#[test]
fn force_fp16_on_cpu_stores_f16_but_computes_f32() {
    let options = PlanOptions {
        precision: GlobalPrecision::ForceFp16,
        ..PlanOptions::default()
    };
    let plan = plan_with(options, "cpu", &common::sd1(StorageDType::F32));
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.storage_dtype, StorageDType::F16, "{}", dm.reason);
    assert_eq!(dm.compute_dtype.as_str(), "f32");
    assert_eq!(dm.widening, Widening::CastOnDevice);
    assert!(dm.reason.contains("--force-fp16"), "{}", dm.reason);
    assert!(
        dm.reason.contains("never computes 16-bit on the CPU"),
        "{}",
        dm.reason
    );
}

#[test]
fn force_fp16_on_a_gpu_computes_f16_even_for_flux() {
    let options = PlanOptions {
        precision: GlobalPrecision::ForceFp16,
        ..PlanOptions::default()
    };
    let plan = plan_with(options, "cuda-sm86", &common::flux(StorageDType::F8E4M3));
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.storage_dtype, StorageDType::F8E4M3);
    assert_eq!(dm.compute_dtype.as_str(), "f16", "{}", dm.reason);
    assert!(dm.reason.contains("--force-fp16"));
}

#[test]
fn force_fp32_computes_f32_and_keeps_text_encoders_on_the_cpu() {
    let options = PlanOptions {
        precision: GlobalPrecision::ForceFp32,
        ..PlanOptions::default()
    };
    let plan = plan_with(options, "cuda-sm86", &common::sd1(StorageDType::F16));
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.storage_dtype, StorageDType::F32, "{}", dm.reason);
    assert_eq!(dm.compute_dtype.as_str(), "f32");
    let clip = plan.component(ComponentKind::ClipL).unwrap();
    assert_eq!(clip.device, DevicePlacement::Cpu);
    assert!(clip.reason.contains("--force-fp32"), "{}", clip.reason);
    assert_eq!(
        plan.component(ComponentKind::Vae)
            .unwrap()
            .compute_dtype
            .as_str(),
        "f32"
    );
}

#[test]
fn fp8_unet_flag_converts_an_f16_checkpoint() {
    let options = PlanOptions {
        unet_dtype: Some(ForcedDType::F8E4M3),
        ..PlanOptions::default()
    };
    let detection = common::sd1(StorageDType::F16);
    let plan = plan_with(options.clone(), "cuda-sm86", &detection);
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.storage_dtype, StorageDType::F8E4M3);
    assert_eq!(dm.compute_dtype.as_str(), "f16");
    assert!(dm.reason.contains("--fp8_e4m3fn-unet"), "{}", dm.reason);
    assert!(dm.weight_bytes < common::SD1_UNET * 3 / 2);
    // On CUDA and on a Mac alike: 8-bit codes plus a lookup table, never an F8E4M3 tensor
    // (candle's CUDA fp8 casts do not load).
    assert_eq!(dm.held_as.to_string(), "u8");
    assert_eq!(dm.widening, Widening::LookupTable);
    let plan = plan_with(options, "metal-m1", &detection);
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.held_as.to_string(), "u8");
    assert_eq!(dm.widening, Widening::LookupTable);
}

#[test]
fn fp8_e5m2_unet_flag_on_cpu_uses_the_table() {
    let options = PlanOptions {
        unet_dtype: Some(ForcedDType::F8E5M2),
        ..PlanOptions::default()
    };
    let plan = plan_with(options, "cpu", &common::sdxl_bf16());
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.storage_dtype, StorageDType::F8E5M2);
    assert_eq!(dm.widening, Widening::LookupTable);
    assert_eq!(dm.compute_dtype.as_str(), "f32");
}

#[test]
fn bf16_unet_flag_on_a_mac_without_bf16_falls_back_instead_of_crashing() {
    let options = PlanOptions {
        unet_dtype: Some(ForcedDType::BF16),
        ..PlanOptions::default()
    };
    let plan = plan_with(options, "metal-m1", &common::sd1(StorageDType::F32));
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.storage_dtype, StorageDType::F16, "{}", dm.reason);
    assert!(dm.reason.contains("cannot hold bf16"), "{}", dm.reason);
    assert!(dm.reason.contains("--bf16-unet"), "{}", dm.reason);
}

#[test]
fn scaled_fp8_ignores_the_unet_flag_like_comfyui() {
    let options = PlanOptions {
        unet_dtype: Some(ForcedDType::F16),
        ..PlanOptions::default()
    };
    let plan = plan_with(options, "cuda-sm86", &common::flux_scaled_fp8());
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.storage_dtype, StorageDType::F8E4M3);
    assert_eq!(dm.widening, Widening::ScaledFp8);
    assert!(dm.reason.contains("--fp16-unet ignored"), "{}", dm.reason);
}

#[test]
fn cpu_flag_with_a_cuda_profile_puts_everything_on_the_cpu() {
    let options = PlanOptions {
        cpu: true,
        ..PlanOptions::default()
    };
    let plan = plan_with(options, "cuda-sm86", &common::flux(StorageDType::F8E4M3));
    for component in &plan.components {
        assert_eq!(
            component.device,
            DevicePlacement::Cpu,
            "{}",
            component.component
        );
        assert_eq!(component.compute_dtype.as_str(), "f32");
        assert_eq!(component.load_mode, LoadMode::Resident);
        assert!(
            component.reason.starts_with("on cpu (--cpu)"),
            "{}",
            component.reason
        );
    }
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    // The CPU's own tiled kernel (kiln-kernels).
    assert_eq!(dm.attention, AttentionKernel::Fused);
    assert_eq!(dm.held_as.to_string(), "f8e4m3");
    assert_eq!(plan.profile, "cuda-sm86-host");
    assert!(plan.notes.iter().any(|n| n.contains("--cpu")));
}

#[test]
fn lowvram_streams_a_model_too_large_for_the_card() {
    let options = PlanOptions {
        vram: VramMode::Low,
        ..PlanOptions::default()
    };
    // Flux in bf16 is ~22 GiB: more than a 24 GiB card leaves after the inference reserve.
    let plan = plan_with(options, "cuda-sm86", &common::flux(StorageDType::BF16));
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.storage_dtype, StorageDType::BF16, "{}", dm.reason);
    assert_eq!(dm.load_mode, LoadMode::Streamed, "{}", dm.reason);
    assert!(dm.reason.contains("exceed"), "{}", dm.reason);
    // --lowvram also keeps text encoders on the CPU (ComfyUI text_encoder_device).
    let t5 = plan.component(ComponentKind::T5xxl).unwrap();
    assert_eq!(t5.device, DevicePlacement::Cpu);
    // The VAE fits and stays resident.
    assert_eq!(
        plan.component(ComponentKind::Vae).unwrap().load_mode,
        LoadMode::Resident
    );
    assert!(plan.host_bytes >= dm.weight_bytes);
}

#[test]
fn lowvram_keeps_a_small_model_resident() {
    let options = PlanOptions {
        vram: VramMode::Low,
        ..PlanOptions::default()
    };
    let plan = plan_with(options, "cuda-sm86", &common::sd1(StorageDType::F16));
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.load_mode, LoadMode::Resident, "{}", dm.reason);
}

#[test]
fn novram_streams_everything_on_the_gpu_and_highvram_streams_nothing() {
    let detection = common::flux(StorageDType::BF16);
    let novram = PlanOptions {
        vram: VramMode::NoVram,
        ..PlanOptions::default()
    };
    let plan = plan_with(novram, "cuda-sm90", &detection);
    for component in &plan.components {
        if component.device != DevicePlacement::Cpu {
            assert_eq!(
                component.load_mode,
                LoadMode::Streamed,
                "{}",
                component.reason
            );
        }
    }
    let high = PlanOptions {
        vram: VramMode::High,
        ..PlanOptions::default()
    };
    let plan = plan_with(high, "cuda-sm75", &detection);
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.load_mode, LoadMode::Resident);
    assert!(dm.reason.contains("--highvram"));
    assert!(
        plan.notes.iter().any(|n| n.contains("exceed")),
        "{:?}",
        plan.notes
    );
}

#[test]
fn default_normal_vram_also_streams_what_does_not_fit() {
    // ComfyUI partially loads in NORMAL_VRAM too: Flux f16 on a 16 GiB T4.
    let plan = plan_with(
        PlanOptions::default(),
        "cuda-sm75",
        &common::flux(StorageDType::BF16),
    );
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.storage_dtype, StorageDType::F16, "{}", dm.reason);
    assert_eq!(dm.load_mode, LoadMode::Streamed);
}

#[test]
fn reserve_vram_can_tip_a_model_into_streaming() {
    let detection = common::flux(StorageDType::F8E4M3);
    let plan = plan_with(PlanOptions::default(), "cuda-sm75", &detection);
    assert_eq!(
        plan.component(ComponentKind::DiffusionModel)
            .unwrap()
            .load_mode,
        LoadMode::Resident
    );
    let reserve = PlanOptions {
        reserve_vram_bytes: Some(4 << 30),
        ..PlanOptions::default()
    };
    let plan = plan_with(reserve, "cuda-sm75", &detection);
    assert_eq!(
        plan.component(ComponentKind::DiffusionModel)
            .unwrap()
            .load_mode,
        LoadMode::Streamed
    );
}

#[test]
fn split_cross_attention_flag_gives_split() {
    let options = PlanOptions {
        attention: AttentionRequest::Split,
        ..PlanOptions::default()
    };
    for profile in ["cpu", "metal-m1", "cuda-sm86"] {
        let plan = plan_with(options.clone(), profile, &common::sd1(StorageDType::F16));
        let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
        assert_eq!(dm.attention, AttentionKernel::Split, "{profile}");
        assert!(dm.reason.contains("--use-split-cross-attention"));
        assert_eq!(
            plan.component(ComponentKind::Vae).unwrap().attention,
            AttentionKernel::Split
        );
        assert_eq!(
            plan.component(ComponentKind::ClipL).unwrap().attention,
            AttentionKernel::Plain
        );
    }
}

#[test]
fn pytorch_and_flash_flags_use_what_the_device_has() {
    let detection = common::sd1(StorageDType::F16);
    let fused = PlanOptions {
        attention: AttentionRequest::Fused,
        ..PlanOptions::default()
    };
    let plan = plan_with(fused.clone(), "metal-m3", &detection);
    assert_eq!(
        plan.component(ComponentKind::DiffusionModel)
            .unwrap()
            .attention,
        AttentionKernel::Fused
    );
    assert_eq!(
        plan.component(ComponentKind::Vae).unwrap().attention,
        AttentionKernel::Fused
    );
    let plan = plan_with(fused.clone(), "cpu", &detection);
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.attention, AttentionKernel::Fused);
    let plan = plan_with(fused, "cuda-sm75", &detection);
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.attention, AttentionKernel::SubQuadratic);
    assert!(dm.reason.contains("no fused kernel"), "{}", dm.reason);
    let flash = PlanOptions {
        attention: AttentionRequest::Flash,
        ..PlanOptions::default()
    };
    let plan = plan_with(flash.clone(), "cuda-sm90", &detection);
    assert_eq!(
        plan.component(ComponentKind::DiffusionModel)
            .unwrap()
            .attention,
        AttentionKernel::Flash
    );
    let plan = plan_with(flash, "cuda-sm75", &detection);
    let dm = plan.component(ComponentKind::DiffusionModel).unwrap();
    assert_eq!(dm.attention, AttentionKernel::SubQuadratic);
    assert!(
        dm.reason.contains("--use-flash-attention needs CUDA sm80+"),
        "{}",
        dm.reason
    );
}

#[test]
fn gpu_only_puts_text_encoders_on_the_mac_gpu() {
    let options = PlanOptions {
        vram: VramMode::GpuOnly,
        ..PlanOptions::default()
    };
    let plan = plan_with(options, "metal-m1", &common::flux(StorageDType::F8E4M3));
    let t5 = plan.component(ComponentKind::T5xxl).unwrap();
    assert_eq!(t5.device, DevicePlacement::Metal);
    assert!(t5.reason.contains("--gpu-only"));
    // On the Mac GPU the fp8 T5 becomes bytes + table, still 8-bit.
    assert_eq!(t5.widening, Widening::LookupTable);
    assert_eq!(t5.storage_dtype, StorageDType::F8E4M3);
}

#[test]
fn cpu_vae_and_vae_dtype_flags() {
    let detection = common::sdxl_bf16();
    let options = PlanOptions {
        cpu_vae: true,
        ..PlanOptions::default()
    };
    let plan = plan_with(options, "cuda-sm86", &detection);
    let vae = plan.component(ComponentKind::Vae).unwrap();
    assert_eq!(vae.device, DevicePlacement::Cpu);
    assert_eq!(vae.compute_dtype.as_str(), "f32");
    assert!(vae.reason.contains("--cpu-vae"));
    let bf16_vae = PlanOptions {
        vae_dtype: Some(ForcedDType::BF16),
        ..PlanOptions::default()
    };
    let plan = plan_with(bf16_vae, "cpu", &detection);
    let vae = plan.component(ComponentKind::Vae).unwrap();
    assert_eq!(
        vae.compute_dtype.as_str(),
        "f32",
        "candle has no bf16 conv on the CPU"
    );
    assert!(vae.reason.contains("--bf16-vae"), "{}", vae.reason);
    let fp16_vae = PlanOptions {
        vae_dtype: Some(ForcedDType::F16),
        ..PlanOptions::default()
    };
    let plan = plan_with(fp16_vae, "cpu", &detection);
    let vae = plan.component(ComponentKind::Vae).unwrap();
    assert_eq!(vae.compute_dtype.as_str(), "f16");
    assert!(vae.upcast_attention, "f16 on the CPU upcasts by default");
}

#[test]
fn text_encoder_dtype_flag_sets_storage() {
    let options = PlanOptions {
        text_encoder_dtype: Some(ForcedDType::F8E4M3),
        ..PlanOptions::default()
    };
    let plan = plan_with(options, "cuda-sm86", &common::sd3_f16());
    let t5 = plan.component(ComponentKind::T5xxl).unwrap();
    assert_eq!(t5.storage_dtype, StorageDType::F8E4M3);
    assert_eq!(t5.compute_dtype.as_str(), "f32");
    assert!(t5.reason.contains("--fp8_e4m3fn-text-enc"));
}

#[test]
fn cuda_device_flag_picks_the_ordinal() {
    let options = PlanOptions {
        cuda_device: Some(1),
        ..PlanOptions::default()
    };
    let plan = plan_with(options, "cuda-sm90", &common::sd1(StorageDType::F16));
    assert_eq!(
        plan.component(ComponentKind::DiffusionModel)
            .unwrap()
            .device,
        DevicePlacement::Cuda(1)
    );
    assert_eq!(plan.to_json()["diffusion_model"]["device"], "cuda:1");
}
