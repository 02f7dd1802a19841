//! `CfgDenoiser` over tiny UNets: the CFG formula against direct model calls, cfg 1 skipping
//! the negative side, batched evaluation equal to separate calls, areas with strength and
//! feathering, area pairing, timestep ranges, and contexts of different lengths.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;
mod unet_support;

use candle_core::{Device, Tensor};
use kiln_models::{CfgDenoiser, CondBatching, GuidedCond, LatentArea, Unet};
use kiln_sampling::samplers::Denoiser;
use kiln_sampling::{ModelSampling, Prediction};
use kiln_test_checkpoints::{Family, Storage};
use support::max_abs_diff;
use unet_support::{adm_for, context_for, load_unet, pattern};

fn sampling() -> ModelSampling {
    ModelSampling::discrete(Prediction::Eps)
}

fn cond(unet: &Unet, tokens: usize, offset: f32) -> GuidedCond {
    GuidedCond::new(
        context_for(unet, 1, tokens, offset),
        adm_for(unet, 1, offset + 0.5),
    )
}

/// `BaseModel.apply_model` by hand: `x − ε(x/√(σ²+1), t(σ))·σ`.
fn direct(unet: &Unet, x: &Tensor, sigma: f32, cond: &GuidedCond) -> Tensor {
    let sampling = sampling();
    let batch = x.dim(0).unwrap();
    let scaled = (x / f64::from((sigma * sigma + 1.0).sqrt())).unwrap();
    let t = Tensor::full(sampling.timestep(sigma), batch, &Device::Cpu).unwrap();
    let context = cond.context.repeat((batch, 1, 1)).unwrap();
    let y = cond.y.as_ref().map(|y| y.repeat((batch, 1)).unwrap());
    let eps = unet.forward(&scaled, &t, &context, y.as_ref()).unwrap();
    (x - (eps * f64::from(sigma)).unwrap()).unwrap()
}

#[test]
fn cfg_one_runs_the_positive_side_only() {
    let dir = tempfile::tempdir().unwrap();
    let unet = load_unet(Family::Sd1, Storage::F32, dir.path());
    let x = pattern(&[1, 4, 8, 8], 0.0);
    let (positive, negative) = (cond(&unet, 4, 1.0), cond(&unet, 4, 2.0));
    let mut denoiser = CfgDenoiser::new(
        &unet,
        sampling(),
        vec![positive.clone()],
        vec![negative],
        1.0,
    )
    .unwrap();
    let out = denoiser.denoise(&x, 3.0).unwrap();
    assert_eq!(denoiser.evaluations(), 1);
    assert!(max_abs_diff(&out, &direct(&unet, &x, 3.0, &positive)) < 1e-5);
}

#[test]
fn cfg_combines_cond_and_uncond_batched_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let unet = load_unet(Family::Sd2, Storage::F32, dir.path());
    let x = pattern(&[2, 4, 8, 8], 0.5);
    let sigma = 5.0f32;
    let (positive, negative) = (cond(&unet, 4, 1.0), cond(&unet, 4, 2.0));
    let cfg = 7.5;

    let mut batched = CfgDenoiser::new(
        &unet,
        sampling(),
        vec![positive.clone()],
        vec![negative.clone()],
        cfg,
    )
    .unwrap();
    let together = batched.denoise(&x, f64::from(sigma)).unwrap();
    assert_eq!(batched.evaluations(), 1);

    let mut separate = CfgDenoiser::new(
        &unet,
        sampling(),
        vec![positive.clone()],
        vec![negative.clone()],
        cfg,
    )
    .unwrap()
    .with_batching(CondBatching::AtMost(1));
    let apart = separate.denoise(&x, f64::from(sigma)).unwrap();
    assert_eq!(separate.evaluations(), 2);
    assert!(max_abs_diff(&together, &apart) < 1e-4);

    let cond_out = direct(&unet, &x, sigma, &positive);
    let uncond_out = direct(&unet, &x, sigma, &negative);
    let expected = (&uncond_out + ((&cond_out - &uncond_out).unwrap() * cfg).unwrap()).unwrap();
    // cfg 7.5 amplifies rounding differences between the denoiser's input scaling and the
    // hand-written one: compare relative to the output's size.
    let scale = expected
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let diff = max_abs_diff(&apart, &expected);
    assert!(diff < 1e-4 * scale.max(1.0), "{diff} (output max {scale})");
}

#[test]
fn sdxl_batches_adm_vectors_with_their_contexts() {
    let dir = tempfile::tempdir().unwrap();
    let unet = load_unet(Family::Sdxl, Storage::F32, dir.path());
    let x = pattern(&[1, 4, 8, 8], 0.25);
    let (positive, negative) = (cond(&unet, 3, 1.0), cond(&unet, 3, 4.0));
    let mut batched = CfgDenoiser::new(
        &unet,
        sampling(),
        vec![positive.clone()],
        vec![negative.clone()],
        4.0,
    )
    .unwrap();
    let together = batched.denoise(&x, 1.0).unwrap();
    assert_eq!(batched.evaluations(), 1);
    let cond_out = direct(&unet, &x, 1.0, &positive);
    let uncond_out = direct(&unet, &x, 1.0, &negative);
    let expected = (&uncond_out + ((&cond_out - &uncond_out).unwrap() * 4.0).unwrap()).unwrap();
    assert!(max_abs_diff(&together, &expected) < 1e-4);
}

