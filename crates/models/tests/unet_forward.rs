//! The UNet over tiny checkpoints of every family: the config read from the weights has the
//! released model's structure, `forward` gives the latent's shape for even and odd sizes, every
//! storage dtype runs, and bad inputs are typed errors.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;
mod unet_support;

use candle_core::{DType, Device, Tensor};
use kiln_models::{
    AttentionHeads, MiddleBlock, ModelError, TransformerProjection, Unet, UnetConfig,
};
use kiln_test_checkpoints::{Family, Storage};
use support::max_abs_diff;
use unet_support::{adm_for, all_finite, context_for, load_unet, pattern};

/// The released config with the tiny checkpoints' widths.
fn tiny(
    released: UnetConfig,
    context_dim: usize,
    adm: Option<usize>,
    heads: AttentionHeads,
) -> UnetConfig {
    UnetConfig {
        model_channels: 32,
        context_dim,
        adm_in_channels: adm,
        heads,
        ..released
    }
}

fn run(unet: &Unet, batch: usize, height: usize, width: usize) -> Tensor {
    let x = pattern(&[batch, 4, height, width], 0.0);
    let t = Tensor::new(&[999f32, 500.0, 1.0][..batch], &Device::Cpu).unwrap();
    let context = context_for(unet, batch, 5, 3.0);
    let y = adm_for(unet, batch, 7.0);
    unet.forward(&x, &t, &context, y.as_ref()).unwrap()
}

#[test]
fn sd1_config_from_weights_and_forward() {
    let dir = tempfile::tempdir().unwrap();
    let unet = load_unet(Family::Sd1, Storage::F32, dir.path());
    let expected = tiny(
        UnetConfig::sd1(),
        unet.config().context_dim,
        None,
        AttentionHeads::Count(2),
    );
    assert_eq!(unet.config(), &expected);
    assert_eq!(unet.config().projection, TransformerProjection::Conv);
    let out = run(&unet, 2, 8, 8);
    assert_eq!(out.dims(), &[2, 4, 8, 8]);
    assert!(all_finite(&out));
}

#[test]
fn sd2_config_from_weights_and_odd_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let unet = load_unet(Family::Sd2, Storage::F32, dir.path());
    let expected = tiny(
        UnetConfig::sd2(),
        unet.config().context_dim,
        None,
        AttentionHeads::Width(16),
    );
    assert_eq!(unet.config(), &expected);
    // 9×7 goes 9→5→3→2 on the way down and is resized back to each skip's size on the way up.
    let out = run(&unet, 1, 9, 7);
    assert_eq!(out.dims(), &[1, 4, 9, 7]);
    assert!(all_finite(&out));
}

#[test]
fn sdxl_config_from_weights_and_forward() {
    let dir = tempfile::tempdir().unwrap();
    let unet = load_unet(Family::Sdxl, Storage::F32, dir.path());
    let config = unet.config();
    let expected = tiny(
        UnetConfig::sdxl(),
        config.context_dim,
        config.adm_in_channels,
        AttentionHeads::Width(16),
    );
    assert_eq!(config, &expected);
    assert_eq!(config.transformer_depth, vec![0, 0, 2, 2, 10, 10]);
    assert_eq!(config.middle_block, MiddleBlock::WithAttention(10));
    let out = run(&unet, 1, 8, 8);
    assert_eq!(out.dims(), &[1, 4, 8, 8]);
    assert!(all_finite(&out));
}

#[test]
fn sdxl_refiner_config_from_weights_and_forward() {
    let dir = tempfile::tempdir().unwrap();
    let unet = load_unet(Family::SdxlRefiner, Storage::F32, dir.path());
    let config = unet.config();
    // The refiner keeps `adm − 5·256 == context` (pooled width = context width).
    assert_eq!(config.adm_in_channels, Some(config.context_dim + 5 * 256));
    let expected = tiny(
        UnetConfig::sdxl_refiner(),
        config.context_dim,
        config.adm_in_channels,
        AttentionHeads::Width(16),
    );
    assert_eq!(config, &expected);
    let out = run(&unet, 1, 8, 8);
    assert_eq!(out.dims(), &[1, 4, 8, 8]);
    assert!(all_finite(&out));
}

