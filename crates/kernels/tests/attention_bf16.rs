//! `attention_with(.., Products::Bf16)` against an f64 reference of the same bf16-rounded q, k, v.
//!
//! The rounding model under test (what PyTorch's bf16 CPU attention does): q, k, v are rounded to
//! bf16; scores are f32 sums of their exact products, times `scale` in f32; the online softmax
//! (running maximum and sum) is f32; each key block's probabilities `exp(s − running max)` are
//! rounded to bf16 once for `p·v`, whose products are summed in f32 into the output, which is
//! divided by the f32 sum of the unrounded probabilities. Against the exact softmax of the
//! rounded inputs the error of an output element is therefore at most
//! - `2⁻⁸ · max|v|` from the probabilities' rounding (each `p̃ = p(1 + δ)`, `|δ| ≤ 2⁻⁸`, so
//!   `|Σ(p̃ − p)·v| / Σp ≤ 2⁻⁸ · max|v|`),
//! - `2 · δs · max|v|` from a score error `δs ≤ D · 2⁻²⁴ · Σ|q·k| · scale` (f32 sums) plus the
//!   exp approximation's few ulp (relative error of p, counted twice: numerator and sum),
//! - `Tk · 2⁻²⁴ · max|v|` from summing `p·v` and the normaliser in f32.

#![allow(clippy::unwrap_used)]

mod common;

use candle_core::{DType, Tensor};
use common::{bf16_rounded, random_scaled, values};
use kiln_kernels::Products;

/// (batch, heads, Tq, Tk, D, Dv).
type Case = (usize, usize, usize, usize, usize, usize);

/// The exact attention of `q`, `k`, `v` in f64, and each output element's error bound for the
/// rounding model above (the inputs are the already rounded ones).
fn reference(case: Case, q: &[f32], k: &[f32], v: &[f32], scale: f32) -> (Vec<f64>, Vec<f64>) {
    let (b, h, tq, tk, d, dv) = case;
    let mut out = vec![0f64; b * h * tq * dv];
    let mut bound = vec![0f64; b * h * tq * dv];
    let f32_unit = f64::from(f32::EPSILON) / 2.0;
    for head in 0..b * h {
        let q = &q[head * tq * d..(head + 1) * tq * d];
        let k = &k[head * tk * d..(head + 1) * tk * d];
        let v = &v[head * tk * dv..(head + 1) * tk * dv];
        let v_max = v.iter().fold(0f64, |m, &x| m.max(f64::from(x).abs()));
        for i in 0..tq {
            let mut scores = vec![0f64; tk];
            let mut score_error = 0f64;
            for (j, score) in scores.iter_mut().enumerate() {
                let (mut dot, mut magnitude) = (0f64, 0f64);
                for c in 0..d {
                    let product = f64::from(q[i * d + c]) * f64::from(k[j * d + c]);
                    dot += product;
                    magnitude += product.abs();
                }
                *score = dot * f64::from(scale);
                let error = d as f64 * f32_unit * magnitude * f64::from(scale).abs()
                    + 8.0 * f32_unit * score.abs()
                    + 1e-6;
                score_error = score_error.max(error);
            }
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = weights.iter().sum();
            let allowed = (2f64.powi(-8) + 2.0 * score_error + 2.0 * tk as f64 * f32_unit) * v_max;
            for c in 0..dv {
                let o: f64 = weights
                    .iter()
                    .enumerate()
                    .map(|(j, w)| w * f64::from(v[j * dv + c]))
                    .sum();
                out[(head * tq + i) * dv + c] = o / sum;
                bound[(head * tq + i) * dv + c] = allowed;
            }
        }
    }
    (out, bound)
}

/// Ragged query blocks (96 per task) and key blocks (512), odd Tk and D, cross-attention's 77
/// keys, and every value width the tile shapes cover (Dv 5, 24, 40, 64, 80, 160).
const CASES: [Case; 7] = [
    (1, 2, 100, 600, 40, 40),
    (2, 1, 97, 77, 80, 80),
    (1, 1, 13, 1027, 7, 5),
    (1, 1, 30, 33, 160, 160),
    (1, 2, 200, 130, 64, 64),
    (1, 1, 25, 50, 24, 24),
    (2, 2, 193, 77, 40, 40),
];

