//! Loading real (in-memory) checkpoint files through `WeightStore` with simulated profiles on the
//! CPU: every held tensor must be one the *profile* can hold, even where the CPU underneath could
//! hold more, and widening must reproduce the stored values.
// Test helpers outside `#[test]` functions unwrap too; clippy.toml only covers the latter.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use kiln_detect::{
    Architecture, Component, ComponentKind, Detection, KeySource, KeyTransform, Layout,
};
use kiln_runtime::{
    simulated, CapabilityProfile, ComponentPlan, ForcedDType, HeldAs, HeldTensor, LoadMode,
    PlanOptions, Planner, RuntimeError, VramMode, WeightStore, Widening,
};
use kiln_weights::{
    e4m3fn_to_f32, e5m2_to_f32, f32_to_e4m3fn_saturating, GgufType, StorageDType, WeightFile,
};

/// A safetensors file in memory: (name, dtype, shape, bytes).
fn safetensors(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> WeightFile {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let begin = data.len();
        data.extend_from_slice(bytes);
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, data.len()]}),
        );
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&data);
    WeightFile::from_bytes("test.safetensors", file).unwrap()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn bf16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
        .collect()
}

fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect()
}

fn keys(entries: &[(&str, &str, KeyTransform)]) -> BTreeMap<String, KeySource> {
    entries
        .iter()
        .map(|(internal, stored, transform)| {
            (internal.to_string(), KeySource::new(0, *stored, *transform))
        })
        .collect()
}

/// A one-component detection whose component claims `params` (for planning) in `dtype`.
fn detection(
    architecture: Architecture,
    kind: ComponentKind,
    dtype: StorageDType,
    params: u64,
    keys: BTreeMap<String, KeySource>,
) -> Detection {
    Detection {
        architecture,
        variant: "dev".to_string(),
        prediction: None,
        components: vec![Component {
            kind,
            layout: Layout::Ldm,
            prefix: String::new(),
            params,
            dtypes: BTreeMap::from([(dtype, params)]),
            dominant_dtype: dtype,
            scaled_fp8: None,
            facts: BTreeMap::new(),
            keys,
        }],
        unclaimed_keys: 0,
        notes: Vec::new(),
    }
}

fn plan_for(
    detection: &Detection,
    options: PlanOptions,
    profile: &CapabilityProfile,
) -> ComponentPlan {
    Planner::new(options, profile.clone())
        .plan(detection)
        .unwrap()
        .components
        .remove(0)
}

/// Asserts that every tensor in `store` is held in a form `profile` can hold.
fn assert_all_holdable(store: &WeightStore, profile: &CapabilityProfile) {
    for name in store.names() {
        let held = store.held(name).unwrap();
        match held.held_as() {
            HeldAs::Dtype(dtype) => assert!(
                profile.can_hold_candle(dtype),
                "{name}: {} on {}",
                dtype.as_str(),
                profile.name
            ),
            HeldAs::Quantized(g) => assert!(profile.can_hold(StorageDType::Gguf(g))),
        }
    }
}

fn all_codes() -> Vec<u8> {
    (0..=255).collect()
}

/// An fp8 e4m3fn UNet-like component: a [4, 64] weight with all 256 codes, an f32 bias and a bf16
/// norm.
fn fp8_unet() -> (WeightFile, Detection) {
    let file = safetensors(&[
        ("a.weight", "F8_E4M3", vec![4, 64], all_codes()),
        ("a.bias", "F32", vec![4], f32_bytes(&[1.0, -2.0, 0.5, 8.0])),
        (
            "n.weight",
            "BF16",
            vec![4],
            bf16_bytes(&[1.0, 0.25, -3.0, 2.0]),
        ),
    ]);
    let keys = keys(&[
        ("a.weight", "a.weight", KeyTransform::Identity),
        ("a.bias", "a.bias", KeyTransform::Identity),
        ("n.weight", "n.weight", KeyTransform::Identity),
    ]);
    let detection = detection(
        Architecture::Sd1,
        ComponentKind::DiffusionModel,
        StorageDType::F8E4M3,
        859_520_964,
        keys,
    );
    (file, detection)
}

