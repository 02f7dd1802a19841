//! Parity with ComfyUI (fixtures in `tests/fixtures/unet_*.safetensors`, see the README there):
//! the raw UNet output and `BaseModel.apply_model`'s denoised latent of the tiny SD1, SD2-v,
//! SDXL and SDXL-refiner checkpoints at two sigmas, and SDXL's ADM vectors.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;
mod unet_support;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use kiln_models::{
    sdxl_adm, sdxl_refiner_adm, CfgDenoiser, GuidedCond, PromptKind, RefinerSize, SdxlSize, Unet,
};
use kiln_sampling::samplers::Denoiser;
use kiln_sampling::{ModelSampling, Prediction};
use kiln_test_checkpoints::{Family, Storage};
use support::{max_abs, max_abs_diff};
use unet_support::load_unet;

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.safetensors"));
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// `|a − b| ≤ 1e-4` absolute and relative to the reference's largest value.
fn assert_close(what: &str, got: &Tensor, reference: &Tensor) {
    assert_eq!(got.dims(), reference.dims(), "{what}");
    let difference = max_abs_diff(got, reference);
    let tolerance = 1e-4 * max_abs(reference).max(1.0);
    assert!(
        difference <= tolerance,
        "{what}: max |Δ| {difference} > {tolerance}"
    );
}

fn check_family(name: &str, family: Family, prediction: Prediction) {
    let tensors = fixture(&format!("unet_{name}"));
    let get = |key: &str| tensors[key].clone();
    let dir = tempfile::tempdir().unwrap();
    let unet: Unet = load_unet(family, Storage::F32, dir.path());
    let sampling = ModelSampling::discrete(prediction);
    let context = get("context");
    let y = tensors.get("y").cloned();
    for i in 0..2 {
        let sigma = get(&format!("sigma.{i}")).to_vec1::<f32>().unwrap()[0];
        let timestep = get(&format!("timestep.{i}"));
        assert_eq!(
            sampling.timestep(sigma),
            timestep.to_vec1::<f32>().unwrap()[0]
        );
        let output = unet
            .forward(&get(&format!("x_in.{i}")), &timestep, &context, y.as_ref())
            .unwrap();
        assert_close(
            &format!("{name} model_output.{i}"),
            &output,
            &get(&format!("model_output.{i}")),
        );

        let cond = GuidedCond::new(context.clone(), y.clone());
        let mut denoiser =
            CfgDenoiser::new(&unet, sampling.clone(), vec![cond], vec![], 1.0).unwrap();
        let denoised = denoiser.denoise(&get("x"), f64::from(sigma)).unwrap();
        assert_close(
            &format!("{name} denoised.{i}"),
            &denoised,
            &get(&format!("denoised.{i}")),
        );
    }
}

#[test]
fn sd1_matches_comfyui() {
    check_family("sd1", Family::Sd1, Prediction::Eps);
}

#[test]
fn sd2_v_matches_comfyui() {
    check_family("sd2v", Family::Sd2V, Prediction::V);
}

#[test]
fn sdxl_matches_comfyui() {
    check_family("sdxl", Family::Sdxl, Prediction::Eps);
}

#[test]
fn sdxl_refiner_matches_comfyui() {
    check_family("sdxl_refiner", Family::SdxlRefiner, Prediction::Eps);
}

#[test]
fn sdxl_adm_vectors_match_comfyui() {
    let unet = fixture("unet_sdxl");
    let pooled = &fixture("text_encoder_sdxl")["default.plain.pooled"];
    let default = sdxl_adm(pooled, &SdxlSize::for_latent(8, 8)).unwrap();
    assert_close(
        "adm.sampler_default",
        &default,
        &unet["adm.sampler_default"],
    );
    let explicit = SdxlSize {
        width: 1024.0,
        height: 768.0,
        crop_w: 16.0,
        crop_h: 8.0,
        target_width: 512.0,
        target_height: 640.0,
    };
    let explicit = sdxl_adm(pooled, &explicit).unwrap();
    assert_close("adm.explicit", &explicit, &unet["adm.explicit"]);

    let refiner = fixture("unet_sdxl_refiner");
    let pooled = &fixture("text_encoder_sdxl_refiner")["default.plain.pooled"];
    for (kind, key) in [
        (PromptKind::Positive, "adm.positive"),
        (PromptKind::Negative, "adm.negative"),
    ] {
        let adm = sdxl_refiner_adm(pooled, &RefinerSize::for_latent(8, 8, kind)).unwrap();
        assert_close(key, &adm, &refiner[key]);
    }
}