#[test]
fn bf16_products_are_within_the_rounding_model_of_an_f64_reference() {
    let native = kiln_kernels::bf16_compute_available();
    for (i, &case) in CASES.iter().enumerate() {
        let (b, h, tq, tk, d, dv) = case;
        let seed = 10 * i as u64;
        // Large q and k make the softmax peaky, so unrounded inputs would miss the bound.
        let q = random_scaled(&[b, h, tq, d], seed + 1, 6.0);
        let k = random_scaled(&[b, h, tk, d], seed + 2, 6.0);
        let v = random_scaled(&[b, h, tk, dv], seed + 3, 1.0);
        let scale = (d as f32).powf(-0.5);
        let got = kiln_kernels::attention_with(&q, &k, &v, scale, Products::Bf16).unwrap();
        assert_eq!(got.dims(), &[b, h, tq, dv]);
        assert_eq!(got.dtype(), DType::F32);
        let got = values(&got);
        if !native {
            let want = kiln_kernels::attention(&q, &k, &v, scale).unwrap();
            assert_eq!(got, values(&want), "case {i}: Bf16 must equal AsInput here");
            continue;
        }
        let (qr, kr, vr) = (bf16_rounded(&q), bf16_rounded(&k), bf16_rounded(&v));
        let (want, bound) = reference(case, &values(&qr), &values(&kr), &values(&vr), scale);
        for (j, ((g, w), allowed)) in got.iter().zip(&want).zip(&bound).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() <= *allowed,
                "case {i} element {j}: {g} vs {w} (allowed {allowed})"
            );
        }
        if i == 0 {
            // The test's power: the exact attention of the unrounded inputs breaks the bound.
            let (unrounded, _) = reference(case, &values(&q), &values(&k), &values(&v), scale);
            let breaks = unrounded
                .iter()
                .zip(&want)
                .zip(&bound)
                .any(|((u, w), allowed)| (u - w).abs() > *allowed);
            assert!(breaks, "rounding the inputs should matter in case {i}");
        }
    }
}

#[test]
fn bf16_inputs_give_the_rounded_f32_inputs_results_exactly() {
    for (i, &(b, h, tq, tk, d, dv)) in CASES.iter().enumerate().take(3) {
        let seed = 100 + 10 * i as u64;
        let q = bf16_rounded(&random_scaled(&[b, h, tq, d], seed + 1, 2.0));
        let k = bf16_rounded(&random_scaled(&[b, h, tk, d], seed + 2, 2.0));
        let v = bf16_rounded(&random_scaled(&[b, h, tk, dv], seed + 3, 1.0));
        let scale = (d as f32).powf(-0.5);
        let to_bf16 = |t: &Tensor| t.to_dtype(DType::BF16).unwrap();
        let from_f32 = kiln_kernels::attention_with(&q, &k, &v, scale, Products::Bf16).unwrap();
        let from_bf16 = kiln_kernels::attention_with(
            &to_bf16(&q),
            &to_bf16(&k),
            &to_bf16(&v),
            scale,
            Products::Bf16,
        )
        .unwrap();
        assert_eq!(from_bf16.dtype(), DType::BF16);
        assert_eq!(values(&from_bf16), values(&to_bf16(&from_f32)), "case {i}");
    }
}

#[test]
fn repeated_calls_reusing_buffers_give_identical_results() {
    // Each call leaves its per-thread buffers (scores, packed operands) dirty for the next.
    for products in [Products::AsInput, Products::Bf16] {
        let run = |case: Case, seed: u64| {
            let (b, h, tq, tk, d, dv) = case;
            let q = random_scaled(&[b, h, tq, d], seed, 3.0);
            let k = random_scaled(&[b, h, tk, d], seed + 1, 3.0);
            let v = random_scaled(&[b, h, tk, dv], seed + 2, 1.0);
            values(&kiln_kernels::attention_with(&q, &k, &v, 0.3, products).unwrap())
        };
        let first = run(CASES[2], 7);
        let _ = run(CASES[0], 8);
        let _ = run(CASES[4], 9);
        assert_eq!(run(CASES[2], 7), first, "{products:?}");
    }
}

#[test]
fn as_input_is_plain_attention_and_bf16_falls_back_without_the_instruction() {
    let (q, k, v) = (
        random_scaled(&[1, 2, 70, 16], 1, 2.0),
        random_scaled(&[1, 2, 77, 16], 2, 2.0),
        random_scaled(&[1, 2, 77, 40], 3, 1.0),
    );
    let plain = values(&kiln_kernels::attention(&q, &k, &v, 0.25).unwrap());
    let as_input =
        values(&kiln_kernels::attention_with(&q, &k, &v, 0.25, Products::AsInput).unwrap());
    assert_eq!(plain, as_input);
    let bf16 = values(&kiln_kernels::attention_with(&q, &k, &v, 0.25, Products::Bf16).unwrap());
    if kiln_kernels::bf16_compute_available() {
        assert_ne!(plain, bf16, "bf16 products should round something");
    } else {
        assert_eq!(plain, bf16);
    }
}
