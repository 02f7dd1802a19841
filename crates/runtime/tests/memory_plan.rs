//! Peak memory and low-memory loading: the plan's per-part memory estimate and text-encoder
//! policy on generated Flux checkpoints (tiny, and real-size from headers alone), and streaming
//! (`--lowvram`/`--novram`) on a simulated CUDA profile whose device is the CPU underneath.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use candle_core::{DType, Device};
use kiln_detect::{detect, Checkpoint, ComponentKind, FileTensors};
use kiln_runtime::{
    simulated, LoadMode, Plan, PlanOptions, Planner, TextEncoderPolicy, VramMode, WeightStore,
};
use kiln_test_checkpoints::{
    planned_files, write, CheckpointSpec, Family, Packaging, Size, Storage, StoredDType,
};
use kiln_weights::{StorageDType, TensorInfo};

const GB: f64 = 1e9;

fn plan_tiny(spec: &CheckpointSpec, dir: &Path, profile: &str, options: PlanOptions) -> Plan {
    let checkpoint = Checkpoint::open(write(spec, dir).unwrap()).unwrap();
    Planner::new(options, simulated(profile).unwrap())
        .plan_checkpoint(&checkpoint)
        .unwrap()
}

#[test]
fn fp8_flux_stays_eight_bit_and_peaks_below_bf16_on_every_profile() {
    let dir = tempfile::tempdir().unwrap();
    // Standalone diffusion models: the tiny all-in-one files keep T5's large embedding in f32,
    // which would hide the diffusion model's difference.
    let fp8 = CheckpointSpec::new(Family::FluxDev, Storage::F8E4M3, Packaging::Standalone);
    let bf16 = CheckpointSpec::new(Family::FluxDev, Storage::BF16, Packaging::Standalone);
    for profile in ["metal-m1", "metal-m3", "cuda-sm86", "cpu"] {
        let small = plan_tiny(&fp8, dir.path(), profile, PlanOptions::default());
        let large = plan_tiny(&bf16, dir.path(), profile, PlanOptions::default());
        let unet = small.component(ComponentKind::DiffusionModel).unwrap();
        assert_eq!(unet.storage_dtype, StorageDType::F8E4M3, "{profile}");
        let memory = &small.memory;
        assert!(memory.layers_measured, "{profile}");
        assert_eq!(memory.resolution, [1024, 1024]);
        let part = |plan: &Plan| {
            plan.memory
                .parts
                .iter()
                .find(|p| p.component == ComponentKind::DiffusionModel)
                .unwrap()
                .clone()
        };
        let (fp8_part, bf16_part) = (part(&small), part(&large));
        // Weights scale with the storage dtype; activations do not.
        let fp8_weights = fp8_part.device_bytes + fp8_part.host_bytes;
        let bf16_weights = bf16_part.device_bytes + bf16_part.host_bytes;
        assert!(
            fp8_weights * 10 < bf16_weights * 6,
            "{profile}: {fp8_weights} vs {bf16_weights}"
        );
        assert!(
            fp8_part.largest_layer_bytes > 0,
            "{profile}: fp8 widens per layer"
        );
        assert!(fp8_part.activation_bytes > 0);
        assert_eq!(fp8_part.activation_bytes, bf16_part.activation_bytes);
        assert!(
            memory.device_peak_bytes < large.memory.device_peak_bytes,
            "{profile}: {} vs {}",
            memory.device_peak_bytes,
            large.memory.device_peak_bytes
        );
        assert!(memory.device_peak_bytes >= fp8_part.activation_bytes + unet.weight_bytes);
        assert_eq!(small.text_encoders, TextEncoderPolicy::Keep, "{profile}");
        assert!(small.text_encoders_reason.starts_with("no text encoders"));
        // UNETLoader under --disable-smart-memory: separately loaded encoders are freed too.
        let unloading = PlanOptions {
            disable_smart_memory: true,
            ..PlanOptions::default()
        };
        let alone = plan_tiny(&fp8, dir.path(), profile, unloading);
        assert_eq!(
            alone.text_encoders,
            TextEncoderPolicy::FreeBeforeDiffusion,
            "{profile}"
        );
        let json = serde_json::to_value(&small.memory).unwrap();
        assert!(json["device_peak_bytes"].as_u64().unwrap() > 0);
        assert_eq!(json["parts"][0]["component"], "diffusion_model");
    }
}

