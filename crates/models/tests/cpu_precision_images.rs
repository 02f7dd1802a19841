//! The CPU plans' precision choices, by the images they give. A 16-bit file held 16-bit on the
//! CPU and widened per layer gives exactly the image of the f32 copy ComfyUI makes
//! (`--force-fp32` here). Kiln's opt-in bf16 compute on CPUs with AVX512-BF16 against f32: the tiny SD1 checkpoint
//! planned for `cpu-avx512bf16` with `--bf16-unet --bf16-vae` (bf16 weights, bf16 matrix products
//! around f32 activations) samples and decodes an image within 35 dB PSNR of the plain f32 plan's
//! (same seed, conditioning, euler, CFG 7, 4 steps, 64×64).
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod unet_support;

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use kiln_detect::{Checkpoint, ComponentKind};
use kiln_models::{Attention, AutoencoderKl, CfgDenoiser, GuidedCond, Unet, VaeConfig, Weights};
use kiln_runtime::{simulated, ForcedDType, GlobalPrecision, PlanOptions, Planner, WeightStore};
use kiln_sampling::samplers::{sampler_by_name, NoProgress, SamplerContext};
use kiln_sampling::schedulers::scheduler_by_name;
use kiln_sampling::{
    ksampler_sigmas, prepare_noise, sample, LatentFormat, ModelSampling, NormalKernel, Prediction,
    TorchCpuNoise,
};
use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};
use unet_support::{all_finite, context_for, pattern};

const SEED: u64 = 42;
const LATENT_SHAPE: [usize; 4] = [1, 4, 8, 8];
const STEPS: usize = 4;
const CFG: f64 = 7.0;

/// The decoded image and the sampled latent of one run, with whether the plan chose bf16
/// products for the diffusion model and the VAE.
struct Run {
    image: Tensor,
    latent: Tensor,
    unet_bf16: bool,
    vae_bf16: bool,
}

/// Plans `checkpoint` for `profile` with `options`, loads the UNet and VAE as planned, and runs
/// txt2img: euler/normal, CFG 7, 4 steps, 64×64.
fn generate(checkpoint: &Checkpoint, profile: &str, options: PlanOptions) -> Run {
    generate_with(checkpoint, profile, options, false).0
}

/// [`generate`], with the UNet and the VAE held in use while they run when `in_use` (as the
/// nodes hold them: forms derived from weights are then kept between steps), and the number
/// of forms the UNet's store kept by the end of sampling.
fn generate_with(
    checkpoint: &Checkpoint,
    profile: &str,
    options: PlanOptions,
    in_use: bool,
) -> (Run, usize) {
    let planner = Planner::new(options, simulated(profile).unwrap());
    let plan = planner.plan(checkpoint.detection()).unwrap();
    let load = |kind: ComponentKind| {
        let part = plan.component(kind).unwrap();
        let store = WeightStore::load(
            checkpoint,
            part,
            planner.profile_for(part.device),
            &Device::Cpu,
        )
        .unwrap();
        let store = Arc::new(store);
        (
            Weights::new(store.clone()),
            Attention::from_plan(part),
            part.bf16_products,
            store,
        )
    };
    let (unet_weights, unet_attention, unet_bf16, unet_store) = load(ComponentKind::DiffusionModel);
    let unet = Unet::from_weights(&unet_weights, unet_attention).unwrap();
    let (vae_weights, vae_attention, vae_bf16, _) = load(ComponentKind::Vae);
    let vae_in_use = vae_weights.clone();
    let config = VaeConfig::from_weights(&vae_weights).unwrap();
    let vae = AutoencoderKl::new(vae_weights, config)
        .unwrap()
        .with_attention(vae_attention);

    let sampling = ModelSampling::discrete(Prediction::Eps);
    let sampler = sampler_by_name("euler").unwrap();
    let scheduler = scheduler_by_name("normal").unwrap();
    let sigmas = ksampler_sigmas(&sampling, scheduler, sampler, STEPS, 1.0).unwrap();
    let noise = prepare_noise(&LATENT_SHAPE, SEED, None, NormalKernel::Avx2).unwrap();
    let empty = Tensor::zeros(&LATENT_SHAPE[..], DType::F32, &Device::Cpu).unwrap();
    // A fixed conditioning stands in for the prompt: both runs see the same f32 text encoding.
    let positive = GuidedCond::new(context_for(&unet, 1, 77, 0.0), None);
    let negative = GuidedCond::new(pattern(&[1, 77, unet.config().context_dim], 3.5), None);
    let mut denoiser =
        CfgDenoiser::new(&unet, sampling.clone(), vec![positive], vec![negative], CFG).unwrap();
    let mut ctx = SamplerContext {
        denoiser: &mut denoiser,
        model_sampling: &sampling,
        noise: &TorchCpuNoise::new(SEED),
        progress: &mut NoProgress,
    };
    let unet_guard = in_use.then(|| unet_weights.in_use());
    let latent = sample(
        sampler,
        &mut ctx,
        &noise,
        &empty,
        &sigmas,
        &LatentFormat::SD15,
    )
    .unwrap();
    let kept = unet_store.prepared_count();
    drop(unet_guard);
    let image = {
        let _vae_guard = in_use.then(|| vae_in_use.in_use());
        vae.decode(&latent).unwrap()
    };
    let run = Run {
        image,
        latent,
        unet_bf16,
        vae_bf16,
    };
    (run, kept)
}

