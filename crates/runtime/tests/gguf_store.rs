//! GGUF diffusion models (city96's layout, every quantisation `kiln_test_checkpoints` writes)
//! loaded through the planner and `WeightStore`: every tensor reports its logical shape (the
//! shape of the same weight in a safetensors file), quantised matrices stay quantised, the rest
//! widens to the reference values, and a bad GGUF fails before anything is loaded.
#![allow(clippy::unwrap_used)]

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use kiln_detect::{Checkpoint, ComponentKind};
use kiln_runtime::{simulated, HeldAs, PlanOptions, Planner, WeightStore};
use kiln_test_checkpoints::{
    all_specs, reference_tensor, write, CheckpointSpec, Component, Family, Packaging, Storage,
};

/// Loads the diffusion model of `spec` (written under `dir`) planned on `profile`.
fn load_diffusion_model(
    spec: &CheckpointSpec,
    dir: &std::path::Path,
    profile: &str,
) -> WeightStore {
    let path = write(spec, dir).unwrap();
    let checkpoint = Checkpoint::open(&path).unwrap();
    let profile = simulated(profile).unwrap();
    let plan = Planner::new(PlanOptions::default(), profile.clone())
        .plan(checkpoint.detection())
        .unwrap();
    let unet = plan.component(ComponentKind::DiffusionModel).unwrap();
    WeightStore::load(&checkpoint, unet, &profile, &Device::Cpu).unwrap()
}

fn max_abs(values: &[f32]) -> f32 {
    values.iter().fold(0f32, |m, v| m.max(v.abs()))
}

#[test]
fn every_gguf_spec_loads_with_logical_shapes_and_close_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut quantised = 0;
    let specs: Vec<_> = all_specs()
        .into_iter()
        .filter(|spec| spec.packaging == Packaging::Gguf && spec.family.is_diffusion_model())
        .collect();
    assert!(specs.len() >= 15, "{} GGUF specs", specs.len());
    for spec in &specs {
        // Metal has kernels for every GGUF type candle knows; the CPU underneath runs them.
        let store = load_diffusion_model(spec, dir.path(), "metal-m3");
        for name in store.names() {
            let Some(reference) = reference_tensor(spec, Component::DiffusionModel, name) else {
                failures.push(format!("{spec}: `{name}` has no reference tensor"));
                continue;
            };
            let held = store.held(name).unwrap();
            if held.shape().dims() != reference.shape.as_slice() {
                failures.push(format!(
                    "{spec}: `{name}` held shape {:?}, logical {:?}",
                    held.shape().dims(),
                    reference.shape
                ));
                continue;
            }
            if let Some(q) = held.as_quantized() {
                // What `QMatMul` sees must be the logical matrix.
                if q.shape().dims() != reference.shape.as_slice() {
                    failures.push(format!("{spec}: `{name}` QTensor shape {:?}", q.shape()));
                }
                quantised += 1;
            }
            if matches!(held.held_as(), HeldAs::Quantized(_)) && held.as_quantized().is_none() {
                // Block-reshaped tensors: quantised in memory, widened by `get`.
                quantised += 1;
            }
            let widened = store.get(name).unwrap();
            if widened.dims() != reference.shape.as_slice() {
                failures.push(format!("{spec}: `{name}` widened to {:?}", widened.dims()));
                continue;
            }
            let got = widened
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            // 4-bit blocks are coarse: compare against the tensor's range, not per element.
            let range = max_abs(&reference.values).max(1e-6);
            let error = got
                .iter()
                .zip(&reference.values)
                .fold(0f32, |m, (g, w)| m.max((g - w).abs()));
            if error > 0.35 * range {
                failures.push(format!(
                    "{spec}: `{name}` max error {error} of range {range}"
                ));
            }
        }
        let _ = std::fs::remove_file(dir.path().join(spec.relative_path()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(quantised > 100, "{quantised} quantised tensors");
}

#[test]
fn gguf_shapes_match_the_safetensors_twin() {
    let dir = tempfile::tempdir().unwrap();
    for (family, quant) in [
        (Family::FluxDev, kiln_test_checkpoints::GgufQuant::Q8_0),
        (Family::Sd1, kiln_test_checkpoints::GgufQuant::Q4_K_S),
        (Family::Sd3Medium, kiln_test_checkpoints::GgufQuant::Q6_K),
    ] {
        let gguf = CheckpointSpec::new(family, Storage::Gguf(quant), Packaging::Gguf);
        let twin = CheckpointSpec::new(family, Storage::F16, Packaging::Standalone);
        let gguf_store = load_diffusion_model(&gguf, dir.path(), "cpu");
        let twin_store = load_diffusion_model(&twin, dir.path(), "cpu");
        let gguf_names: Vec<_> = gguf_store.names().collect();
        let twin_names: Vec<_> = twin_store.names().collect();
        assert_eq!(gguf_names, twin_names, "{gguf}");
        for name in twin_names {
            assert_eq!(
                gguf_store.held(name).unwrap().shape(),
                twin_store.held(name).unwrap().shape(),
                "{gguf}: `{name}`"
            );
        }
    }
}

/// Writes a GGUF file whose second tensor has a type id no reader knows.
fn gguf_with_unknown_type(path: &std::path::Path) {
    let weight = Tensor::zeros((4, 32), DType::F32, &Device::Cpu).unwrap();
    let good = QTensor::quantize(&weight, GgmlDType::Q8_0).unwrap();
    let bad = QTensor::quantize(&weight, GgmlDType::Q8_0).unwrap();
    let mut bytes = Vec::new();
    gguf_file::write(
        &mut std::io::Cursor::new(&mut bytes),
        &[(
            "general.architecture",
            &gguf_file::Value::String("flux".into()),
        )],
        &[("a.weight", &good), ("zz.weight", &bad)],
    )
    .unwrap();
    // Q8_0 is ggml type 8; patch the last tensor's type id (after "zz.weight", rank, 2 dims).
    let name = b"zz.weight";
    let at = bytes
        .windows(name.len())
        .position(|window| window == name)
        .unwrap();
    let type_at = at + name.len() + 4 + 2 * 8;
    assert_eq!(&bytes[type_at..type_at + 4], &8u32.to_le_bytes());
    bytes[type_at..type_at + 4].copy_from_slice(&250u32.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn unknown_quant_type_names_file_and_tensor_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flux-unknown.gguf");
    gguf_with_unknown_type(&path);
    let message = match Checkpoint::open(&path) {
        Ok(_) => panic!("a GGUF with ggml type 250 opened"),
        Err(error) => error.to_string(),
    };
    assert!(message.contains("flux-unknown.gguf"), "{message}");
    assert!(message.contains("zz.weight"), "{message}");
    assert!(message.contains("250"), "{message}");
}