/// The tensor tables `write` would produce for `spec`, without writing anything.
fn header_tables(spec: &CheckpointSpec) -> Vec<Vec<TensorInfo>> {
    planned_files(spec)
        .unwrap()
        .into_iter()
        .map(|file| {
            file.tensors
                .into_iter()
                .map(|tensor| TensorInfo {
                    name: tensor.name,
                    dtype: match tensor.dtype {
                        StoredDType::F32 => StorageDType::F32,
                        StoredDType::F16 => StorageDType::F16,
                        StoredDType::BF16 => StorageDType::BF16,
                        StoredDType::F8E4M3 => StorageDType::F8E4M3,
                        StoredDType::F8E5M2 => StorageDType::F8E5M2,
                        StoredDType::I64 => StorageDType::I64,
                        StoredDType::I32 => StorageDType::I32,
                        StoredDType::Ggml(other) => panic!("no GGUF here: {other:?}"),
                    },
                    shape: tensor.shape,
                })
                .collect()
        })
        .collect()
}

/// Plans the real-size `spec` from its headers alone.
fn plan_real(spec: &CheckpointSpec, profile: &str, options: PlanOptions) -> Plan {
    let tables = header_tables(spec);
    let path = spec.relative_path();
    let inputs: Vec<FileTensors<'_>> = tables
        .iter()
        .map(|tensors| FileTensors::new(&path, tensors))
        .collect();
    let detection = detect(&inputs).unwrap();
    let slices: Vec<&[TensorInfo]> = tables.iter().map(Vec::as_slice).collect();
    Planner::new(options, simulated(profile).unwrap())
        .plan_with_tensors(&detection, &slices)
        .unwrap()
}

#[test]
fn real_size_flux_dev_fp8_plans_plausibly_from_headers() {
    let spec = CheckpointSpec::new(Family::FluxDev, Storage::F8E4M3, Packaging::SingleFile)
        .with_size(Size::Real);
    let plan = plan_real(&spec, "cuda-sm86", PlanOptions::default());
    let unet = plan.component(ComponentKind::DiffusionModel).unwrap();
    let weights = unet.weight_bytes as f64 / GB;
    assert!((11.5..12.5).contains(&weights), "{weights} GB");
    let part = &plan.memory.parts[0];
    // single_blocks.*.linear1: 21504 × 3072 widened to bf16 is 132 MB.
    let layer = part.largest_layer_bytes as f64 / GB;
    assert!((0.12..0.2).contains(&layer), "{layer} GB");
    // ComfyUI's Flux estimate at 1024², batch 2, fused attention in bf16: ~2 GiB.
    let activation = part.activation_bytes as f64 / GB;
    assert!((1.5..2.5).contains(&activation), "{activation} GB");
    // A 24 GB sm86 card: T5 (fp8, ~4.9 GB) + Flux + CLIP + VAE do not all fit with activations.
    let peak = plan.memory.device_peak_bytes as f64 / GB;
    assert!((13.0..20.0).contains(&peak), "{peak} GB");
    assert!(!plan.memory.shared_pool);

    // The same model in bf16 needs about twice the weights.
    let bf16 = CheckpointSpec::new(Family::FluxDev, Storage::BF16, Packaging::SingleFile)
        .with_size(Size::Real);
    let bf16_plan = plan_real(&bf16, "cuda-sm86", PlanOptions::default());
    let bf16_weights = bf16_plan.components[0].weight_bytes as f64 / GB;
    assert!((23.0..24.5).contains(&bf16_weights), "{bf16_weights} GB");
    assert!(bf16_plan.memory.device_peak_bytes > plan.memory.device_peak_bytes);

    // On a 16 GB Mac everything shares one pool, which cannot hold every part at once.
    let m1 = plan_real(&spec, "metal-m1", PlanOptions::default());
    assert!(m1.memory.shared_pool);
    assert_eq!(m1.memory.device_peak_bytes, m1.memory.host_peak_bytes);
    assert_eq!(m1.text_encoders, TextEncoderPolicy::FreeBeforeDiffusion);
    assert!(
        m1.text_encoders_reason.contains("freed"),
        "{}",
        m1.text_encoders_reason
    );
}