#[test]
fn batch_rows_are_independent() {
    // At 8×8 the deepest level is 1×1: one token per transformer, the case where candle's
    // matmul mishandles a transposed view (see `SpatialTransformer::forward`).
    let dir = tempfile::tempdir().unwrap();
    for family in [Family::Sd1, Family::Sd2] {
        let unet = load_unet(family, Storage::F32, dir.path());
        let all = run(&unet, 3, 8, 8);
        let x = pattern(&[3, 4, 8, 8], 0.0).narrow(0, 1, 1).unwrap();
        let t = Tensor::new(&[500f32], &Device::Cpu).unwrap();
        let context = context_for(&unet, 3, 5, 3.0).narrow(0, 1, 1).unwrap();
        let second = unet.forward(&x, &t, &context, None).unwrap();
        let difference = max_abs_diff(&all.narrow(0, 1, 1).unwrap(), &second);
        assert!(difference < 1e-5, "{family:?}: {difference}");
    }
}

#[test]
fn reduced_storage_dtypes_run_close_to_f32() {
    let dir = tempfile::tempdir().unwrap();
    let reference = run(&load_unet(Family::Sd1, Storage::F32, dir.path()), 1, 8, 8);
    let scale = reference
        .abs()
        .unwrap()
        .max_keepdim(0)
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    for (storage, tolerance) in [
        (Storage::F16, 1e-2),
        (Storage::BF16, 3e-2),
        (Storage::F8E4M3, 0.6),
        (Storage::F8E5M2, 0.6),
        (Storage::ScaledF8E4M3, 0.6),
    ] {
        let unet = load_unet(Family::Sd1, storage, dir.path());
        let out = run(&unet, 1, 8, 8).to_dtype(DType::F32).unwrap();
        assert_eq!(out.dims(), &[1, 4, 8, 8], "{storage:?}");
        assert!(all_finite(&out), "{storage:?}");
        let difference = max_abs_diff(&out, &reference);
        assert!(
            difference <= tolerance * scale,
            "{storage:?}: {difference} (scale {scale})"
        );
    }
}

#[test]
fn bad_inputs_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let unet = load_unet(Family::Sdxl, Storage::F16, dir.path());
    let x = pattern(&[1, 4, 8, 8], 0.0);
    let t = Tensor::new(&[10f32], &Device::Cpu).unwrap();
    let context = context_for(&unet, 1, 3, 0.0);
    let y = adm_for(&unet, 1, 0.0);
    let input_of = |result: kiln_models::Result<Tensor>| match result {
        Err(ModelError::Input { input, .. }) => input,
        other => panic!("expected an input error, got {other:?}"),
    };
    // Missing ADM vector.
    assert_eq!(input_of(unet.forward(&x, &t, &context, None)), "y");
    // Wrong channel count.
    let x3 = pattern(&[1, 3, 8, 8], 0.0);
    assert_eq!(input_of(unet.forward(&x3, &t, &context, y.as_ref())), "x");
    // Timesteps for another batch.
    let t2 = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
    assert_eq!(
        input_of(unet.forward(&x, &t2, &context, y.as_ref())),
        "timesteps"
    );
    // Context of the wrong width.
    let narrow = pattern(&[1, 3, 8], 0.0);
    assert_eq!(
        input_of(unet.forward(&x, &t, &narrow, y.as_ref())),
        "context"
    );
}

#[test]
fn a_preset_that_does_not_fit_the_weights_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let weights = unet_support::load_weights(Family::Sd1, Storage::F32, dir.path());
    let result = Unet::new(
        &UnetConfig::sd1(),
        &weights,
        kiln_models::Attention::new(kiln_models::AttentionKernel::Plain),
    );
    assert!(
        matches!(result, Err(ModelError::WeightShape { .. })),
        "{result:?}"
    );
}
