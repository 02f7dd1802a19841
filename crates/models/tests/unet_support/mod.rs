//! Shared by the UNet tests: tiny checkpoints from `kiln-test-checkpoints`, detected, planned for
//! the simulated CPU profile and loaded into a `Weights` handle, as the engine does.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use kiln_detect::{Checkpoint, ComponentKind};
use kiln_models::{Attention, Unet, Weights};
use kiln_runtime::{simulated_profile, AttentionKernel, PlanOptions, Planner, WeightStore};
use kiln_test_checkpoints::{write, CheckpointSpec, Family, Packaging, Storage};

/// The diffusion model of a freshly written tiny single-file checkpoint.
pub(crate) fn load_weights(family: Family, storage: Storage, dir: &Path) -> Weights {
    load_packaged(family, storage, Packaging::SingleFile, dir)
}

/// The diffusion model of a freshly written tiny checkpoint in `packaging`.
pub(crate) fn load_packaged(
    family: Family,
    storage: Storage,
    packaging: Packaging,
    dir: &Path,
) -> Weights {
    let spec = CheckpointSpec::new(family, storage, packaging);
    let path = write(&spec, dir).unwrap();
    let checkpoint = Checkpoint::open(&path).unwrap();
    let profile = simulated_profile("cpu").unwrap();
    let plan = Planner::new(PlanOptions::default(), profile.clone())
        .plan(checkpoint.detection())
        .unwrap();
    let component = plan.component(ComponentKind::DiffusionModel).unwrap();
    let store = WeightStore::load(&checkpoint, component, &profile, &Device::Cpu).unwrap();
    Weights::new(Arc::new(store))
}

/// The tiny UNet of `family`, plain attention.
pub(crate) fn load_unet(family: Family, storage: Storage, dir: &Path) -> Unet {
    let weights = load_weights(family, storage, dir);
    Unet::from_weights(&weights, Attention::new(AttentionKernel::Plain)).unwrap()
}

/// Deterministic values in [-1, 1) without an RNG: a fixed quadratic sequence.
pub(crate) fn pattern(shape: &[usize], offset: f32) -> Tensor {
    let count: usize = shape.iter().product();
    let values: Vec<f32> = (0..count)
        .map(|i| {
            let i = i as f32 + offset;
            ((i * 0.618_034 + i * i * 0.001_3).fract() * 2.0) - 1.0
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// The text context and (SDXL) ADM width a UNet expects.
pub(crate) fn context_for(unet: &Unet, batch: usize, tokens: usize, offset: f32) -> Tensor {
    pattern(&[batch, tokens, unet.config().context_dim], offset)
}

pub(crate) fn adm_for(unet: &Unet, batch: usize, offset: f32) -> Option<Tensor> {
    unet.config()
        .adm_in_channels
        .map(|adm| pattern(&[batch, adm], offset))
}

pub(crate) fn all_finite(t: &Tensor) -> bool {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|v| v.is_finite())
}