#[test]
fn simulated_mac_holds_fp8_as_bytes_on_a_cpu_that_could_hold_f8e4m3() {
    let (file, detection) = fp8_unet();
    let m1 = simulated("metal-m1").unwrap();
    let plan = plan_for(&detection, PlanOptions::default(), &m1);
    let store = WeightStore::from_files(
        std::slice::from_ref(&file),
        &detection.components[0],
        &plan,
        &m1,
        &Device::Cpu,
    )
    .unwrap();
    assert_all_holdable(&store, &m1);
    match store.held("a.weight").unwrap() {
        HeldTensor::Fp8Bytes {
            bytes,
            format,
            shape,
            scale,
        } => {
            assert_eq!(bytes.dtype(), DType::U8);
            assert_eq!(*format, StorageDType::F8E4M3);
            assert_eq!(shape.dims(), &[4, 64]);
            assert_eq!(*scale, None);
        }
        other => panic!("expected fp8 bytes, got {other:?}"),
    }
    // bf16 cannot live on macOS 13: the norm is held in the compute dtype.
    assert_eq!(
        store.held("n.weight").unwrap().held_as(),
        HeldAs::Dtype(DType::F16)
    );
    let weight = store.get("a.weight").unwrap();
    assert_eq!(weight.dtype(), DType::F16);
    assert_eq!(weight.dims(), &[4, 64]);
    let values = weight
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (code, got) in values.iter().enumerate() {
        let want = half::f16::from_f32(e4m3fn_to_f32(code as u8)).to_f32();
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "code {code}"
        );
    }
    let norm = store.get("n.weight").unwrap().to_dtype(DType::F32).unwrap();
    assert_eq!(norm.to_vec1::<f32>().unwrap(), vec![1.0, 0.25, -3.0, 2.0]);
    assert_eq!(store.resident_bytes(), 256 + 4 * 4 + 4 * 2);
}

#[test]
fn cpu_profile_holds_e4m3fn_natively() {
    let (file, detection) = fp8_unet();
    let cpu = simulated("cpu").unwrap();
    let plan = plan_for(&detection, PlanOptions::default(), &cpu);
    let store =
        WeightStore::from_files(&[file], &detection.components[0], &plan, &cpu, &Device::Cpu)
            .unwrap();
    assert_all_holdable(&store, &cpu);
    assert_eq!(
        store.held("a.weight").unwrap().held_as(),
        HeldAs::Dtype(DType::F8E4M3)
    );
    assert_eq!(
        store.held("n.weight").unwrap().held_as(),
        HeldAs::Dtype(DType::BF16)
    );
    let values = store
        .get("a.weight")
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (code, got) in values.iter().enumerate() {
        let want = e4m3fn_to_f32(code as u8);
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "code {code}"
        );
    }
}