#[test]
fn text_encoder_policy_follows_the_flags() {
    let spec = CheckpointSpec::new(Family::FluxDev, Storage::F8E4M3, Packaging::SingleFile)
        .with_size(Size::Real);
    let highvram = PlanOptions {
        vram: VramMode::High,
        ..PlanOptions::default()
    };
    let plan = plan_real(&spec, "metal-m1", highvram);
    assert_eq!(plan.text_encoders, TextEncoderPolicy::Keep);
    let dir = tempfile::tempdir().unwrap();
    let tiny = CheckpointSpec::new(Family::FluxDev, Storage::F8E4M3, Packaging::SingleFile);
    let unload = PlanOptions {
        disable_smart_memory: true,
        ..PlanOptions::default()
    };
    let plan = plan_tiny(&tiny, dir.path(), "cuda-sm86", unload);
    assert_eq!(plan.text_encoders, TextEncoderPolicy::FreeBeforeDiffusion);
    // Freeing them lowers the peak only when they would share the sampling phase.
    let kept = plan_tiny(&tiny, dir.path(), "cuda-sm86", PlanOptions::default());
    assert!(plan.memory.device_peak_bytes <= kept.memory.device_peak_bytes);
}

#[test]
fn streamed_flux_runs_from_host_memory_on_a_simulated_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(Family::FluxDev, Storage::F8E4M3, Packaging::SingleFile);
    let checkpoint = Checkpoint::open(write(&spec, dir.path()).unwrap()).unwrap();
    let sm86 = simulated("cuda-sm86").unwrap();
    let plan_with = |vram| {
        let options = PlanOptions {
            vram,
            ..PlanOptions::default()
        };
        Planner::new(options, sm86.clone())
            .plan_checkpoint(&checkpoint)
            .unwrap()
    };
    let resident_plan = plan_with(VramMode::Normal);
    let resident_unet = resident_plan
        .component(ComponentKind::DiffusionModel)
        .unwrap();
    assert_eq!(resident_unet.load_mode, LoadMode::Resident);
    let resident = WeightStore::load(&checkpoint, resident_unet, &sm86, &Device::Cpu).unwrap();

    let novram = plan_with(VramMode::NoVram);
    let mut streamed_unet = novram
        .component(ComponentKind::DiffusionModel)
        .unwrap()
        .clone();
    assert_eq!(streamed_unet.load_mode, LoadMode::Streamed);
    assert_eq!(streamed_unet.resident_budget_bytes, 0);
    // Text encoders stay on the host with --novram; the plan counts the streamed weights there.
    let part = &novram.memory.parts[0];
    assert_eq!(part.device_bytes, 0);
    assert_eq!(part.host_bytes, streamed_unet.weight_bytes);

    // A partial load: half the weights fit the device budget, the rest streams per layer.
    streamed_unet.resident_budget_bytes = resident.held_bytes() / 2;
    let streamed = WeightStore::load(&checkpoint, &streamed_unet, &sm86, &Device::Cpu).unwrap();
    assert_eq!(streamed.load_mode(), LoadMode::Streamed);
    assert!(streamed.resident_bytes() <= streamed_unet.resident_budget_bytes);
    assert!(streamed.resident_bytes() > 0);
    assert!(streamed.streamed_bytes() > 0);
    assert_eq!(streamed.held_bytes(), resident.held_bytes());
    let mut copied = 0;
    for name in resident.names() {
        copied += usize::from(streamed.is_streamed(name));
        let want = resident.get(name).unwrap();
        let got = streamed.get(name).unwrap();
        assert_eq!(got.dtype(), want.dtype(), "{name}");
        let diff = (got.to_dtype(DType::F32).unwrap() - want.to_dtype(DType::F32).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "{name}");
    }
    assert!(copied > 10, "{copied} tensors streamed");
}
