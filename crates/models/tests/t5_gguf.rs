//! T5-XXL from llama.cpp GGUF files (city96's `t5-v1_1-xxl-encoder-*.gguf` layout, every
//! quantisation `kiln-test-checkpoints` writes) through detection, the planner and the weight
//! store into `T5Encoder`: matrices stay quantised, and the hidden states stay close to the f32
//! encoder of the same seed, within each quantisation's error.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use kiln_detect::{Checkpoint, ComponentKind};
use kiln_models::{Attention, T5Encoder, Weights};
use kiln_runtime::{simulated, HeldAs, PlanOptions, Planner, WeightStore};
use kiln_test_checkpoints::{write, CheckpointSpec, Family, GgufQuant, Packaging, Storage};
use support::{load_component, max_abs, max_abs_diff};

/// A weight the planner should keep quantised.
const PROBE: &str = "encoder.block.7.layer.0.SelfAttention.q.weight";

/// The tiny T5 of `storage` and `packaging`, planned for the simulated CPU profile, and how
/// [`PROBE`] is held.
fn encoder(storage: Storage, packaging: Packaging) -> (T5Encoder, HeldAs) {
    let spec = CheckpointSpec::new(Family::T5Xxl, storage, packaging);
    let (store, attention) = load_component(&spec, ComponentKind::T5xxl, "cpu");
    let probe = store.held(PROBE).unwrap().held_as();
    let t5 = T5Encoder::new(Weights::new(Arc::new(store)))
        .unwrap()
        .with_attention(attention);
    (t5, probe)
}

