//! Parity with ComfyUI (fixtures in `tests/fixtures/flux/`, written by
//! `scripts/reference/flux_fixtures.py`): the raw Flux transformer output of the tiny dev,
//! schnell and fill checkpoints on an odd-sized latent (circular padding + crop), and
//! `BaseModel.apply_model`'s denoised latent through [`CfgDenoiser`] with Flux model sampling
//! and the default guidance.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use kiln_detect::ComponentKind;
use kiln_models::{CfgDenoiser, Flux, GuidedCond, Weights};
use kiln_sampling::samplers::Denoiser;
use kiln_sampling::ModelSampling;
use kiln_test_checkpoints::{CheckpointSpec, Family, Packaging, Storage};
use support::{load_component, max_abs, max_abs_diff};

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flux")
        .join(format!("{name}.safetensors"));
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn load_flux(family: Family) -> Flux {
    let spec = CheckpointSpec::new(family, Storage::F32, Packaging::SingleFile);
    let (store, attention) = load_component(&spec, ComponentKind::DiffusionModel, "cpu");
    Flux::new(Weights::new(Arc::new(store)))
        .unwrap()
        .with_attention(attention)
}

/// `|a − b| ≤ 1e-5` relative to the reference's largest value (at least 1).
fn assert_close(what: &str, got: &Tensor, reference: &Tensor) {
    assert_eq!(got.dims(), reference.dims(), "{what}");
    let difference = max_abs_diff(got, reference);
    let tolerance = 1e-5 * max_abs(reference).max(1.0);
    assert!(
        difference <= tolerance,
        "{what}: max |Δ| {difference} > {tolerance}"
    );
}

fn check_forward(name: &str, family: Family) {
    let tensors = fixture(&format!("flux_{name}"));
    let flux = load_flux(family);
    let output = flux
        .forward(
            &tensors["forward.x"],
            &tensors["forward.timestep"],
            &tensors["forward.context"],
            Some(&tensors["forward.y"]),
            tensors.get("forward.guidance"),
        )
        .unwrap();
    assert_close(
        &format!("{name} forward"),
        &output,
        &tensors["forward.output"],
    );
}

fn check_denoise(name: &str, family: Family, sampling: ModelSampling) {
    let tensors = fixture(&format!("flux_{name}"));
    let flux = load_flux(family);
    let sigma = tensors["denoise.sigma"].to_vec1::<f32>().unwrap()[0];
    assert_eq!(sampling.timestep(sigma), sigma);
    let cond = GuidedCond::new(
        tensors["denoise.context"].clone(),
        Some(tensors["denoise.y"].clone()),
    );
    // No guidance set: the model's default 3.5, as ComfyUI's `extra_conds`.
    let mut denoiser = CfgDenoiser::new(&flux, sampling, vec![cond], vec![], 1.0).unwrap();
    let denoised = denoiser
        .denoise(&tensors["denoise.x"], f64::from(sigma))
        .unwrap();
    assert_close(
        &format!("{name} denoised"),
        &denoised,
        &tensors["denoise.denoised"],
    );
}

#[test]
fn dev_forward_matches_comfyui() {
    check_forward("dev", Family::FluxDev);
}

#[test]
fn schnell_forward_matches_comfyui() {
    check_forward("schnell", Family::FluxSchnell);
}

#[test]
fn fill_forward_matches_comfyui() {
    check_forward("fill", Family::FluxFill);
}

#[test]
fn dev_denoise_matches_comfyui_apply_model() {
    check_denoise("dev", Family::FluxDev, ModelSampling::flux_dev());
}

#[test]
fn schnell_denoise_matches_comfyui_apply_model() {
    check_denoise(
        "schnell",
        Family::FluxSchnell,
        ModelSampling::flux_schnell(),
    );
}

#[test]
fn guidance_changes_the_dev_prediction() {
    // The fixture's guidance is 2.5; the default 3.5 must give a different answer, so the
    // parity above is not blind to the guidance path.
    let tensors = fixture("flux_dev");
    let flux = load_flux(Family::FluxDev);
    let run = |guidance: f32| {
        flux.forward(
            &tensors["forward.x"],
            &tensors["forward.timestep"],
            &tensors["forward.context"],
            Some(&tensors["forward.y"]),
            Some(&Tensor::new(&[guidance], &Device::Cpu).unwrap()),
        )
        .unwrap()
    };
    let difference = max_abs_diff(&run(2.5), &run(3.5));
    assert!(difference > 1e-4, "{difference}");
}
