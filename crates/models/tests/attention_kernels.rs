//! Every attention kernel against the plain reference on random inputs: odd sizes, both input
//! layouts, masks, f16 with and without upcasting, and memory budgets small enough that split
//! and sub-quadratic attention really chunk (checked through the returned trace).
#![allow(clippy::unwrap_used)]

mod support;

use candle_core::{DType, Device, Tensor};
use kiln_models::{
    attention, attention_heads, Attention, AttentionKernel, AttentionTrace, MemoryBudget, SplitRule,
};
use support::max_abs_diff;

const KERNELS: [AttentionKernel; 5] = [
    AttentionKernel::Plain,
    AttentionKernel::Split,
    AttentionKernel::SubQuadratic,
    AttentionKernel::Fused,
    AttentionKernel::Flash,
];

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut state = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 6.0 - 3.0
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Runs `kernel` on `[B, H, T, D]` inputs with `budget` and returns the output and trace.
fn run(
    kernel: AttentionKernel,
    budget: u64,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
) -> (Tensor, AttentionTrace) {
    Attention::new(kernel)
        .with_budget(MemoryBudget::Bytes(budget))
        .forward_heads_traced(q, k, v, mask)
        .unwrap()
}

#[test]
fn all_kernels_match_plain_on_odd_sizes() {
    // Self-attention and cross-attention with awkward token counts and widths.
    for (i, &(b, h, tq, tk, d, dv)) in [
        (1, 1, 1, 1, 1, 1),
        (2, 3, 37, 37, 5, 5),
        (1, 2, 101, 13, 8, 3),
        (3, 1, 7, 300, 16, 16),
    ]
    .iter()
    .enumerate()
    {
        let seed = 10 * i as u64;
        let q = random(&[b, h, tq, d], seed);
        let k = random(&[b, h, tk, d], seed + 1);
        let v = random(&[b, h, tk, dv], seed + 2);
        let want = attention_heads(&q, &k, &v, None, AttentionKernel::Plain, false).unwrap();
        for kernel in KERNELS {
            for budget in [u64::MAX, 1 << 12, 64] {
                let Ok((got, _)) = Attention::new(kernel)
                    .with_budget(MemoryBudget::Bytes(budget))
                    .forward_heads_traced(&q, &k, &v, None)
                else {
                    // Only split attention may refuse (more than 64 slices needed).
                    assert_eq!(kernel, AttentionKernel::Split);
                    continue;
                };
                let diff = max_abs_diff(&got, &want);
                assert!(diff < 1e-5, "{kernel:?} budget {budget} case {i}: {diff}");
            }
        }
    }
}

#[test]
fn split_slices_queries_by_the_comfyui_memory_rule() {
    let (b, h, t, d) = (2, 2, 64, 8);
    let q = random(&[b, h, t, d], 1);
    let k = random(&[b, h, t, d], 2);
    let v = random(&[b, h, t, d], 3);
    let want = attention_heads(&q, &k, &v, None, AttentionKernel::Plain, false).unwrap();
    // Scores are 2·2·64·64 f32 = 65536 bytes; ComfyUI needs 3× that.
    let required = 3 * 65536;
    for (budget, slices) in [
        (required, 1),
        (required / 2, 2),
        (required / 5, 8),
        (required / 64, 64),
    ] {
        let (got, trace) = run(AttentionKernel::Split, budget, &q, &k, &v, None);
        assert_eq!(trace.kernel, AttentionKernel::Split);
        assert_eq!(trace.query_chunks, slices, "budget {budget}");
        assert!(max_abs_diff(&got, &want) < 1e-5);
    }
    // The VAE rule (2.5× for f32) needs less.
    let (_, trace) = Attention::new(AttentionKernel::Split)
        .with_split_rule(SplitRule::Vae)
        .with_budget(MemoryBudget::Bytes(required / 2))
        .forward_heads_traced(&q, &k, &v, None)
        .unwrap();
    assert_eq!(trace.query_chunks, 2);
    let (_, trace) = Attention::new(AttentionKernel::Split)
        .with_split_rule(SplitRule::Vae)
        .with_budget(MemoryBudget::Bytes(5 * 65536 / 2))
        .forward_heads_traced(&q, &k, &v, None)
        .unwrap();
    assert_eq!(trace.query_chunks, 1);
}

#[test]
fn sub_quadratic_picks_query_chunks_then_kv_chunks() {
    let (b, h, tq, tk, d) = (1, 2, 5000, 40, 4);
    let q = random(&[b, h, tq, d], 4);
    let k = random(&[b, h, tk, d], 5);
    let v = random(&[b, h, tk, d], 6);
    let want = attention_heads(&q, &k, &v, None, AttentionKernel::Plain, false).unwrap();
    // free / (B·H · 4 bytes · chunk · 4) ≥ Tk picks the largest fitting query chunk.
    let per_chunk = |chunk: u64| 2 * 4 * chunk * 4 * tk as u64;
    for (budget, query_chunks, kv_chunks) in [
        (per_chunk(4096), 2, 1),
        (per_chunk(1024), 5, 1),
        (per_chunk(256), 20, 1),
        (per_chunk(256) - 1, 10, 7),
    ] {
        let (got, trace) = run(AttentionKernel::SubQuadratic, budget, &q, &k, &v, None);
        assert_eq!(
            (trace.query_chunks, trace.kv_chunks),
            (query_chunks, kv_chunks),
            "budget {budget}"
        );
        assert!(max_abs_diff(&got, &want) < 1e-5);
    }
}

