//! `BrownianTreeNoise` against ComfyUI's `BrownianTreeNoiseSampler` (torchsde `BrownianTree`).
//!
//! The Brownian increments themselves are bit-exact; the final division by `√|Δσ|` uses torch's
//! float32 `sqrt`, which on x86 goes through MKL's vector math and is not always correctly
//! rounded, so the comparison allows two units in the last place.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{floats, load_json, usizes};
use kiln_sampling::{BrownianTreeNoise, NoiseSource, NormalKernel};

/// Two float32 ulps, relative.
const TOLERANCE: f64 = 2.5e-7;

#[test]
fn brownian_noise_matches_torchsde() {
    let fixture = load_json("brownian.json");
    let mut exact = 0;
    let mut total = 0;
    for case in fixture["cases"].as_array().unwrap() {
        let seed = case["seed"].as_u64().unwrap();
        let shape = usizes(&case["shape"]);
        let x = Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu).unwrap();
        let from_bits = |v: &serde_json::Value| f32::from_bits(v.as_u64().unwrap() as u32);
        let (sigma_min, sigma_max) = (
            from_bits(&case["sigma_min_bits"]),
            from_bits(&case["sigma_max_bits"]),
        );
        let mut noise =
            BrownianTreeNoise::new(&x, sigma_min, sigma_max, seed, NormalKernel::Avx2).unwrap();
        for (q, query) in case["queries"].as_array().unwrap().iter().enumerate() {
            let (sigma, sigma_next) = (
                from_bits(&query["sigma_bits"]),
                from_bits(&query["sigma_next_bits"]),
            );
            let got: Vec<f32> = noise
                .noise(sigma, sigma_next)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let want = floats(&query["bits"]);
            let error = common::max_relative_error(&got, &want);
            assert!(
                error <= TOLERANCE,
                "seed {seed} query {q} ({sigma} -> {sigma_next}): relative error {error}"
            );
            total += 1;
            exact += usize::from(
                got.iter()
                    .zip(&want)
                    .all(|(g, w)| g.to_bits() == w.to_bits()),
            );
        }
    }
    // Most queries divide by a square root torch happens to round correctly.
    assert!(
        exact * 2 > total,
        "only {exact} of {total} queries bit-exact"
    );
}
