//! Public-API behaviour of a sampling run: edge cases of steps and denoise, progress reports,
//! interruption, and noise reproducibility.

mod common;

use std::ops::ControlFlow;

use candle_core::{DType, Device, Tensor};
use common::ToyDenoiser;
use kiln_sampling::samplers::{sampler_by_name, NoProgress, SamplerContext, StepInfo, SAMPLERS};
use kiln_sampling::schedulers::{calculate_sigmas, scheduler_by_name, Karras};
use kiln_sampling::{
    ksampler_sigmas, prepare_noise, sample, LatentFormat, ModelSampling, NormalKernel, Prediction,
    SamplingError, TorchCpuNoise,
};

const SHAPE: [usize; 4] = [1, 4, 3, 5];

fn run(
    model: &ModelSampling,
    sampler_name: &str,
    sigmas: &[f32],
    progress: &mut dyn kiln_sampling::samplers::Progress,
) -> kiln_sampling::Result<Tensor> {
    let sampler = sampler_by_name(sampler_name)?;
    let noise = prepare_noise(&SHAPE, 5, None, NormalKernel::Avx2)?;
    let latent = Tensor::zeros(&SHAPE, DType::F32, &Device::Cpu).map_err(|source| {
        SamplingError::Tensor {
            context: "test latent",
            source,
        }
    })?;
    let mut denoiser = ToyDenoiser::new(model, &SHAPE);
    let mut ctx = SamplerContext {
        denoiser: &mut denoiser,
        model_sampling: model,
        noise: &TorchCpuNoise::new(5),
        progress,
    };
    sample(
        sampler,
        &mut ctx,
        &noise,
        &latent,
        sigmas,
        &LatentFormat::SD15,
    )
}

#[test]
fn zero_steps_is_rejected() {
    let model = ModelSampling::discrete(Prediction::Eps);
    let euler = sampler_by_name("euler").unwrap();
    assert!(matches!(
        ksampler_sigmas(&model, &Karras, euler, 0, 1.0),
        Err(SamplingError::InvalidParameter { field: "steps", .. })
    ));
}

#[test]
fn one_step_runs_one_model_evaluation_for_euler() {
    let model = ModelSampling::discrete(Prediction::Eps);
    let sigmas =
        ksampler_sigmas(&model, &Karras, sampler_by_name("euler").unwrap(), 1, 1.0).unwrap();
    assert_eq!(sigmas.len(), 2);
    let mut steps = Vec::new();
    let mut progress = |info: &StepInfo<'_>| {
        steps.push((info.step, info.total));
        ControlFlow::Continue(())
    };
    let out = run(&model, "euler", &sigmas, &mut progress).unwrap();
    assert_eq!(steps, [(0, 1)]);
    assert_eq!(out.dims(), &SHAPE);
}

#[test]
fn every_sampler_survives_a_single_step() {
    for model in [
        ModelSampling::discrete(Prediction::Eps),
        ModelSampling::sd3(),
    ] {
        for sampler in SAMPLERS {
            let sigmas = ksampler_sigmas(&model, &Karras, *sampler, 1, 1.0).unwrap();
            let out = run(&model, sampler.name(), &sigmas, &mut NoProgress)
                .unwrap_or_else(|e| panic!("{}: {e}", sampler.name()));
            assert_eq!(out.dims(), &SHAPE, "{}", sampler.name());
        }
    }
}

#[test]
fn denoise_zero_returns_the_input_latent_untouched() {
    let model = ModelSampling::discrete(Prediction::Eps);
    let sigmas =
        ksampler_sigmas(&model, &Karras, sampler_by_name("euler").unwrap(), 20, 0.0).unwrap();
    assert!(sigmas.is_empty());
    let latent = Tensor::ones(&SHAPE, DType::F32, &Device::Cpu).unwrap();
    let noise = prepare_noise(&SHAPE, 5, None, NormalKernel::Avx2).unwrap();
    let mut denoiser = ToyDenoiser::new(&model, &SHAPE);
    let mut ctx = SamplerContext {
        denoiser: &mut denoiser,
        model_sampling: &model,
        noise: &TorchCpuNoise::new(5),
        progress: &mut NoProgress,
    };
    let out = sample(
        sampler_by_name("euler").unwrap(),
        &mut ctx,
        &noise,
        &latent,
        &sigmas,
        &LatentFormat::SD15,
    )
    .unwrap();
    assert_eq!(denoiser.calls, 0);
    let diff: f32 = (out - latent)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!(diff, 0.0);
}

#[test]
fn interrupt_stops_between_steps_with_a_typed_error() {
    let model = ModelSampling::discrete(Prediction::Eps);
    let sigmas = calculate_sigmas(&model, scheduler_by_name("normal").unwrap(), 10).unwrap();
    for name in ["euler", "dpmpp_2m_sde", "uni_pc"] {
        let mut seen = 0;
        let mut progress = |info: &StepInfo<'_>| {
            seen += 1;
            if info.step == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let err = run(&model, name, &sigmas, &mut progress).unwrap_err();
        assert!(
            matches!(err, SamplingError::Interrupted { step: 3, total: 10 }),
            "{name}: {err}"
        );
        assert_eq!(seen, 4, "{name}");
    }
}

#[test]
fn progress_sees_the_denoised_prediction() {
    let model = ModelSampling::discrete(Prediction::Eps);
    let sigmas = calculate_sigmas(&model, &Karras, 4).unwrap();
    let mut sigmas_seen = Vec::new();
    let mut progress = |info: &StepInfo<'_>| {
        assert_eq!(info.denoised.dims(), info.x.dims());
        sigmas_seen.push(info.sigma);
        ControlFlow::Continue(())
    };
    run(&model, "dpmpp_2m", &sigmas, &mut progress).unwrap();
    assert_eq!(sigmas_seen, sigmas[..4]);
}

#[test]
fn ancestral_noise_depends_on_the_seed() {
    let model = ModelSampling::discrete(Prediction::Eps);
    let sigmas = calculate_sigmas(&model, &Karras, 4).unwrap();
    let sampler = sampler_by_name("euler_ancestral").unwrap();
    let noise = prepare_noise(&SHAPE, 5, None, NormalKernel::Avx2).unwrap();
    let latent = Tensor::zeros(&SHAPE, DType::F32, &Device::Cpu).unwrap();
    let mut outputs = Vec::new();
    for seed in [5u64, 6, 5] {
        let mut denoiser = ToyDenoiser::new(&model, &SHAPE);
        let mut ctx = SamplerContext {
            denoiser: &mut denoiser,
            model_sampling: &model,
            noise: &TorchCpuNoise::new(seed),
            progress: &mut NoProgress,
        };
        let out = sample(
            sampler,
            &mut ctx,
            &noise,
            &latent,
            &sigmas,
            &LatentFormat::SD15,
        )
        .unwrap();
        outputs.push(out.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
    assert_eq!(outputs[0], outputs[2]);
    assert_ne!(outputs[0], outputs[1]);
}
