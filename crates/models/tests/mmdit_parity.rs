//! Parity of the SD3 / SD3.5 MMDiT with ComfyUI (fixtures in `tests/fixtures/mmdit/`, written by
//! `scripts/reference/mmdit_fixtures.py`): the detected configuration, the raw flow prediction at
//! two sigmas, an odd-sized latent, a batch of two, `SD3.apply_model`'s denoised latent through
//! [`CfgDenoiser`] with [`ModelSampling::sd3`], and one guided (cfg 4.5) call; then the tiny
//! SD3.5 large stored as scaled fp8, fp8 and GGUF Q8_0 against its f32 self, the diffusers layout,
//! and every attention kernel.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use kiln_detect::ComponentKind;
use kiln_models::{
    Attention, AttentionKernel, CfgDenoiser, GuidedCond, MemoryBudget, Mmdit, MmditConfig, Weights,
};
use kiln_runtime::HeldTensor;
use kiln_sampling::samplers::Denoiser;
use kiln_sampling::ModelSampling;
use kiln_test_checkpoints::{CheckpointSpec, Family, Packaging, Storage};
use support::{load_component, max_abs, max_abs_diff};

fn fixture(name: &str) -> (HashMap<String, Tensor>, serde_json::Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mmdit");
    let tensors =
        candle_core::safetensors::load(dir.join(format!("{name}.safetensors")), &Device::Cpu)
            .unwrap();
    let json = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
    (tensors, serde_json::from_str(&json).unwrap())
}

fn load(family: Family, storage: Storage) -> (Mmdit, Weights) {
    load_packaged(family, storage, Packaging::SingleFile)
}

fn load_packaged(family: Family, storage: Storage, packaging: Packaging) -> (Mmdit, Weights) {
    let spec = CheckpointSpec::new(family, storage, packaging);
    let (store, attention) = load_component(&spec, ComponentKind::DiffusionModel, "cpu");
    let weights = Weights::new(Arc::new(store));
    let model = Mmdit::new(weights.clone())
        .unwrap()
        .with_attention(attention);
    (model, weights)
}

/// `max |Δ| ≤ tolerance · max(|reference|, 1)`.
fn assert_close(what: &str, got: &Tensor, reference: &Tensor, tolerance: f32) {
    assert_eq!(got.dims(), reference.dims(), "{what}");
    let difference = max_abs_diff(got, reference);
    let bound = tolerance * max_abs(reference).max(1.0);
    assert!(
        difference <= bound,
        "{what}: max |Δ| {difference} > {bound}"
    );
}

/// The raw prediction for the fixture's `x`, `context`, `y` at its `timestep.{step}`.
fn forward_at(model: &Mmdit, tensors: &HashMap<String, Tensor>, step: usize) -> Tensor {
    let get = |key: &str| tensors[key].clone();
    model
        .forward(
            &get("x"),
            &get(&format!("timestep.{step}")),
            &get("context"),
            Some(&get("y")),
        )
        .unwrap()
}

/// A lossy storage's output: within `relative · max(|reference|, 1)` of the f32 one, and not
/// identical to it (the storage was really used).
fn assert_tracks_f32(what: &str, output: &Tensor, reference: &Tensor, relative: f32) {
    let difference = max_abs_diff(output, reference);
    let bound = relative * max_abs(reference).max(1.0);
    assert!(difference <= bound, "{what}: {difference} > {bound}");
    assert!(difference > 0.0, "{what}: storage changed nothing");
}

/// f32 parity bound: ComfyUI and Kiln sum in different orders.
const F32_TOLERANCE: f32 = 1e-5;

