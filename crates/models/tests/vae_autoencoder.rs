//! AutoencoderKL on tiny checkpoints: configuration from the weights (4- and 16-channel), image
//! layout and cropping, f16 files and f16 compute, and tiled decoding/encoding.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use kiln_detect::ComponentKind;
use kiln_models::{AutoencoderKl, Tiling, VaeConfig, Weights};
use kiln_runtime::WeightStore;
use kiln_test_checkpoints::{CheckpointSpec, Family, Packaging, Storage};
use support::{load_component, max_abs_diff};

fn store(family: Family, storage: Storage) -> WeightStore {
    let spec = CheckpointSpec::new(family, storage, Packaging::Standalone);
    load_component(&spec, ComponentKind::Vae, "cpu").0
}

fn vae(store: WeightStore) -> AutoencoderKl {
    let weights = Weights::new(Arc::new(store));
    let config = VaeConfig::from_weights(&weights).unwrap();
    AutoencoderKl::new(weights, config).unwrap()
}

/// A smooth deterministic test image `[1, h, w, 3]` in 0..1.
fn image(h: usize, w: usize, channels: usize) -> Tensor {
    let values: Vec<f32> = (0..h * w * channels)
        .map(|i| {
            let (y, x, c) = (i / (w * channels), (i / channels) % w, i % channels);
            0.5 + 0.4 * ((x as f32 * 0.21 + c as f32).sin() * (y as f32 * 0.13).cos())
        })
        .collect();
    Tensor::from_vec(values, (1, h, w, channels), &Device::Cpu).unwrap()
}

fn latent(channels: usize, h: usize, w: usize) -> Tensor {
    let values: Vec<f32> = (0..channels * h * w)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 2.0)
        .collect();
    Tensor::from_vec(values, (1, channels, h, w), &Device::Cpu).unwrap()
}

fn mean_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn sixteen_channel_vae_has_no_quant_convs_and_round_trips_shapes() {
    let vae = vae(store(Family::Vae16, Storage::F32));
    assert_eq!(
        vae.config(),
        &VaeConfig {
            ch: 32,
            ..VaeConfig::flux()
        }
    );
    assert_eq!(vae.config().downscale(), 8);
    let decoded = vae.decode(&latent(16, 4, 6)).unwrap();
    assert_eq!(decoded.dims(), [1, 32, 48, 3]);
    let values = decoded.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
    let encoded = vae.encode(&image(32, 48, 3)).unwrap();
    assert_eq!(encoded.dims(), [1, 16, 4, 6]);
    assert_eq!(encoded.dtype(), DType::F32);
    // A 4-channel latent does not fit.
    assert!(vae.decode(&latent(4, 4, 4)).is_err());
}

#[test]
fn encode_drops_alpha_and_center_crops_to_multiples_of_eight() {
    let vae = vae(store(Family::Vae4, Storage::F32));
    let rgba = image(37, 45, 4);
    let got = vae.encode(&rgba).unwrap();
    assert_eq!(got.dims(), [1, 4, 4, 5]);
    // ComfyUI crops (37 % 8) / 2 = 2 rows and (45 % 8) / 2 = 2 columns from the top left.
    let cropped = rgba
        .narrow(1, 2, 32)
        .unwrap()
        .narrow(2, 2, 40)
        .unwrap()
        .narrow(3, 0, 3)
        .unwrap();
    let want = vae.encode(&cropped).unwrap();
    assert_eq!(max_abs_diff(&got, &want), 0.0);
    assert!(vae.encode(&image(4, 16, 3)).is_err());
    assert!(vae.encode(&image(16, 16, 2)).is_err());
}

#[test]
fn f16_storage_and_f16_compute_stay_close_to_f32() {
    let reference = vae(store(Family::Vae4, Storage::F32));
    let z = latent(4, 4, 4);
    let want = reference.decode(&z).unwrap();

    // An f16 file: the CPU plan computes the VAE in f32, so its values are f16-rounded f32.
    let half_store = store(Family::Vae4, Storage::F16);
    let half_weights = vae(half_store);
    let got = half_weights.decode(&z).unwrap();
    let diff = max_abs_diff(&got, &want);
    assert!(diff > 0.0 && diff < 1e-2, "f16 storage: {diff}");

    // The whole network in f16 (GroupNorm statistics still in f32).
    let f32_store = store(Family::Vae4, Storage::F32);
    let tensors: BTreeMap<String, Tensor> = f32_store
        .names()
        .map(|name| (name.to_string(), f32_store.get(name).unwrap()))
        .collect();
    let f16_compute =
        WeightStore::from_tensors(ComponentKind::Vae, DType::F16, &Device::Cpu, tensors).unwrap();
    let f16_vae = vae(f16_compute);
    assert_eq!(f16_vae.dtype(), DType::F16);
    let got = f16_vae.decode(&z).unwrap();
    assert_eq!(got.dtype(), DType::F32);
    let diff = max_abs_diff(&got, &want);
    assert!(diff < 5e-2, "f16 compute: {diff}");
    let encoded = f16_vae.encode(&image(32, 32, 3)).unwrap();
    let diff = max_abs_diff(&encoded, &reference.encode(&image(32, 32, 3)).unwrap());
    assert!(diff < 5e-2, "f16 encode: {diff}");
}

#[test]
fn tiles_covering_the_input_reproduce_plain_decoding_and_encoding() {
    let vae = vae(store(Family::Vae4, Storage::F32));
    let z = latent(4, 4, 6);
    let plain = vae.decode(&z).unwrap();
    // Every one of the three tilings holds the whole 4×6 latent in one tile.
    let tiled = vae
        .decode_tiled(
            &z,
            Tiling {
                tile_x: 16,
                tile_y: 16,
                overlap: 2,
            },
        )
        .unwrap();
    assert!(max_abs_diff(&tiled, &plain) < 1e-5);
    let pixels = image(32, 48, 3);
    let plain = vae.encode(&pixels).unwrap();
    let tiled = vae.encode_tiled(&pixels, Tiling::encode_default()).unwrap();
    assert!(max_abs_diff(&tiled, &plain) < 1e-5);
}

#[test]
fn many_tiles_blend_into_the_full_size() {
    let vae = vae(store(Family::Vae4, Storage::F32));
    let z = latent(4, 12, 10);
    let plain = vae.decode(&z).unwrap();
    let tiling = Tiling::from_decode_node(64, 32, 8);
    assert_eq!(
        tiling,
        Tiling {
            tile_x: 8,
            tile_y: 8,
            overlap: 2
        },
        "overlap clamped to a quarter tile"
    );
    let tiled = vae.decode_tiled(&z, tiling).unwrap();
    assert_eq!(tiled.dims(), [1, 96, 80, 3]);
    let values = tiled.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
    // Tiles see less context than the whole latent, so the images differ, but not wildly.
    let diff = mean_diff(&tiled, &plain);
    assert!(diff > 1e-4 && diff < 0.1, "{diff}");

    let pixels = image(80, 64, 3);
    let plain = vae.encode(&pixels).unwrap();
    let tiled = vae
        .encode_tiled(
            &pixels,
            Tiling {
                tile_x: 32,
                tile_y: 32,
                overlap: 8,
            },
        )
        .unwrap();
    assert_eq!(tiled.dims(), [1, 4, 10, 8]);
    let diff = mean_diff(&tiled, &plain);
    assert!(diff > 1e-5 && diff < 0.5, "{diff}");
}