/// Ids of a 12-token prompt and of a padded 77-token one, spread over the vocabulary.
fn prompts() -> Vec<Tensor> {
    let short: Vec<u32> = vec![363, 1282, 3, 9, 1131, 1712, 30, 8, 2608, 5, 6, 1];
    let long: Vec<u32> = (0..77u32)
        .map(|i| if i < 60 { (i * 531 + 17) % 32128 } else { 0 })
        .collect();
    vec![
        Tensor::new(short.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap(),
        Tensor::new(long.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap(),
    ]
}

/// Relative error a quantisation may add over the whole 24-block encoder of random weights,
/// against the f32 file: about twice what seed 0 gives (F16 1.5e-3, Q8_0 and Q6_K 3.2e-2, the
/// 5-bit types and Q4_K_S, whose 96-wide rows fall back to Q5_0 as in llama.cpp, 0.2, Q4_0 0.43,
/// Q4_1 0.5). About 1.4e-2 of each is candle's 8-bit activation rounding (see
/// [`MATMUL_TOLERANCE`]).
fn tolerance(quant: GgufQuant) -> f32 {
    match quant {
        GgufQuant::F16 => 5e-3,
        GgufQuant::Q8_0 | GgufQuant::Q6_K => 0.06,
        GgufQuant::Q5_K_S | GgufQuant::Q5_1 | GgufQuant::Q5_0 | GgufQuant::Q4_K_S => 0.35,
        GgufQuant::Q4_1 | GgufQuant::Q4_0 => 0.8,
    }
}

/// Relative error candle's quantised matmul may add over the 24 blocks against the same weights
/// dequantised: it rounds activations to 8 bits (seed 0 gives 1.35e-2 for every type).
const MATMUL_TOLERANCE: f32 = 0.03;

#[test]
fn gguf_t5_matches_the_f32_encoder_within_each_quantisations_error() {
    let (reference, _) = encoder(Storage::F32, Packaging::Standalone);
    let wanted: Vec<Tensor> = prompts()
        .iter()
        .map(|ids| reference.forward(ids).unwrap())
        .collect();
    let mut failures = Vec::new();
    let mut errors = Vec::new();
    for quant in GgufQuant::ALL {
        let (t5, probe) = encoder(Storage::Gguf(quant), Packaging::Gguf);
        assert_eq!(t5.config(), reference.config(), "{quant:?}");
        // GGUF F16 widens to the compute dtype; every block quantisation stays blocks.
        if (quant == GgufQuant::F16) == matches!(probe, HeldAs::Quantized(_)) {
            failures.push(format!("{quant:?}: `{PROBE}` held as {probe}"));
        }
        let mut worst = 0f32;
        for (ids, want) in prompts().iter().zip(&wanted) {
            let got = t5.forward(ids).unwrap();
            assert_eq!(got.dtype(), DType::F32);
            assert!(max_abs(&got).is_finite(), "{quant:?}");
            worst = worst.max(max_abs_diff(&got, want) / max_abs(want));
        }
        errors.push(format!("{quant:?} {worst:.2e}"));
        if worst >= tolerance(quant) {
            failures.push(format!(
                "{quant:?}: relative error {worst} ≥ {}",
                tolerance(quant)
            ));
        }
    }
    eprintln!("relative errors: {}", errors.join(", "));
    // Every quantisation runs: the workspace turns off candle-core's debug assertions, one of
    // which wrongly insists on an even block count for Q4_1/Q5_0/Q5_1 rows.
    assert_eq!(errors.len(), GgufQuant::ALL.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `quant`'s GGUF encoder, and the same weights dequantised into an f32 transformers-named
/// safetensors file, both loaded as the engine loads any file. The second is what ComfyUI-GGUF
/// runs (it dequantises each weight and multiplies in float); the first multiplies the blocks
/// with candle's quantised matmul, which also rounds the activations to 8 bits.
fn gguf_and_dequantised_twin(quant: GgufQuant) -> (T5Encoder, T5Encoder) {
    let dir = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(Family::T5Xxl, Storage::Gguf(quant), Packaging::Gguf);
    let gguf = Checkpoint::open(write(&spec, dir.path()).unwrap()).unwrap();
    let component = gguf.detection().component(ComponentKind::T5xxl).unwrap();
    let mut tensors = HashMap::new();
    for name in component.keys.keys() {
        let (shape, values) = gguf.read_f32(ComponentKind::T5xxl, name).unwrap();
        let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        let tensor = Tensor::from_vec(values, shape, &Device::Cpu).unwrap();
        tensors.insert(name.clone(), tensor);
    }
    let twin_path = dir.path().join("t5xxl_dequantised.safetensors");
    candle_core::safetensors::save(&tensors, &twin_path).unwrap();
    let twin = Checkpoint::open(&twin_path).unwrap();
    let load = |checkpoint: &Checkpoint| {
        let planner = Planner::new(PlanOptions::default(), simulated("cpu").unwrap());
        let plan = planner.plan(checkpoint.detection()).unwrap();
        let component = plan.component(ComponentKind::T5xxl).unwrap();
        let store = WeightStore::load(
            checkpoint,
            component,
            planner.profile_for(component.device),
            &Device::Cpu,
        )
        .unwrap();
        T5Encoder::new(Weights::new(Arc::new(store)))
            .unwrap()
            .with_attention(Attention::from_plan(component))
    };
    (load(&gguf), load(&twin))
}

#[test]
fn quantised_matmul_matches_dequantised_weights() {
    // Weight rounding cancels out here: what is left is the quantised matmul itself.
    let mut failures = Vec::new();
    let mut errors = Vec::new();
    for quant in GgufQuant::ALL {
        let (gguf, twin) = gguf_and_dequantised_twin(quant);
        let mut worst = 0f32;
        for ids in prompts() {
            let want = twin.forward(&ids).unwrap();
            let got = gguf.forward(&ids).unwrap();
            worst = worst.max(max_abs_diff(&got, &want) / max_abs(&want));
        }
        errors.push(format!("{quant:?} {worst:.2e}"));
        if worst >= MATMUL_TOLERANCE {
            failures.push(format!("{quant:?}: relative error {worst}"));
        }
    }
    eprintln!("against dequantised weights: {}", errors.join(", "));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn quantisation_error_is_real_and_ordered() {
    // The GGUF path must not be silently reading f32 weights: Q4_0 differs from f32 more than
    // Q8_0 does, and both differ at all.
    let (reference, _) = encoder(Storage::F32, Packaging::Standalone);
    let ids = &prompts()[0];
    let want = reference.forward(ids).unwrap();
    let error = |quant| {
        let (t5, _) = encoder(Storage::Gguf(quant), Packaging::Gguf);
        max_abs_diff(&t5.forward(ids).unwrap(), &want) / max_abs(&want)
    };
    let q8 = error(GgufQuant::Q8_0);
    let q4 = error(GgufQuant::Q4_0);
    assert!(q8 > 0.0, "Q8_0 equals f32 exactly");
    assert!(q4 > 2.0 * q8, "Q4_0 {q4} vs Q8_0 {q8}");
}
