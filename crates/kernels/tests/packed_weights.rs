//! Weights packed once and kept between calls ([`kiln_kernels::PackedWeightCache`]): a
//! convolution or linear layer with bf16 products asks its cache for the packed weight instead of
//! packing it, packs it only on the first call, gives exactly the results of packing per call,
//! and never misreads a kept form of the wrong weight. A convolution on the Winograd path never
//! asks.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Tensor};
use common::{random, values};
use kiln_kernels::{PackedWeight, PackedWeightCache, Products, WeightValues};

/// A cache that keeps one packed form and counts how often it had to pack.
#[derive(Default)]
struct CountingCache {
    kept: Mutex<Option<Arc<PackedWeight>>>,
    packs: AtomicUsize,
    asks: AtomicUsize,
}

impl PackedWeightCache for CountingCache {
    fn packed(
        &self,
        pack: &mut dyn FnMut(bool) -> Option<PackedWeight>,
    ) -> Option<Arc<PackedWeight>> {
        self.asks.fetch_add(1, Ordering::SeqCst);
        let mut kept = self.kept.lock().unwrap();
        if let Some(form) = kept.as_ref() {
            return Some(form.clone());
        }
        self.packs.fetch_add(1, Ordering::SeqCst);
        let form = Arc::new(pack(true)?);
        *kept = Some(form.clone());
        Some(form)
    }
}

fn f16_values(t: &Tensor) -> Vec<half::f16> {
    t.to_dtype(DType::F16)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<half::f16>()
        .unwrap()
}

fn conv(
    x: &Tensor,
    w: &[half::f16],
    dims: [usize; 4],
    bias: &Tensor,
    cache: Option<&dyn PackedWeightCache>,
) -> Vec<f32> {
    let y = kiln_kernels::conv2d_values(
        x,
        WeightValues::F16(w),
        dims,
        Some(bias),
        1,
        1,
        Products::Bf16,
        cache,
    )
    .unwrap();
    values(&y)
}

fn linear(
    x: &Tensor,
    w: &[half::f16],
    dims: [usize; 2],
    bias: &Tensor,
    cache: Option<&dyn PackedWeightCache>,
) -> Vec<f32> {
    let y = kiln_kernels::linear_values(
        x,
        WeightValues::F16(w),
        dims,
        Some(bias),
        Products::Bf16,
        cache,
    )
    .unwrap();
    values(&y)
}

#[test]
fn a_kept_packed_weight_is_packed_once_and_gives_the_per_call_results() {
    if !kiln_kernels::bf16_compute_available() {
        eprintln!("no AVX512-BF16 here: the bf16 products (and their packing) do not run");
        return;
    }
    // A 3×3 convolution on the im2col path (too small for Winograd), twice on other inputs.
    let dims = [20, 24, 3, 3];
    let w = f16_values(&random(&dims, 1));
    let bias = random(&[20], 2);
    let cache = CountingCache::default();
    for seed in [3, 4] {
        let x = random(&[2, 24, 9, 9], seed);
        let fresh = conv(&x, &w, dims, &bias, None);
        let kept = conv(&x, &w, dims, &bias, Some(&cache));
        assert_eq!(kept, fresh, "conv with a kept packed weight, input {seed}");
    }
    assert_eq!(cache.packs.load(Ordering::SeqCst), 1);
    assert_eq!(cache.asks.load(Ordering::SeqCst), 2);

    let dims = [23, 40];
    let w = f16_values(&random(&dims, 5));
    let bias = random(&[23], 6);
    let cache = CountingCache::default();
    for seed in [7, 8] {
        let x = random(&[2, 17, 40], seed).to_dtype(DType::BF16).unwrap();
        let fresh = linear(&x, &w, dims, &bias, None);
        let kept = linear(&x, &w, dims, &bias, Some(&cache));
        assert_eq!(
            kept, fresh,
            "linear with a kept packed weight, input {seed}"
        );
    }
    assert_eq!(cache.packs.load(Ordering::SeqCst), 1);
}

#[test]
fn a_kept_form_of_another_weight_is_never_misread() {
    if !kiln_kernels::bf16_compute_available() {
        return;
    }
    // The cache holds a linear weight's form; the convolution must pack its own.
    let cache = CountingCache::default();
    let lw = f16_values(&random(&[23, 40], 9));
    let x = random(&[1, 3, 40], 10);
    linear(&x, &lw, [23, 40], &random(&[23], 11), Some(&cache));
    let dims = [20, 24, 3, 3];
    let w = f16_values(&random(&dims, 12));
    let bias = random(&[20], 13);
    let x = random(&[1, 24, 7, 7], 14);
    let fresh = conv(&x, &w, dims, &bias, None);
    assert_eq!(conv(&x, &w, dims, &bias, Some(&cache)), fresh);
    // And a linear form of other sizes is not used for this linear.
    let other = f16_values(&random(&[40, 23], 15));
    let x = random(&[2, 5, 23], 16);
    let bias = random(&[40], 17);
    let fresh = linear(&x, &other, [40, 23], &bias, None);
    assert_eq!(linear(&x, &other, [40, 23], &bias, Some(&cache)), fresh);
}

/// Where the CPU has AVX-512F (the Winograd path's micro-kernel; every AVX512-BF16 CPU has it),
/// the second layer takes the Winograd path; without AVX512-BF16 nothing multiplies in bf16.
#[test]
fn f32_products_and_winograd_layers_never_ask_the_cache() {
    let cache = CountingCache::default();
    let dims = [20, 24, 3, 3];
    let w = f16_values(&random(&dims, 18));
    let x = random(&[1, 24, 9, 9], 19);
    kiln_kernels::conv2d_values(
        &x,
        WeightValues::F16(&w),
        dims,
        None,
        1,
        1,
        Products::AsInput,
        Some(&cache),
    )
    .unwrap();
    // 16 channels at 80²: F(4,3) (400 tiles) with bf16 products.
    let dims = [16, 16, 3, 3];
    let w = f16_values(&random(&dims, 20));
    let x = random(&[1, 16, 80, 80], 21);
    kiln_kernels::conv2d_values(
        &x,
        WeightValues::F16(&w),
        dims,
        None,
        1,
        1,
        Products::Bf16,
        Some(&cache),
    )
    .unwrap();
    assert_eq!(cache.asks.load(Ordering::SeqCst), 0);
}