#[test]
fn masks_broadcast_and_survive_chunking() {
    let (b, h, tq, tk, d) = (2, 3, 33, 29, 6);
    let q = random(&[b, h, tq, d], 7);
    let k = random(&[b, h, tk, d], 8);
    let v = random(&[b, h, tk, d], 9);
    let causal: Vec<f32> = (0..tq * tk)
        .map(|i| if i % tk > i / tk { f32::MIN } else { 0.0 })
        .collect();
    let masks = [
        Tensor::from_vec(causal, (tq, tk), &Device::Cpu).unwrap(),
        random(&[b, tq, tk], 10),
        random(&[1, h, 1, tk], 11),
        random(&[b, h, tq, tk], 12),
    ];
    for mask in &masks {
        let want = attention_heads(&q, &k, &v, Some(mask), AttentionKernel::Plain, false).unwrap();
        for kernel in KERNELS {
            for budget in [u64::MAX, 8192] {
                let (got, _) = run(kernel, budget, &q, &k, &v, Some(mask));
                let diff = max_abs_diff(&got, &want);
                assert!(diff < 1e-5, "{kernel:?} mask {:?}: {diff}", mask.dims());
            }
        }
    }
}

#[test]
fn flat_layout_equals_split_heads() {
    let (b, t, heads, d) = (2, 19, 4, 8);
    let q = random(&[b, t, heads * d], 13);
    let k = random(&[b, 23, heads * d], 14);
    let v = random(&[b, 23, heads * d], 15);
    let split = |x: &Tensor| {
        let tokens = x.dim(1).unwrap();
        x.reshape((b, tokens, heads, d))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
    };
    let heads_out = attention_heads(
        &split(&q),
        &split(&k),
        &split(&v),
        None,
        AttentionKernel::Plain,
        false,
    )
    .unwrap();
    let merged = heads_out
        .transpose(1, 2)
        .unwrap()
        .reshape((b, t, heads * d))
        .unwrap();
    for kernel in KERNELS {
        let flat = attention(&q, &k, &v, heads, None, kernel, false).unwrap();
        assert_eq!(flat.dims(), [b, t, heads * d]);
        assert!(max_abs_diff(&flat, &merged) < 1e-5, "{kernel:?}");
    }
}

#[test]
fn f16_kernels_agree_with_and_without_upcast() {
    let (b, h, t, d) = (1, 2, 48, 16);
    // Large logits stress half-precision scores.
    let scale = |x: Tensor| (x * 4.0).unwrap();
    let q = scale(random(&[b, h, t, d], 16));
    let k = scale(random(&[b, h, t, d], 17));
    let v = random(&[b, h, t, d], 18);
    let exact = attention_heads(&q, &k, &v, None, AttentionKernel::Plain, false).unwrap();
    let half = |x: &Tensor| x.to_dtype(DType::F16).unwrap();
    let (q16, k16, v16) = (half(&q), half(&k), half(&v));
    let plain_up = attention_heads(&q16, &k16, &v16, None, AttentionKernel::Plain, true).unwrap();
    assert_eq!(plain_up.dtype(), DType::F16);
    for kernel in KERNELS {
        for budget in [u64::MAX, 2048] {
            let got = Attention::new(kernel)
                .with_upcast(true)
                .with_budget(MemoryBudget::Bytes(budget))
                .forward_heads(&q16, &k16, &v16, None)
                .unwrap();
            assert!(max_abs_diff(&got, &plain_up) < 2e-2, "{kernel:?} {budget}");
            assert!(max_abs_diff(&got, &exact) < 3e-2, "{kernel:?} {budget}");
        }
    }
    let no_upcast = attention_heads(&q16, &k16, &v16, None, AttentionKernel::Plain, false).unwrap();
    assert!(max_abs_diff(&no_upcast, &exact) < 0.2);
    for kernel in KERNELS {
        let got = Attention::new(kernel)
            .with_budget(MemoryBudget::Bytes(1024))
            .forward_heads(&q16, &k16, &v16, None)
            .unwrap();
        assert_eq!(got.dtype(), DType::F16);
        assert!(max_abs_diff(&got, &no_upcast) < 2e-2, "{kernel:?}");
    }
}

#[test]
fn fallbacks_report_the_kernel_that_ran() {
    let q = random(&[1, 1, 8, 4], 19);
    let mask = random(&[8, 8], 20);
    for kernel in [AttentionKernel::Fused, AttentionKernel::Flash] {
        // Unmasked, the CPU runs kiln-kernels' fused attention (no flash kernel is built).
        let (_, trace) = run(kernel, u64::MAX, &q, &q, &q, None);
        assert_eq!(trace.kernel, AttentionKernel::Fused);
        // The fused CPU kernel takes no mask: ComfyUI's fallback, sub-quadratic, runs.
        let (_, trace) = run(kernel, u64::MAX, &q, &q, &q, Some(&mask));
        assert_eq!(trace.kernel, AttentionKernel::SubQuadratic);
    }
    let (_, trace) = run(AttentionKernel::Plain, 1, &q, &q, &q, None);
    assert_eq!((trace.query_chunks, trace.kv_chunks), (1, 1));
}
