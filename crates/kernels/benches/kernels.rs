//! `cargo bench -p kiln-kernels`: each kernel against candle's own op on SD1.5 shapes, in the
//! same process, printing the ratio (candle time / Kiln time; above 1 means Kiln is faster).
//! A benchmark, not a test: nothing here asserts a speed.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use kiln_kernels::{Activation, Products};

fn random(shape: &[usize], dtype: DType) -> Tensor {
    Tensor::randn(0f32, 1.0, shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .unwrap_or_else(|e| panic!("cannot make a random tensor: {e}"))
}

/// Median seconds of `runs` calls after one warm-up.
fn time(runs: usize, mut f: impl FnMut() -> Tensor) -> f64 {
    let _ = f();
    let mut samples: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let _ = f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn report(name: &str, flops: f64, candle: f64, kiln: f64) {
    println!(
        "{name:<44} candle {:>8.2} ms  kiln {:>8.2} ms  ratio {:>5.2}×  kiln {:>6.1} GFLOP/s",
        candle * 1e3,
        kiln * 1e3,
        candle / kiln,
        flops / kiln / 1e9
    );
}

/// (batch, in channels, side, out channels, kernel, stride).
type ConvShape = (usize, usize, usize, usize, usize, usize);

fn conv_case(shape: ConvShape, dtype: DType, runs: usize) {
    let (b, c, hw, o, k, stride) = shape;
    let pad = k / 2;
    let x = random(&[b, c, hw, hw], dtype);
    let w = random(&[o, c, k, k], dtype);
    let bias = random(&[o], dtype);
    let out_hw = (hw + 2 * pad - k) / stride + 1;
    let flops = 2.0 * (b * o * out_hw * out_hw * c * k * k) as f64;
    // candle has no bf16 convolution on the CPU: its reference is the f32 convolution.
    let (x32, w32, b32) = (
        x.to_dtype(DType::F32).unwrap_or_else(|e| panic!("{e}")),
        w.to_dtype(DType::F32).unwrap_or_else(|e| panic!("{e}")),
        bias.to_dtype(DType::F32).unwrap_or_else(|e| panic!("{e}")),
    );
    let candle = time(runs, || {
        kiln_kernels::conv2d_slow(&x32, &w32, Some(&b32), pad, stride)
            .unwrap_or_else(|e| panic!("{e}"))
    });
    let kiln = time(runs, || {
        kiln_kernels::conv2d(&x, &w, Some(&bias), pad, stride).unwrap_or_else(|e| panic!("{e}"))
    });
    report(
        &format!("conv2d {dtype:?} {b}×{c}×{hw}² → {o} k{k} s{stride}"),
        flops,
        candle,
        kiln,
    );
}

/// Kiln's bf16 convolution (AVX512-BF16 products where the CPU has them) against Kiln's f32
/// convolution of the same shape: the ratio is f32 time / bf16 time.
fn bf16_conv_case(shape: ConvShape, runs: usize) {
    let (b, c, hw, o, k, stride) = shape;
    let pad = k / 2;
    let x = random(&[b, c, hw, hw], DType::F32);
    let w = random(&[o, c, k, k], DType::F32);
    let bias = random(&[o], DType::F32);
    let to_bf16 = |t: &Tensor| t.to_dtype(DType::BF16).unwrap_or_else(|e| panic!("{e}"));
    let (xb, wb, bb) = (to_bf16(&x), to_bf16(&w), to_bf16(&bias));
    let out_hw = (hw + 2 * pad - k) / stride + 1;
    let flops = 2.0 * (b * o * out_hw * out_hw * c * k * k) as f64;
    let f32_time = time(runs, || {
        kiln_kernels::conv2d(&x, &w, Some(&bias), pad, stride).unwrap_or_else(|e| panic!("{e}"))
    });
    let bf16_time = time(runs, || {
        kiln_kernels::conv2d(&xb, &wb, Some(&bb), pad, stride).unwrap_or_else(|e| panic!("{e}"))
    });
    println!(
        "conv2d bf16 vs f32 {b}×{c}×{hw}² → {o} k{k} s{stride:<8} f32 {:>8.2} ms  bf16 {:>8.2} ms  \
         ratio {:>5.2}×  bf16 {:>6.1} GFLOP/s",
        f32_time * 1e3,
        bf16_time * 1e3,
        f32_time / bf16_time,
        flops / bf16_time / 1e9
    );
}

/// The bare bf16 product against candle's f32 matmul (the same AVX-512 gemm the f32 convolution
/// uses) on one UNet im2col product.
fn bf16_gemm_case(m: usize, k: usize, n: usize, runs: usize) {
    let a = random(&[m, k], DType::F32);
    let b = random(&[k, n], DType::F32);
    let (a16, b16) = (
        a.to_dtype(DType::BF16).unwrap_or_else(|e| panic!("{e}")),
        b.to_dtype(DType::BF16).unwrap_or_else(|e| panic!("{e}")),
    );
    let flops = 2.0 * (m * k * n) as f64;
    let f32_time = time(runs, || a.matmul(&b).unwrap_or_else(|e| panic!("{e}")));
    let bf16_time = time(runs, || {
        kiln_kernels::bf16_matmul(&a16, &b16).unwrap_or_else(|e| panic!("{e}"))
    });
    println!(
        "gemm bf16 vs f32 {m}×{k}×{n:<17} f32 {:>8.2} ms  bf16 {:>8.2} ms  ratio {:>5.2}×  \
         bf16 {:>6.1} GFLOP/s",
        f32_time * 1e3,
        bf16_time * 1e3,
        f32_time / bf16_time,
        flops / bf16_time / 1e9
    );
}

/// SD1.5's 64² feed-forward gating (CFG batch 2): the fused pass against candle's ops.
fn geglu_comparison() {
    let projected = random(&[2, 4096, 2560], DType::F32);
    let candle = time(5, || {
        kiln_kernels::geglu_slow(&projected).unwrap_or_else(|e| panic!("{e}"))
    });
    let kiln = time(5, || {
        kiln_kernels::geglu(&projected).unwrap_or_else(|e| panic!("{e}"))
    });
    report("geglu f32 2×4096×2560", 0.0, candle, kiln);
}

fn main() {
    println!(
        "kiln-kernels on {} kernel threads",
        kiln_kernels::kernel_threads()
    );
    // `cargo bench -p kiln-kernels -- bf16` times only the bf16-against-f32 cases,
    // `-- attention` only attention with f32 against bf16 products, `-- winograd` only the
    // Winograd layers against im2col, `-- geglu` only the feed-forward gating.
    let filter = |name: &str| std::env::args().any(|arg| arg == name);
    if filter("geglu") {
        geglu_comparison();
        return;
    }
    if filter("attention") {
        attention_products_comparisons();
        return;
    }
    if filter("winograd") {
        winograd_comparisons();
        return;
    }
    if !filter("bf16") {
        candle_comparisons();
    }
    bf16_comparisons();
    attention_products_comparisons();
}

/// Kiln's attention on f32 inputs with f32 products against bf16 products (AVX512-BF16 where
/// the CPU has it): the ratio is f32 time / bf16 time.
fn attention_products_case(b: usize, h: usize, tq: usize, tk: usize, d: usize, runs: usize) {
    let q = random(&[b, h, tq, d], DType::F32);
    let k = random(&[b, h, tk, d], DType::F32);
    let v = random(&[b, h, tk, d], DType::F32);
    let scale = (d as f32).powf(-0.5);
    let flops = 4.0 * (b * h * tq * tk * d) as f64;
    let run = |products| {
        time(runs, || {
            kiln_kernels::attention_with(&q, &k, &v, scale, products)
                .unwrap_or_else(|e| panic!("{e}"))
        })
    };
    let f32_time = run(kiln_kernels::Products::AsInput);
    let bf16_time = run(kiln_kernels::Products::Bf16);
    println!(
        "attention bf16 vs f32 {b}×{h}×{tq}×{tk}×{d:<10} f32 {:>8.2} ms  bf16 {:>8.2} ms  \
         ratio {:>5.2}×  bf16 {:>6.1} GFLOP/s",
        f32_time * 1e3,
        bf16_time * 1e3,
        f32_time / bf16_time,
        flops / bf16_time / 1e9
    );
}

/// SD1.5's self-attention at each UNet level of a 512² image (64², 32², 16² latents) and its
/// cross-attention to 77 text tokens, CFG batch 2.
fn attention_products_comparisons() {
    println!(
        "bf16 compute (AVX512-BF16) available: {}",
        kiln_kernels::bf16_compute_available()
    );
    attention_products_case(2, 8, 4096, 4096, 40, 3);
    attention_products_case(2, 8, 1024, 1024, 80, 5);
    attention_products_case(2, 8, 256, 256, 160, 10);
    attention_products_case(2, 8, 4096, 77, 40, 10);
    attention_products_case(2, 8, 1024, 77, 80, 10);
    attention_products_case(2, 8, 256, 77, 160, 10);
}

/// candle's own matmul in bf16 against f32 on a UNet linear-layer shape: what the rest of a bf16
/// UNet (its linear layers, which do not go through kiln-kernels) would cost on this CPU.
fn candle_linear_case(tokens: usize, k: usize, n: usize, runs: usize) {
    let x = random(&[tokens, k], DType::F32);
    let w = random(&[k, n], DType::F32);
    let to_bf16 = |t: &Tensor| t.to_dtype(DType::BF16).unwrap_or_else(|e| panic!("{e}"));
    let (xb, wb) = (to_bf16(&x), to_bf16(&w));
    let f32_time = time(runs, || x.matmul(&w).unwrap_or_else(|e| panic!("{e}")));
    let bf16_time = time(runs, || xb.matmul(&wb).unwrap_or_else(|e| panic!("{e}")));
    println!(
        "candle matmul bf16 vs f32 {tokens}×{k}×{n:<9} f32 {:>8.2} ms  bf16 {:>8.2} ms  \
         ratio {:>5.2}×",
        f32_time * 1e3,
        bf16_time * 1e3,
        f32_time / bf16_time
    );
    // kiln's linear takes the weight as [N, K].
    let wt = wb
        .t()
        .and_then(|t| t.contiguous())
        .unwrap_or_else(|e| panic!("{e}"));
    let kiln_time = time(runs, || {
        kiln_kernels::linear(&xb, &wt, None).unwrap_or_else(|e| panic!("{e}"))
    });
    println!(
        "kiln linear bf16 vs candle f32 {tokens}×{k}×{n:<4} f32 {:>8.2} ms  bf16 {:>8.2} ms  \
         ratio {:>5.2}×",
        f32_time * 1e3,
        kiln_time * 1e3,
        f32_time / kiln_time
    );
}

fn bf16_comparisons() {
    println!(
        "bf16 compute (AVX512-BF16) available: {}",
        kiln_kernels::bf16_compute_available()
    );
    bf16_gemm_case(320, 2880, 4096, 3);
    bf16_conv_case((2, 320, 64, 320, 3, 1), 3);
    bf16_conv_case((2, 640, 32, 640, 3, 1), 3);
    bf16_conv_case((2, 1280, 16, 1280, 3, 1), 3);
    bf16_conv_case((2, 1280, 8, 1280, 3, 1), 5);
    bf16_conv_case((2, 320, 32, 640, 1, 1), 5);
    bf16_conv_case((2, 320, 64, 320, 3, 2), 5);
    candle_linear_case(8192, 320, 1280, 3);
}

fn candle_comparisons() {
    // The UNet's 3×3 convolutions at each level (CFG batch 2), a 1×1 skip, a stride-2 downsample,
    // and the VAE decoder's largest layer.
    conv_case((2, 320, 64, 320, 3, 1), DType::F32, 5);
    conv_case((2, 640, 32, 640, 3, 1), DType::F32, 5);
    conv_case((2, 1280, 16, 1280, 3, 1), DType::F32, 5);
    conv_case((2, 1280, 8, 1280, 3, 1), DType::F32, 5);
    conv_case((2, 320, 32, 640, 1, 1), DType::F32, 5);
    conv_case((2, 320, 64, 320, 3, 2), DType::F32, 5);
    conv_case((1, 128, 512, 128, 3, 1), DType::F32, 2);
    conv_case((2, 320, 64, 320, 3, 1), DType::BF16, 3);

    let x = random(&[2, 320, 64, 64], DType::F32);
    let (w, b) = (random(&[320], DType::F32), random(&[320], DType::F32));
    let candle = time(10, || {
        kiln_kernels::group_norm_slow(&x, 32, &w, &b, 1e-5, Activation::Silu)
            .unwrap_or_else(|e| panic!("{e}"))
    });
    let kiln = time(10, || {
        kiln_kernels::group_norm(&x, 32, &w, &b, 1e-5, Activation::Silu)
            .unwrap_or_else(|e| panic!("{e}"))
    });
    report("group_norm+silu f32 2×320×64²", 0.0, candle, kiln);

    let x = random(&[2, 4096, 320], DType::F32);
    let candle = time(10, || {
        kiln_kernels::layer_norm_slow(&x, Some(&w), Some(&b), 1e-5)
            .unwrap_or_else(|e| panic!("{e}"))
    });
    let kiln = time(10, || {
        kiln_kernels::layer_norm(&x, Some(&w), Some(&b), 1e-5).unwrap_or_else(|e| panic!("{e}"))
    });
    report("layer_norm f32 2×4096×320", 0.0, candle, kiln);

    geglu_comparison();

    for (tq, tk, dtype) in [
        (4096, 4096, DType::F32),
        (4096, 77, DType::F32),
        (4096, 4096, DType::BF16),
    ] {
        let q = random(&[2, 8, tq, 40], dtype);
        let k = random(&[2, 8, tk, 40], dtype);
        let v = random(&[2, 8, tk, 40], dtype);
        let scale = 40f32.powf(-0.5);
        let flops = 4.0 * (16 * tq * tk * 40) as f64;
        let candle = time(3, || {
            kiln_kernels::attention_slow(&q, &k, &v, scale).unwrap_or_else(|e| panic!("{e}"))
        });
        let kiln = time(3, || {
            kiln_kernels::attention(&q, &k, &v, scale).unwrap_or_else(|e| panic!("{e}"))
        });
        report(
            &format!("attention {dtype:?} 2×8×{tq}×{tk}×40"),
            flops,
            candle,
            kiln,
        );
    }
}

/// The Winograd path against im2col on the same 3×3 layer, f32 and bf16 products: the ratio is
/// im2col time / Winograd time.
fn winograd_case(shape: (usize, usize, usize, usize), runs: usize) {
    let (b, c, hw, o) = shape;
    let x = random(&[b, c, hw, hw], DType::F32);
    let w = random(&[o, c, 3, 3], DType::F16);
    let bias = random(&[o], DType::F32);
    let flops = 2.0 * (b * o * hw * hw * c * 9) as f64;
    for products in [Products::AsInput, Products::Bf16] {
        let im2col = time(runs, || {
            kiln_kernels::conv2d_im2col(&x, &w, Some(&bias), 1, 1, products)
                .unwrap_or_else(|e| panic!("{e}"))
        });
        let winograd = time(runs, || {
            kiln_kernels::conv2d_with(&x, &w, Some(&bias), 1, 1, products)
                .unwrap_or_else(|e| panic!("{e}"))
        });
        println!(
            "winograd {products:?} {b}×{c}×{hw}² → {o:<10} im2col {:>8.2} ms  winograd {:>8.2} ms  \
             ratio {:>5.2}×  {:>6.1} effective GFLOP/s",
            im2col * 1e3,
            winograd * 1e3,
            im2col / winograd,
            flops / winograd / 1e9
        );
    }
}

/// The VAE decoder's 3×3 layers at 512² and the UNet's (CFG batch 2).
fn winograd_comparisons() {
    winograd_case((1, 512, 64, 512), 3);
    winograd_case((1, 512, 128, 512), 2);
    winograd_case((1, 512, 256, 512), 1);
    winograd_case((1, 256, 256, 256), 2);
    winograd_case((1, 256, 512, 256), 1);
    winograd_case((1, 128, 512, 128), 2);
    winograd_case((2, 320, 64, 320), 3);
    winograd_case((2, 640, 32, 640), 3);
    winograd_case((2, 1280, 16, 1280), 3);
    winograd_case((2, 1280, 8, 1280), 3);
}
