//! The Flux transformer's public API beyond ComfyUI parity: the configuration read from the
//! weights, reduced storage dtypes (fp8 held 8-bit, scaled fp8, bf16) through the planner,
//! every attention kernel, batching, and typed input errors.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use kiln_detect::ComponentKind;
use kiln_models::{
    Attention, AttentionKernel, DiffusionModel, Flux, FluxConfig, MemoryBudget, ModelConditioning,
    ModelError, Weights, FLUX_DEFAULT_GUIDANCE,
};
use kiln_runtime::{HeldAs, WeightStore};
use kiln_test_checkpoints::{CheckpointSpec, Family, Packaging, Storage};
use support::{load_component, max_abs, max_abs_diff};

/// The diffusion model of a tiny checkpoint as planned for the simulated `profile`, on the CPU.
fn load_store(family: Family, storage: Storage, profile: &str) -> (WeightStore, Attention) {
    let spec = CheckpointSpec::new(family, storage, Packaging::SingleFile);
    load_component(&spec, ComponentKind::DiffusionModel, profile)
}

fn load_flux(family: Family, storage: Storage) -> Flux {
    let (store, attention) = load_store(family, storage, "cpu");
    Flux::new(Weights::new(Arc::new(store)))
        .unwrap()
        .with_attention(attention)
}

