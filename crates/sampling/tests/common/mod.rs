//! Shared helpers for the fixture tests: loading the JSON/binary fixtures written by
//! `scripts/reference/sampling_fixtures.py`, and the toy denoiser defined identically there.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use serde_json::Value;

/// The fixtures directory.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// A parsed JSON fixture.
pub fn load_json(name: &str) -> Value {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `[u32]` bit patterns of f32 values.
pub fn bits(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// f32 values from their bit patterns.
pub fn floats(value: &Value) -> Vec<f32> {
    bits(value).into_iter().map(f32::from_bits).collect()
}

/// A usize list.
pub fn usizes(value: &Value) -> Vec<usize> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect()
}

/// FNV-1a 64 over the little-endian bytes of the words, as the fixture script computes it.
pub fn fnv1a64(words: &[u32]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for word in words {
        for byte in word.to_le_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The model sampling a fixture entry describes (`model_sampling.json`).
pub fn model_sampling_from(desc: &Value) -> kiln_sampling::ModelSampling {
    use kiln_sampling::{ModelSampling, Prediction, SigmaSchedule};
    let prediction = match desc["prediction"].as_str().unwrap() {
        "eps" => Prediction::Eps,
        "v" => Prediction::V,
        "const" => Prediction::Const,
        other => panic!("prediction {other}"),
    };
    let schedule = match desc["kind"].as_str().unwrap() {
        "discrete" => SigmaSchedule::Discrete {
            linear_start: 0.00085,
            linear_end: 0.012,
            timesteps: 1000,
        },
        "discrete_flow" => SigmaSchedule::DiscreteFlow {
            shift: desc["shift"].as_f64().unwrap(),
            multiplier: desc["multiplier"].as_f64().unwrap(),
        },
        "flux" => SigmaSchedule::Flux {
            shift: desc["shift"].as_f64().unwrap(),
        },
        other => panic!("kind {other}"),
    };
    ModelSampling::new(schedule, prediction).unwrap()
}

/// The model samplings of `model_sampling.json`, by fixture name.
pub fn model_samplings() -> std::collections::BTreeMap<String, kiln_sampling::ModelSampling> {
    load_json("model_sampling.json")
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, desc)| (name.clone(), model_sampling_from(desc)))
        .collect()
}

/// Largest `|a - b| / max(|b|, 1e-30)` over two float slices, NaNs equal to NaNs.
pub fn max_relative_error(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "length: got {got:?}, want {want:?}");
    got.iter()
        .zip(want)
        .map(|(&g, &w)| {
            if g.is_nan() && w.is_nan() || g == w {
                0.0
            } else {
                (f64::from(g) - f64::from(w)).abs() / f64::from(w).abs().max(1e-30)
            }
        })
        .fold(0.0, f64::max)
}

/// The toy denoiser of the fixture script: raw output
/// `x_in · 0.6 / (1 + 0.05 σ) + 0.3 · pattern` through the model sampling's input/denoised maps.
pub struct ToyDenoiser<'a> {
    pub model: &'a kiln_sampling::ModelSampling,
    pub pattern: candle_core::Tensor,
    pub calls: usize,
}

/// `pattern[i] = ((i * 37) % 17 - 8) / 8` over the flattened latent.
pub fn toy_pattern(shape: &[usize]) -> candle_core::Tensor {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|i| (((i * 37) % 17) as f32 - 8.0) / 8.0)
        .collect();
    candle_core::Tensor::from_vec(values, shape, &candle_core::Device::Cpu).unwrap()
}

impl<'a> ToyDenoiser<'a> {
    pub fn new(model: &'a kiln_sampling::ModelSampling, shape: &[usize]) -> Self {
        Self {
            model,
            pattern: (toy_pattern(shape) * 0.3).unwrap(),
            calls: 0,
        }
    }
}

impl kiln_sampling::samplers::Denoiser for ToyDenoiser<'_> {
    fn denoise(
        &mut self,
        x: &candle_core::Tensor,
        sigma: f64,
    ) -> kiln_sampling::Result<candle_core::Tensor> {
        self.calls += 1;
        let sigma = sigma as f32;
        let x_in = self.model.calculate_input(sigma, x)?;
        // `0.6 / t` on a tensor is `reciprocal(t) * 0.6` in torch.
        let gain = (1.0 / (1.0 + 0.05 * sigma)) * 0.6;
        let out = (x_in.affine(f64::from(gain), 0.0).unwrap() + &self.pattern).unwrap();
        self.model.calculate_denoised(sigma, &out, x)
    }
}

/// Little-endian f32 values of a fixture binary file.
pub fn load_f32_bin(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixtures_dir().join(name)).unwrap();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