#[test]
fn e5m2_is_bytes_everywhere_and_decodes_exactly() {
    let file = safetensors(&[("w", "F8_E5M2", vec![256], all_codes())]);
    let keys = keys(&[("w", "w", KeyTransform::Identity)]);
    let detection = detection(
        Architecture::Flux,
        ComponentKind::DiffusionModel,
        StorageDType::F8E5M2,
        11_901_408_320,
        keys,
    );
    for profile_name in ["cpu", "metal-m3", "cuda-sm90"] {
        let profile = simulated(profile_name).unwrap();
        let plan = plan_for(&detection, PlanOptions::default(), &profile);
        assert_eq!(plan.widening, Widening::LookupTable);
        let store = WeightStore::from_files(
            std::slice::from_ref(&file),
            &detection.components[0],
            &plan,
            &profile,
            &Device::Cpu,
        )
        .unwrap();
        assert_all_holdable(&store, &profile);
        assert_eq!(store.held("w").unwrap().held_as(), HeldAs::Dtype(DType::U8));
        let values = store
            .get("w")
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (code, got) in values.iter().enumerate() {
            let exact = e5m2_to_f32(code as u8);
            let want = match plan.compute_dtype {
                DType::BF16 => half::bf16::from_f32(exact).to_f32(),
                DType::F16 => half::f16::from_f32(exact).to_f32(),
                _ => exact,
            };
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{profile_name} code {code}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn scaled_fp8_multiplies_by_the_per_tensor_scale() {
    let file = safetensors(&[
        ("x.weight", "F8_E4M3", vec![2, 128], all_codes()),
        ("x.scale_weight", "F32", vec![1], f32_bytes(&[0.5])),
    ]);
    let keys = keys(&[
        ("x.weight", "x.weight", KeyTransform::Identity),
        ("x.scale_weight", "x.scale_weight", KeyTransform::Identity),
    ]);
    let mut detection = detection(
        Architecture::Flux,
        ComponentKind::DiffusionModel,
        StorageDType::F8E4M3,
        11_901_408_320,
        keys,
    );
    detection.components[0].scaled_fp8 = Some(StorageDType::F8E4M3);
    for profile_name in ["cpu", "metal-m1"] {
        let profile = simulated(profile_name).unwrap();
        let options = PlanOptions {
            precision: kiln_runtime::GlobalPrecision::ForceFp32,
            ..PlanOptions::default()
        };
        let plan = plan_for(&detection, options, &profile);
        assert_eq!(plan.widening, Widening::ScaledFp8);
        assert_eq!(plan.compute_dtype, DType::F32);
        let store = WeightStore::from_files(
            std::slice::from_ref(&file),
            &detection.components[0],
            &plan,
            &profile,
            &Device::Cpu,
        )
        .unwrap();
        assert_all_holdable(&store, &profile);
        assert_eq!(store.held("x.weight").unwrap().scale(), Some(0.5));
        let values = store
            .get("x.weight")
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (code, got) in values.iter().enumerate() {
            // Compared as numbers: the on-device scale may turn −0 into +0.
            let want = e4m3fn_to_f32(code as u8) * 0.5;
            assert!(
                *got == want || (got.is_nan() && want.is_nan()),
                "{profile_name} {code}"
            );
        }
    }
}

#[test]
fn key_transforms_slice_transpose_and_reshape() {
    let fused: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let file = safetensors(&[
        ("in_proj_weight", "F32", vec![6, 2], f32_bytes(&fused)),
        (
            "text_projection",
            "F32",
            vec![2, 3],
            f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        ),
        (
            "proj_out",
            "F32",
            vec![3, 2],
            f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        ),
    ]);
    let keys = keys(&[
        (
            "q.weight",
            "in_proj_weight",
            KeyTransform::SliceRows { part: 0, parts: 3 },
        ),
        (
            "k.weight",
            "in_proj_weight",
            KeyTransform::SliceRows { part: 1, parts: 3 },
        ),
        (
            "v.weight",
            "in_proj_weight",
            KeyTransform::SliceRows { part: 2, parts: 3 },
        ),
        (
            "text_projection.weight",
            "text_projection",
            KeyTransform::Transpose,
        ),
        ("proj_out.weight", "proj_out", KeyTransform::LinearToConv1x1),
    ]);
    let detection = detection(
        Architecture::ClipG,
        ComponentKind::ClipG,
        StorageDType::F32,
        694_659_840,
        keys,
    );
    let cpu = simulated("cpu").unwrap();
    let plan = plan_for(&detection, PlanOptions::default(), &cpu);
    let store =
        WeightStore::from_files(&[file], &detection.components[0], &plan, &cpu, &Device::Cpu)
            .unwrap();
    let k = store.get("k.weight").unwrap();
    assert_eq!(
        k.to_vec2::<f32>().unwrap(),
        vec![vec![4.0, 5.0], vec![6.0, 7.0]]
    );
    let t = store.get("text_projection.weight").unwrap();
    assert_eq!(
        t.to_vec2::<f32>().unwrap(),
        vec![vec![1.0, 4.0], vec![2.0, 5.0], vec![3.0, 6.0]]
    );
    assert_eq!(store.get("proj_out.weight").unwrap().dims(), &[3, 2, 1, 1]);
}

#[test]
fn transforms_apply_to_fp8_bytes_too() {
    let file = safetensors(&[("in_proj_weight", "F8_E4M3", vec![6, 2], (40..52).collect())]);
    let keys = keys(&[(
        "v.weight",
        "in_proj_weight",
        KeyTransform::SliceRows { part: 2, parts: 3 },
    )]);
    let detection = detection(
        Architecture::T5xxl,
        ComponentKind::T5xxl,
        StorageDType::F8E4M3,
        4_762_310_656,
        keys,
    );
    let options = PlanOptions {
        vram: VramMode::GpuOnly,
        ..PlanOptions::default()
    };
    let m1 = simulated("metal-m1").unwrap();
    let plan = plan_for(&detection, options, &m1);
    let store =
        WeightStore::from_files(&[file], &detection.components[0], &plan, &m1, &Device::Cpu)
            .unwrap();
    assert_all_holdable(&store, &m1);
    let v = store.get("v.weight").unwrap();
    assert_eq!(v.dims(), &[2, 2]);
    let want: Vec<f32> = (48u8..52).map(e4m3fn_to_f32).collect();
    assert_eq!(v.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want);
}

#[test]
fn a_bad_transform_is_a_typed_error() {
    let file = safetensors(&[("w", "F32", vec![5, 2], f32_bytes(&[0.0; 10]))]);
    let keys = keys(&[("q", "w", KeyTransform::SliceRows { part: 0, parts: 3 })]);
    let detection = detection(
        Architecture::ClipL,
        ComponentKind::ClipL,
        StorageDType::F32,
        1000,
        keys,
    );
    let cpu = simulated("cpu").unwrap();
    let plan = plan_for(&detection, PlanOptions::default(), &cpu);
    let err = WeightStore::from_files(&[file], &detection.components[0], &plan, &cpu, &Device::Cpu)
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::TransformShape { ref tensor, .. } if tensor == "q"),
        "{err}"
    );
}

#[test]
fn forced_fp8_quantises_matrices_and_keeps_biases() {
    let weights = [0.5f32, -1.25, 3.0, 1000.0];
    let file = safetensors(&[
        ("w", "F16", vec![2, 2], f16_bytes(&weights)),
        ("b", "F16", vec![2], f16_bytes(&[0.1, 0.2])),
    ]);
    let keys = keys(&[
        ("w", "w", KeyTransform::Identity),
        ("b", "b", KeyTransform::Identity),
    ]);
    let detection = detection(
        Architecture::Sd1,
        ComponentKind::DiffusionModel,
        StorageDType::F16,
        859_520_964,
        keys,
    );
    let options = PlanOptions {
        unet_dtype: Some(ForcedDType::F8E4M3),
        ..PlanOptions::default()
    };
    let cpu = simulated("cpu").unwrap();
    let plan = plan_for(&detection, options, &cpu);
    let store =
        WeightStore::from_files(&[file], &detection.components[0], &plan, &cpu, &Device::Cpu)
            .unwrap();
    assert_eq!(
        store.held("w").unwrap().held_as(),
        HeldAs::Dtype(DType::F8E4M3)
    );
    assert_eq!(
        store.held("b").unwrap().held_as(),
        HeldAs::Dtype(DType::F16)
    );
    let got = store
        .get("w")
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    // Saturating: 1000 clamps to 448 instead of becoming NaN.
    let want: Vec<f32> = weights
        .iter()
        .map(|v| e4m3fn_to_f32(f32_to_e4m3fn_saturating(*v)))
        .collect();
    assert_eq!(got, want);
    assert_eq!(got[3], 448.0);
}

#[test]
fn streamed_plans_hold_weights_on_the_host_and_fetch_per_layer() {
    let file = safetensors(&[("w", "BF16", vec![2, 2], bf16_bytes(&[1.0, 2.0, 3.0, 4.0]))]);
    let keys = keys(&[("w", "w", KeyTransform::Identity)]);
    let detection = detection(
        Architecture::Flux,
        ComponentKind::DiffusionModel,
        StorageDType::BF16,
        11_901_408_320,
        keys,
    );
    let options = PlanOptions {
        vram: VramMode::Low,
        ..PlanOptions::default()
    };
    let sm86 = simulated("cuda-sm86").unwrap();
    let plan = plan_for(&detection, options, &sm86);
    assert_eq!(plan.load_mode, LoadMode::Streamed);
    assert!(plan.resident_budget_bytes > 8 && plan.resident_budget_bytes < plan.weight_bytes);
    let files = std::slice::from_ref(&file);
    let store =
        WeightStore::from_files(files, &detection.components[0], &plan, &sm86, &Device::Cpu)
            .unwrap();
    assert_eq!(store.load_mode(), LoadMode::Streamed);
    // --lowvram: ComfyUI's partial load keeps what fits the budget on the device.
    assert_eq!(store.resident_bytes(), 8);
    assert!(!store.is_streamed("w"));
    // --novram: nothing stays; every use copies the weight over.
    let novram = PlanOptions {
        vram: VramMode::NoVram,
        ..PlanOptions::default()
    };
    let plan = plan_for(&detection, novram, &sm86);
    assert_eq!(plan.resident_budget_bytes, 0);
    let store =
        WeightStore::from_files(files, &detection.components[0], &plan, &sm86, &Device::Cpu)
            .unwrap();
    assert_eq!(store.resident_bytes(), 0);
    assert_eq!(store.streamed_bytes(), 8);
    assert!(store.is_streamed("w"));
    assert_eq!(store.held_bytes(), 8);
    let w = store.fetch("w", &Device::Cpu).unwrap();
    assert_eq!(w.dtype(), DType::BF16);
    assert_eq!(
        w.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap(),
        vec![vec![1.0, 2.0], vec![3.0, 4.0]]
    );
    assert!(matches!(
        store.get("missing"),
        Err(RuntimeError::TensorMissing { .. })
    ));
}

#[test]
fn a_plan_that_breaks_the_profile_is_refused() {
    let (file, detection) = fp8_unet();
    let m1 = simulated("metal-m1").unwrap();
    let mut plan = plan_for(&detection, PlanOptions::default(), &m1);
    // What ComfyUI does on a Mac: put F8E4M3 on the device.
    plan.held_as = HeldAs::Dtype(DType::F8E4M3);
    plan.widening = Widening::CastOnDevice;
    let err = plan.check(&m1).unwrap_err();
    assert!(matches!(err, RuntimeError::PlanViolation { .. }), "{err}");
    assert!(err.to_string().contains("cannot hold f8e4m3"), "{err}");
    let err = WeightStore::from_files(&[file], &detection.components[0], &plan, &m1, &Device::Cpu)
        .unwrap_err();
    assert!(matches!(err, RuntimeError::PlanViolation { .. }));
    // And a plan checked against the wrong backend is refused too.
    let ok = plan_for(&detection, PlanOptions::default(), &m1);
    assert!(ok.check(&simulated("cuda-sm86").unwrap()).is_err());
}

#[test]
fn gguf_q8_0_stays_quantised_and_dequantises_on_demand() {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    let values: Vec<f32> = (0..64).map(|v| (v as f32 - 32.0) / 8.0).collect();
    let source = Tensor::from_vec(values.clone(), (2, 32), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&source, GgmlDType::Q8_0).unwrap();
    let mut cursor = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut cursor, &[], &[("w", &q)]).unwrap();
    let file = WeightFile::from_bytes("test.gguf", cursor.into_inner()).unwrap();
    let keys = keys(&[("w", "w", KeyTransform::Identity)]);
    let detection = detection(
        Architecture::Flux,
        ComponentKind::DiffusionModel,
        StorageDType::Gguf(GgufType::Q8_0),
        11_901_408_320,
        keys,
    );
    for profile_name in ["cpu", "metal-m1"] {
        let profile = simulated(profile_name).unwrap();
        let plan = plan_for(&detection, PlanOptions::default(), &profile);
        assert_eq!(plan.widening, Widening::GgufDequant);
        let store = WeightStore::from_files(
            std::slice::from_ref(&file),
            &detection.components[0],
            &plan,
            &profile,
            &Device::Cpu,
        )
        .unwrap();
        assert_all_holdable(&store, &profile);
        let held = store.held("w").unwrap();
        assert_eq!(held.held_as(), HeldAs::Quantized(GgufType::Q8_0));
        assert!(held.as_quantized().is_some());
        assert_eq!(held.bytes(), 2 * 34);
        let got = store.get("w").unwrap().to_dtype(DType::F32).unwrap();
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let tolerance = if plan.compute_dtype == DType::F32 {
            0.02
        } else {
            0.03
        };
        for (g, want) in got.iter().zip(&values) {
            assert!(
                (g - want).abs() <= tolerance,
                "{profile_name}: {g} vs {want}"
            );
        }
    }
}