/// Deterministic values in [-1, 1) without an RNG.
fn pattern(shape: &[usize], offset: f32) -> Tensor {
    let count: usize = shape.iter().product();
    let values: Vec<f32> = (0..count)
        .map(|i| {
            let i = i as f32 + offset;
            ((i * 0.618_034 + i * i * 0.001_3).fract() * 2.0) - 1.0
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

struct Inputs {
    x: Tensor,
    t: Tensor,
    context: Tensor,
    y: Tensor,
    guidance: Tensor,
}

fn inputs(config: &FluxConfig, batch: usize, height: usize, width: usize) -> Inputs {
    Inputs {
        x: pattern(&[batch, config.in_channels, height, width], 0.0),
        t: Tensor::new(&[0.6f32, 0.3][..batch], &Device::Cpu).unwrap(),
        context: pattern(&[batch, 5, config.context_in_dim], 3.0),
        y: pattern(&[batch, config.vec_in_dim], 7.0),
        guidance: Tensor::new(&[3.0f32, 4.0][..batch], &Device::Cpu).unwrap(),
    }
}

fn run(flux: &Flux, inputs: &Inputs) -> Tensor {
    flux.forward(
        &inputs.x,
        &inputs.t,
        &inputs.context,
        Some(&inputs.y),
        Some(&inputs.guidance),
    )
    .unwrap()
    .to_dtype(DType::F32)
    .unwrap()
}

#[test]
fn config_is_read_from_the_weights() {
    let dev = load_flux(Family::FluxDev, Storage::F32);
    let expected = FluxConfig {
        in_channels: 16,
        out_channels: 16,
        hidden_size: 64,
        num_heads: 2,
        mlp_hidden: 256,
        depth: 19,
        depth_single_blocks: 38,
        vec_in_dim: 32,
        context_in_dim: 96,
        axes_dim: vec![4, 14, 14],
        guidance_embed: true,
    };
    assert_eq!(dev.config(), &expected);
    assert_eq!(dev.config().head_dim(), 32);
    let schnell = load_flux(Family::FluxSchnell, Storage::F32);
    assert!(!schnell.config().guidance_embed);
    let fill = load_flux(Family::FluxFill, Storage::F32);
    assert_eq!(
        (fill.config().in_channels, fill.config().out_channels),
        (96, 16)
    );
    assert!(fill.config().guidance_embed);
}

#[test]
fn reduced_storage_dtypes_run_close_to_f32() {
    let reference_model = load_flux(Family::FluxDev, Storage::F32);
    let batch_inputs = inputs(reference_model.config(), 1, 6, 6);
    let reference = run(&reference_model, &batch_inputs);
    let scale = max_abs(&reference);
    // The CPU plans f32 compute; a simulated Ampere GPU plans bf16 activations, and a Turing
    // one widens scaled fp8 bytes through the lookup table.
    for (storage, profile, compute, tolerance, eight_bit) in [
        (Storage::BF16, "cpu", DType::F32, 0.03, false),
        (Storage::F8E4M3, "cpu", DType::F32, 0.15, true),
        (Storage::ScaledF8E4M3, "cpu", DType::F32, 0.15, true),
        (Storage::BF16, "cuda-sm86", DType::BF16, 0.03, false),
        (Storage::F8E4M3, "cuda-sm86", DType::BF16, 0.15, true),
        (Storage::ScaledF8E4M3, "cuda-sm75", DType::F16, 0.15, true),
    ] {
        let (store, attention) = load_store(Family::FluxDev, storage, profile);
        let held = store
            .held("double_blocks.3.img_attn.qkv.weight")
            .unwrap()
            .held_as();
        if eight_bit {
            assert!(
                matches!(held, HeldAs::Dtype(DType::U8 | DType::F8E4M3)),
                "{storage:?} on {profile}: Linear weights held as {held}"
            );
        }
        if storage == Storage::ScaledF8E4M3 {
            let weight = store.held("single_blocks.0.linear1.weight").unwrap();
            assert!(weight.scale().is_some(), "{storage:?}: no scale");
        }
        let flux = Flux::new(Weights::new(Arc::new(store)))
            .unwrap()
            .with_attention(attention);
        let out = run(&flux, &batch_inputs);
        assert_eq!(flux.dtype(), compute, "{storage:?} on {profile}");
        assert_eq!(out.dims(), reference.dims(), "{storage:?}");
        let difference = max_abs_diff(&out, &reference);
        assert!(
            difference.is_finite() && difference <= tolerance * scale,
            "{storage:?} on {profile}: {difference} (scale {scale})"
        );
    }
}

#[test]
fn every_attention_kernel_gives_the_same_prediction() {
    let flux = load_flux(Family::FluxSchnell, Storage::F32);
    let batch_inputs = inputs(flux.config(), 1, 5, 4);
    let plain = run(
        &flux
            .clone()
            .with_attention(Attention::new(AttentionKernel::Plain)),
        &batch_inputs,
    );
    for kernel in [
        AttentionKernel::Split,
        AttentionKernel::SubQuadratic,
        AttentionKernel::Fused,
    ] {
        // A tiny budget forces the chunking kernels to actually chunk.
        let attention = Attention::new(kernel).with_budget(MemoryBudget::Bytes(2048));
        let out = run(&flux.clone().with_attention(attention), &batch_inputs);
        let difference = max_abs_diff(&out, &plain);
        assert!(difference < 1e-5, "{kernel:?}: {difference}");
    }
}

#[test]
fn batched_rows_match_single_rows() {
    let flux = load_flux(Family::FluxDev, Storage::F32);
    let both = inputs(flux.config(), 2, 3, 5);
    let all = run(&flux, &both);
    let row = |t: &Tensor| t.narrow(0, 1, 1).unwrap();
    let second = Inputs {
        x: row(&both.x),
        t: row(&both.t),
        context: row(&both.context),
        y: row(&both.y),
        guidance: row(&both.guidance),
    };
    let difference = max_abs_diff(&row(&all), &run(&flux, &second));
    assert!(difference < 1e-5, "{difference}");
}

#[test]
fn predict_uses_the_default_guidance_when_none_is_given() {
    let flux = load_flux(Family::FluxDev, Storage::F32);
    let batch_inputs = inputs(flux.config(), 1, 4, 4);
    let conditioning = ModelConditioning {
        context: &batch_inputs.context,
        y: Some(&batch_inputs.y),
        guidance: None,
    };
    let predicted = flux
        .predict(&batch_inputs.x, &batch_inputs.t, &conditioning)
        .unwrap();
    let default = Tensor::new(&[FLUX_DEFAULT_GUIDANCE], &Device::Cpu).unwrap();
    let explicit = flux
        .forward(
            &batch_inputs.x,
            &batch_inputs.t,
            &batch_inputs.context,
            Some(&batch_inputs.y),
            Some(&default),
        )
        .unwrap();
    assert_eq!(max_abs_diff(&predicted, &explicit), 0.0);
    let unguided = flux
        .forward(
            &batch_inputs.x,
            &batch_inputs.t,
            &batch_inputs.context,
            Some(&batch_inputs.y),
            None,
        )
        .unwrap();
    assert!(max_abs_diff(&predicted, &unguided) > 1e-4);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let flux = load_flux(Family::FluxDev, Storage::F32);
    let good = inputs(flux.config(), 1, 4, 4);
    let input_of = |result: kiln_models::Result<Tensor>| match result {
        Err(ModelError::Input { input, .. }) => input,
        other => panic!("expected an input error, got {other:?}"),
    };
    let y = Some(&good.y);
    let g = Some(&good.guidance);
    let wrong_channels = pattern(&[1, 4, 4, 4], 0.0);
    assert_eq!(
        input_of(flux.forward(&wrong_channels, &good.t, &good.context, y, g)),
        "x"
    );
    let two_timesteps = Tensor::new(&[0.1f32, 0.2], &Device::Cpu).unwrap();
    assert_eq!(
        input_of(flux.forward(&good.x, &two_timesteps, &good.context, y, g)),
        "timesteps"
    );
    let narrow_context = pattern(&[1, 5, 8], 0.0);
    assert_eq!(
        input_of(flux.forward(&good.x, &good.t, &narrow_context, y, g)),
        "context"
    );
    let short_y = pattern(&[1, 8], 0.0);
    assert_eq!(
        input_of(flux.forward(&good.x, &good.t, &good.context, Some(&short_y), g)),
        "y"
    );
    assert_eq!(
        input_of(flux.forward(&good.x, &good.t, &good.context, y, Some(&two_timesteps))),
        "guidance"
    );
}
