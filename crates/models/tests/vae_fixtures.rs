//! Parity with ComfyUI's `VAEDecode` and `VAEEncode` on the tiny 4-channel VAE
//! (`tests/fixtures/vae.safetensors`, see the README there), within 1e-4 in f32, for every
//! attention kernel.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use kiln_detect::ComponentKind;
use kiln_models::{Attention, AttentionKernel, AutoencoderKl, MemoryBudget, VaeConfig, Weights};
use kiln_test_checkpoints::{CheckpointSpec, Family, Packaging, Storage};
use support::{load_component, max_abs_diff};

fn reference() -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vae.safetensors");
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// The SD1 checkpoint's VAE, the one the fixtures were made with.
fn vae() -> (AutoencoderKl, Attention) {
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F32, Packaging::SingleFile);
    let (store, attention) = load_component(&spec, ComponentKind::Vae, "cpu");
    let weights = Weights::new(Arc::new(store));
    let config = VaeConfig::from_weights(&weights).unwrap();
    assert_eq!(
        config,
        VaeConfig {
            ch: 32,
            ..VaeConfig::sd()
        }
    );
    (
        AutoencoderKl::new(weights, config)
            .unwrap()
            .with_attention(attention),
        attention,
    )
}

#[test]
fn decode_and_encode_equal_comfyui() {
    let reference = reference();
    let (vae, planned) = vae();
    // The CPU plans kiln-kernels' tiled attention for the VAE (ComfyUI: split, equal up to
    // rounding; the split kernel is compared separately below).
    assert_eq!(planned.kernel(), AttentionKernel::Fused);
    let image = vae.decode(&reference["decode.latent"]).unwrap();
    let diff = max_abs_diff(&image, &reference["decode.image"]);
    assert!(diff <= 1e-4, "decode: {diff}");
    let latent = vae.encode(&reference["encode.image"]).unwrap();
    let want = &reference["encode.latent"];
    let scale = want.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    let scale = scale.to_scalar::<f32>().unwrap().max(1.0);
    let diff = max_abs_diff(&latent, want);
    assert!(diff <= 1e-4 * scale, "encode: {diff}");
}

#[test]
fn every_attention_kernel_and_tight_memory_decode_the_same() {
    let reference = reference();
    let (vae, _) = vae();
    let latent = &reference["decode.latent"];
    let want = &reference["decode.image"];
    for kernel in [
        AttentionKernel::Plain,
        AttentionKernel::SubQuadratic,
        AttentionKernel::Fused,
        AttentionKernel::Flash,
    ] {
        let got = vae
            .clone()
            .with_attention(Attention::new(kernel))
            .decode(latent)
            .unwrap();
        assert!(max_abs_diff(&got, want) <= 1e-4, "{kernel:?}");
    }
    // A tiny budget makes split attention slice and decoding go one sample at a time.
    let tight = vae
        .with_attention(
            Attention::new(AttentionKernel::Split).with_split_rule(kiln_models::SplitRule::Vae),
        )
        .with_budget(MemoryBudget::Bytes(4096));
    let got = tight.decode(latent).unwrap();
    assert!(max_abs_diff(&got, want) <= 1e-4);
}
