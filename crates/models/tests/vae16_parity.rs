//! The 16-channel AutoencoderKL of SD3 and Flux against ComfyUI's (fixtures in
//! `tests/fixtures/vae16/`, written by `scripts/reference/mmdit_fixtures.py`): the VAE inside the
//! tiny SD3 medium checkpoint and the standalone tiny Flux `ae.safetensors` (also in diffusers
//! naming), decode and encode.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use kiln_detect::ComponentKind;
use kiln_models::{AutoencoderKl, VaeConfig, Weights};
use kiln_test_checkpoints::{CheckpointSpec, Family, Packaging, Storage};
use support::{load_component, max_abs, max_abs_diff};

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vae16")
        .join(format!("{name}.safetensors"));
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn check(name: &str, family: Family, packaging: Packaging) {
    let reference = fixture(name);
    let spec = CheckpointSpec::new(family, Storage::F32, packaging);
    let (store, attention) = load_component(&spec, ComponentKind::Vae, "cpu");
    let weights = Weights::new(Arc::new(store));
    let config = VaeConfig::from_weights(&weights).unwrap();
    assert_eq!(
        config,
        VaeConfig {
            ch: 32,
            ..VaeConfig::flux()
        }
    );
    let vae = AutoencoderKl::new(weights, config)
        .unwrap()
        .with_attention(attention);

    let image = vae.decode(&reference["decode.latent"]).unwrap();
    let diff = max_abs_diff(&image, &reference["decode.image"]);
    assert!(diff <= 1e-5, "{name} decode: {diff}");

    let latent = vae.encode(&reference["encode.image"]).unwrap();
    let want = &reference["encode.latent"];
    assert_eq!(latent.dims(), &[1, 16, 8, 8]);
    let diff = max_abs_diff(&latent, want);
    let bound = 1e-5 * max_abs(want).max(1.0);
    assert!(diff <= bound, "{name} encode: {diff} > {bound}");
}

#[test]
fn sd3_checkpoint_vae_matches_comfyui() {
    check("vae16_sd3", Family::Sd3Medium, Packaging::SingleFile);
}

#[test]
fn flux_ae_matches_comfyui() {
    check("vae16_flux", Family::Vae16, Packaging::Standalone);
}

/// The same weights in diffusers naming (`vae/diffusion_pytorch_model.safetensors`), mapped to
/// LDM naming by `kiln-detect`, decode and encode identically.
#[test]
fn flux_ae_in_diffusers_layout_matches_comfyui() {
    check("vae16_flux", Family::Vae16, Packaging::Diffusers);
}