/// The configuration fields ComfyUI's `detect_unet_config` recorded in the fixture.
fn assert_config_matches(config: &MmditConfig, meta: &serde_json::Value) {
    let unet = &meta["unet_config"];
    let number = |v: &serde_json::Value| v.as_u64().unwrap() as usize;
    assert_eq!(config.depth, number(&unet["depth"]));
    assert_eq!(config.in_channels, number(&unet["in_channels"]));
    assert_eq!(config.out_channels, number(&unet["out_channels"]));
    assert_eq!(config.patch_size, number(&unet["patch_size"]));
    assert_eq!(
        config.pos_embed_max_size,
        number(&unet["pos_embed_max_size"])
    );
    assert_eq!(
        config.adm_in_channels,
        Some(number(&unet["adm_in_channels"]))
    );
    assert_eq!(
        config.context_in_dim,
        Some(number(
            &unet["context_embedder_config"]["params"]["in_features"]
        ))
    );
    assert_eq!(config.qk_norm, unet["qk_norm"].as_str() == Some("rms"));
    let layers: Vec<usize> = unet["x_block_self_attn_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(number)
        .collect();
    assert_eq!(config.x_block_self_attn_layers, layers);
    assert_eq!(config.context_processor_layers, None);
    assert_eq!(config.num_heads(), number(&meta["num_heads"]));
    assert_eq!(config.hidden_size(), number(&meta["hidden_size"]));
}

fn check_family(name: &str, family: Family) {
    let (tensors, meta) = fixture(&format!("mmdit_{name}"));
    let get = |key: &str| tensors[key].clone();
    let (model, _) = load(family, Storage::F32);
    assert_config_matches(model.config(), &meta);

    let sampling = ModelSampling::sd3();
    let (x, context, y) = (get("x"), get("context"), get("y"));
    for i in 0..2 {
        let sigma = get(&format!("sigma.{i}")).to_vec1::<f32>().unwrap()[0];
        let timestep = get(&format!("timestep.{i}"));
        assert_eq!(
            sampling.timestep(sigma),
            timestep.to_vec1::<f32>().unwrap()[0]
        );
        let output = model.forward(&x, &timestep, &context, Some(&y)).unwrap();
        assert_close(
            &format!("{name} model_output.{i}"),
            &output,
            &get(&format!("model_output.{i}")),
            F32_TOLERANCE,
        );
        let cond = GuidedCond::new(context.clone(), Some(y.clone()));
        let mut denoiser =
            CfgDenoiser::new(&model, sampling.clone(), vec![cond], vec![], 1.0).unwrap();
        let denoised = denoiser.denoise(&x, f64::from(sigma)).unwrap();
        assert_close(
            &format!("{name} denoised.{i}"),
            &denoised,
            &get(&format!("denoised.{i}")),
            F32_TOLERANCE,
        );
    }

    let odd = model
        .forward(
            &get("odd.x"),
            &Tensor::new(&[1000f32], &Device::Cpu).unwrap(),
            &context,
            Some(&y),
        )
        .unwrap();
    assert_close(
        &format!("{name} odd"),
        &odd,
        &get("odd.model_output"),
        F32_TOLERANCE,
    );

    let batch = model
        .forward(
            &get("batch.x"),
            &get("batch.timestep"),
            &get("batch.context"),
            Some(&get("batch.y")),
        )
        .unwrap();
    assert_close(
        &format!("{name} batch"),
        &batch,
        &get("batch.model_output"),
        F32_TOLERANCE,
    );

    let cfg = meta["cfg_scale"].as_f64().unwrap();
    let sigma = get("cfg.sigma").to_vec1::<f32>().unwrap()[0];
    let positive = GuidedCond::new(context.clone(), Some(y.clone()));
    let negative = GuidedCond::new(get("cfg.negative_context"), Some(get("cfg.negative_y")));
    let mut denoiser =
        CfgDenoiser::new(&model, sampling, vec![positive], vec![negative], cfg).unwrap();
    let guided = denoiser.denoise(&x, f64::from(sigma)).unwrap();
    assert_close(
        &format!("{name} cfg"),
        &guided,
        &get("cfg.denoised"),
        F32_TOLERANCE,
    );
}

#[test]
fn sd3_medium_matches_comfyui() {
    check_family("sd3_medium", Family::Sd3Medium);
}

#[test]
fn sd35_medium_mmdit_x_matches_comfyui() {
    check_family("sd35_medium", Family::Sd35Medium);
}

#[test]
fn sd35_large_matches_comfyui() {
    check_family("sd35_large", Family::Sd35Large);
}

fn held_as_8_bit(weights: &Weights, leaf: &str) -> bool {
    match weights.held(leaf).unwrap() {
        HeldTensor::Fp8Bytes { .. } | HeldTensor::Fp8Native { .. } => true,
        HeldTensor::Native(t) => t.dtype().size_in_bytes() == 1,
        _ => false,
    }
}

#[test]
fn sd35_large_fp8_storages_track_f32() {
    let (tensors, _) = fixture("mmdit_sd35_large");
    let (reference_model, _) = load(Family::Sd35Large, Storage::F32);
    let reference = forward_at(&reference_model, &tensors, 0);
    for storage in [Storage::ScaledF8E4M3, Storage::F8E4M3] {
        let (model, weights) = load(Family::Sd35Large, storage);
        assert_eq!(model.config(), reference_model.config(), "{storage:?}");
        assert!(
            held_as_8_bit(&weights, "joint_blocks.1.x_block.attn.qkv.weight"),
            "{storage:?}: qkv weight widened at load"
        );
        let output = forward_at(&model, &tensors, 0);
        // fp8 keeps 3 mantissa bits: about 3 % of the output range here (scaled fp8 0.038 of 1.22).
        assert_tracks_f32(&format!("{storage:?}"), &output, &reference, 0.06);
    }
}

#[test]
fn wrong_inputs_are_refused() {
    let (model, _) = load(Family::Sd3Medium, Storage::F32);
    let (tensors, _) = fixture("mmdit_sd3_medium");
    let x = &tensors["x"];
    let t = &tensors["timestep.0"];
    let context = &tensors["context"];
    let y = &tensors["y"];
    let four_channels = x.narrow(1, 0, 4).unwrap();
    assert!(model.forward(&four_channels, t, context, Some(y)).is_err());
    let narrow_context = context.narrow(2, 0, 8).unwrap();
    assert!(model.forward(x, t, &narrow_context, Some(y)).is_err());
    let two_timesteps = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
    assert!(model.forward(x, &two_timesteps, context, Some(y)).is_err());
    let too_large = Tensor::zeros((1, 16, 70, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(model.forward(&too_large, t, context, Some(y)).is_err());
}

/// Every kernel the planner may choose, with a memory budget small enough to force chunking,
/// computes ComfyUI's output (joint attention over 7 + 15 tokens and MMDiT-X `attn2`).
#[test]
fn every_attention_kernel_matches_comfyui() {
    let (tensors, _) = fixture("mmdit_sd35_medium");
    let get = |key: &str| tensors[key].clone();
    let (model, _) = load(Family::Sd35Medium, Storage::F32);
    for kernel in [
        AttentionKernel::Plain,
        AttentionKernel::Split,
        AttentionKernel::SubQuadratic,
        AttentionKernel::Fused,
    ] {
        let attention = Attention::new(kernel).with_budget(MemoryBudget::Bytes(2048));
        let output = forward_at(&model.clone().with_attention(attention), &tensors, 1);
        assert_close(
            &format!("{kernel:?}"),
            &output,
            &get("model_output.1"),
            F32_TOLERANCE,
        );
    }
}

/// city96-style GGUF (Q8_0 blocks multiplied by candle's quantised matmul) tracks f32.
#[test]
fn sd35_large_gguf_tracks_f32() {
    let (tensors, _) = fixture("mmdit_sd35_large");
    let (reference_model, _) = load(Family::Sd35Large, Storage::F32);
    let reference = forward_at(&reference_model, &tensors, 0);
    let spec = CheckpointSpec::new(
        Family::Sd35Large,
        Storage::Gguf(kiln_test_checkpoints::GgufQuant::Q8_0),
        Packaging::Gguf,
    );
    let (store, attention) = load_component(&spec, ComponentKind::DiffusionModel, "cpu");
    let weights = Weights::new(Arc::new(store));
    assert!(weights
        .quantized("joint_blocks.1.x_block.attn.qkv.weight")
        .is_some());
    let model = Mmdit::new(weights).unwrap().with_attention(attention);
    assert_eq!(model.config(), reference_model.config());
    let output = forward_at(&model, &tensors, 0);
    // 8-bit blocks with a per-block scale: 0.007 of 1.22 here.
    assert_tracks_f32("Q8_0", &output, &reference, 0.02);
}

/// The same weights in a diffusers `SD3Transformer2DModel` folder (split q/k/v, swapped
/// final-modulation halves), mapped to SAI naming by `kiln-detect`, give ComfyUI's output.
#[test]
fn sd35_medium_diffusers_layout_matches_comfyui() {
    let (tensors, _) = fixture("mmdit_sd35_medium");
    let get = |key: &str| tensors[key].clone();
    let (model, _) = load_packaged(Family::Sd35Medium, Storage::F32, Packaging::Diffusers);
    let output = forward_at(&model, &tensors, 0);
    assert_close(
        "diffusers layout",
        &output,
        &get("model_output.0"),
        F32_TOLERANCE,
    );
}