#[test]
fn missing_stored_tensor_names_the_component() {
    let file = safetensors(&[("w", "F32", vec![1], f32_bytes(&[1.0]))]);
    let keys = keys(&[("x", "not_there", KeyTransform::Identity)]);
    let detection = detection(
        Architecture::Vae,
        ComponentKind::Vae,
        StorageDType::F32,
        100,
        keys,
    );
    let cpu = simulated("cpu").unwrap();
    let plan = plan_for(&detection, PlanOptions::default(), &cpu);
    let err = WeightStore::from_files(&[file], &detection.components[0], &plan, &cpu, &Device::Cpu)
        .unwrap_err();
    assert!(err.to_string().contains("not_there"), "{err}");
}

#[test]
fn concat_rows_joins_diffusers_parts_and_swap_halves_reorders() {
    use kiln_detect::TensorRef;
    let part = |v: f32| f32_bytes(&[v, v]);
    let file = safetensors(&[
        ("to_q.weight", "F32", vec![1, 2], part(1.0)),
        ("to_k.weight", "F32", vec![1, 2], part(2.0)),
        ("to_v.weight", "F32", vec![1, 2], part(3.0)),
        (
            "norm_out.linear.weight",
            "F32",
            vec![4],
            f32_bytes(&[10.0, 11.0, 20.0, 21.0]),
        ),
    ]);
    let reference = |name: &str| TensorRef {
        file: 0,
        name: name.to_string(),
    };
    let mut keys = keys(&[(
        "final_layer.adaLN_modulation.1.weight",
        "norm_out.linear.weight",
        KeyTransform::SwapHalves,
    )]);
    keys.insert(
        "double_blocks.0.img_attn.qkv.weight".to_string(),
        KeySource::concat_rows(
            reference("to_q.weight"),
            vec![reference("to_k.weight"), reference("to_v.weight")],
        ),
    );
    let detection = detection(
        Architecture::Flux,
        ComponentKind::DiffusionModel,
        StorageDType::F32,
        11_901_408_320,
        keys,
    );
    // metal-m1 plans Flux in f16: both transforms run on f16 host tensors.
    let m1 = simulated("metal-m1").unwrap();
    let plan = plan_for(&detection, PlanOptions::default(), &m1);
    let store =
        WeightStore::from_files(&[file], &detection.components[0], &plan, &m1, &Device::Cpu)
            .unwrap();
    let qkv = store.get("double_blocks.0.img_attn.qkv.weight").unwrap();
    let qkv = qkv.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(qkv, vec![vec![1.0, 1.0], vec![2.0, 2.0], vec![3.0, 3.0]]);
    let swapped = store.get("final_layer.adaLN_modulation.1.weight").unwrap();
    let swapped = swapped
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(swapped, vec![20.0, 21.0, 10.0, 11.0]);
}