#[test]
fn contexts_of_different_lengths_batch_by_tiling() {
    let dir = tempfile::tempdir().unwrap();
    let unet = load_unet(Family::Sd1, Storage::F32, dir.path());
    let x = pattern(&[1, 4, 8, 8], 0.75);
    let (positive, negative) = (cond(&unet, 3, 1.0), cond(&unet, 6, 2.0));
    let mut batched = CfgDenoiser::new(
        &unet,
        sampling(),
        vec![positive.clone()],
        vec![negative.clone()],
        3.0,
    )
    .unwrap();
    let together = batched.denoise(&x, 2.0).unwrap();
    assert_eq!(batched.evaluations(), 1);
    let mut separate = CfgDenoiser::new(&unet, sampling(), vec![positive], vec![negative], 3.0)
        .unwrap()
        .with_batching(CondBatching::AtMost(1));
    let apart = separate.denoise(&x, 2.0).unwrap();
    assert!(max_abs_diff(&together, &apart) < 1e-4);
}

#[test]
fn area_entries_are_weighted_and_feathered() {
    let dir = tempfile::tempdir().unwrap();
    let unet = load_unet(Family::Sd1, Storage::F32, dir.path());
    let x = pattern(&[1, 4, 16, 16], 0.1);
    let sigma = 2.0f32;
    let full = cond(&unet, 4, 1.0);
    let area = LatentArea::from_pixels(64, 64, 0, 0);
    assert_eq!(
        area,
        LatentArea {
            height: 8,
            width: 8,
            y: 0,
            x: 0
        }
    );
    let local = GuidedCond {
        area: Some(area),
        strength: 0.5,
        ..cond(&unet, 4, 3.0)
    };
    let mut denoiser = CfgDenoiser::new(
        &unet,
        sampling(),
        vec![full.clone(), local.clone()],
        vec![cond(&unet, 4, 2.0)],
        1.0,
    )
    .unwrap();
    // The area entry got a negative partner of the same area.
    assert_eq!(denoiser.entry_counts(), (2, 2));
    let out = denoiser.denoise(&x, f64::from(sigma)).unwrap();
    // Different crops cannot share a batch; the negative side is skipped.
    assert_eq!(denoiser.evaluations(), 2);

    let full_out = direct(&unet, &x, sigma, &full);
    let crop = x.narrow(2, 0, 8).unwrap().narrow(3, 0, 8).unwrap();
    let local_out = direct(&unet, &crop, sigma, &local);
    // Outside the area only the full entry counts.
    let right = |t: &Tensor| t.narrow(3, 8, 8).unwrap();
    assert!(max_abs_diff(&right(&out), &right(&full_out)) < 1e-5);
    // Inside, away from the feathered far edges (2 cells: min(8, 8/4)), weights 1 and 0.5.
    let inner = |t: &Tensor| t.narrow(2, 0, 6).unwrap().narrow(3, 0, 6).unwrap();
    let mixed = ((inner(&full_out) + (inner(&local_out) * 0.5).unwrap()).unwrap() / 1.5).unwrap();
    assert!(max_abs_diff(&inner(&out), &mixed) < 1e-5);
    // The last row of the area is weighted 0.5 · 0.5 (feather step 1 of 2).
    let row = |t: &Tensor| t.narrow(2, 7, 1).unwrap().narrow(3, 0, 6).unwrap();
    let edge = ((row(&full_out) + (row(&local_out) * 0.25).unwrap()).unwrap() / 1.25).unwrap();
    assert!(max_abs_diff(&row(&out), &edge) < 1e-5);
}

#[test]
fn timestep_ranges_switch_entries_on_and_off() {
    let dir = tempfile::tempdir().unwrap();
    let unet = load_unet(Family::Sd1, Storage::F32, dir.path());
    let x = pattern(&[1, 4, 8, 8], 0.2);
    let base = cond(&unet, 4, 1.0);
    let late = GuidedCond {
        start_percent: 0.5,
        ..cond(&unet, 4, 5.0)
    };
    let model_sampling = sampling();
    let early_sigma = f64::from(model_sampling.sigma_max());
    let late_sigma = model_sampling.percent_to_sigma(0.9);

    let mut denoiser = CfgDenoiser::new(
        &unet,
        sampling(),
        vec![base.clone(), late.clone()],
        vec![],
        1.0,
    )
    .unwrap();
    let early = denoiser.denoise(&x, early_sigma).unwrap();
    let alone = direct(&unet, &x, early_sigma as f32, &base);
    // Rounding in ε is multiplied by σ ≈ 14.6 here.
    assert!(max_abs_diff(&early, &alone) < 1e-5 * early_sigma as f32);
    assert_eq!(denoiser.evaluations(), 1);

    let later = denoiser.denoise(&x, late_sigma).unwrap();
    let base_out = direct(&unet, &x, late_sigma as f32, &base);
    let late_out = direct(&unet, &x, late_sigma as f32, &late);
    let average = ((base_out + late_out).unwrap() / 2.0).unwrap();
    assert!(max_abs_diff(&later, &average) < 1e-5);
}

#[test]
fn model_failures_surface_as_denoiser_errors() {
    let dir = tempfile::tempdir().unwrap();
    let unet = load_unet(Family::Sd1, Storage::F32, dir.path());
    // A context of the wrong width reaches the model, which rejects it.
    let wrong = GuidedCond::new(pattern(&[1, 4, 7], 0.0), None);
    let mut denoiser = CfgDenoiser::new(&unet, sampling(), vec![wrong], vec![], 1.0).unwrap();
    let error = denoiser
        .denoise(&pattern(&[1, 4, 8, 8], 0.0), 1.0)
        .unwrap_err();
    assert!(matches!(
        error,
        kiln_sampling::SamplingError::Denoiser { .. }
    ));
}