/// Peak signal-to-noise ratio of two images in [0, 1], in dB.
fn psnr(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mse = a
        .iter()
        .zip(&b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (1.0 / mse.max(1e-20)).log10()
}

#[test]
fn bf16_cpu_image_matches_f32_within_35_db() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F32, Packaging::SingleFile);
    let checkpoint = Checkpoint::open(write(&spec, dir.path()).unwrap()).unwrap();

    let flags = PlanOptions {
        unet_dtype: Some(ForcedDType::BF16),
        vae_dtype: Some(ForcedDType::BF16),
        ..PlanOptions::default()
    };
    let bf16 = generate(&checkpoint, "cpu-avx512bf16", flags);
    let f32 = generate(&checkpoint, "cpu", PlanOptions::default());

    assert!(bf16.unet_bf16 && bf16.vae_bf16);
    assert!(!f32.unet_bf16 && !f32.vae_bf16);
    assert!(all_finite(&bf16.latent) && all_finite(&f32.latent));
    assert_eq!(bf16.image.dims(), [1, 64, 64, 3]);
    // The two runs must differ (bf16 really ran) yet stay close.
    let db = psnr(&bf16.image, &f32.image);
    assert!(db.is_finite() && db < 150.0, "identical images: {db} dB");
    assert!(db >= 35.0, "bf16 image is {db:.1} dB from the f32 one");
    eprintln!("bf16 vs f32 PSNR: {db:.1} dB");
}

#[test]
fn sixteen_bit_weights_held_on_the_cpu_give_the_f32_copys_image_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for storage in [Storage::F16, Storage::BF16] {
        let spec = CheckpointSpec::new(Family::Sd1, storage, Packaging::SingleFile);
        let checkpoint = Checkpoint::open(write(&spec, dir.path()).unwrap()).unwrap();
        let plan = Planner::new(PlanOptions::default(), simulated("cpu").unwrap())
            .plan(checkpoint.detection())
            .unwrap();
        let unet = plan.component(ComponentKind::DiffusionModel).unwrap();
        assert!(unet.storage_dtype.name().ends_with("16"), "{}", unet.reason);
        let held = generate(&checkpoint, "cpu", PlanOptions::default());
        let widened_first = PlanOptions {
            precision: GlobalPrecision::ForceFp32,
            ..PlanOptions::default()
        };
        let f32_copy = generate(&checkpoint, "cpu", widened_first);
        assert!(all_finite(&held.latent));
        let values = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(
            values(&held.latent),
            values(&f32_copy.latent),
            "{storage:?}"
        );
        assert_eq!(values(&held.image), values(&f32_copy.image), "{storage:?}");
    }
}

/// With bf16 products, a UNet in use packs each weight once and keeps it for the later steps
/// (`WeightStore::prepared`): the image is exactly the one packing per call gives.
#[test]
fn weights_kept_packed_between_steps_give_the_per_call_image_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CheckpointSpec::new(Family::Sd1, Storage::F16, Packaging::SingleFile);
    let checkpoint = Checkpoint::open(write(&spec, dir.path()).unwrap()).unwrap();
    let flags = || PlanOptions {
        unet_dtype: Some(ForcedDType::BF16),
        vae_dtype: Some(ForcedDType::BF16),
        ..PlanOptions::default()
    };
    let (per_call, none_kept) = generate_with(&checkpoint, "cpu-avx512bf16", flags(), false);
    let (kept, kept_forms) = generate_with(&checkpoint, "cpu-avx512bf16", flags(), true);
    assert_eq!(none_kept, 0);
    if kiln_kernels::bf16_compute_available() {
        assert!(kept_forms > 0, "no weight was kept packed");
    }
    let values = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(values(&kept.latent), values(&per_call.latent));
    assert_eq!(values(&kept.image), values(&per_call.image));
}
