//! `TorchGenerator`: a bit-exact reimplementation of PyTorch's CPU generator
//! (`at::CPUGeneratorImpl`) and of the draws ComfyUI makes from it: `torch.randn` (float32),
//! `randn_like` and the uniform/normal scalars underneath.
//!
//! `torch.randn(shape, dtype=float32, generator=g)` on the CPU has two code paths
//! (`aten/src/ATen/native/cpu/DistributionTemplates.h`):
//!
//! * **16 elements or more** (contiguous float32): every element first receives a 24-bit uniform
//!   from the generator; then each block of 16 is Box–Muller transformed pairing element `j`
//!   with `j + 8`. When the size is not a multiple of 16 the *last 16* elements are redrawn from
//!   the generator and transformed again. The transform itself depends on the kernel torch
//!   dispatched to, see [`NormalKernel`].
//! * **fewer than 16 elements**: one `normal_distribution<double>` sample per element, using
//!   53-bit uniforms and double-precision `log1p`/`sin`/`cos`; the second value of each
//!   Box–Muller pair is cached in the generator and returned by the next scalar draw.

use crate::avx_mathfun::{log_ps, sincos_ps};
use crate::mt19937::Mt19937;

/// Which CPU kernel of torch's `normal_fill` the noise must match.
///
/// PyTorch picks the kernel at run time from the CPU (`torch.backends.cpu.get_cpu_capability()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum NormalKernel {
    /// x86-64 with AVX2 or AVX-512 (`AVX2`/`AVX512` capability): Cephes polynomial `log` and
    /// `sincos` from `avx_mathfun.h` compiled with FMA. This is what ComfyUI produces on
    /// practically every x86-64 Linux or Windows machine.
    #[default]
    Avx2,
    /// The scalar fallback (`DEFAULT` capability, e.g. x86-64 without AVX2): single-precision
    /// C library `logf`/`cosf`/`sinf` and an FMA for `r·cos θ·std + mean`. The result matches
    /// torch bit for bit only where this process's C library agrees with torch's (glibc ≥ 2.28
    /// for both). Whether torch's arm64 builds take this path has not been verified.
    Scalar,
}

/// A PyTorch CPU generator: MT19937 plus the cached second Box–Muller sample.
#[derive(Clone, Debug)]
pub struct TorchGenerator {
    engine: Mt19937,
    next_double_normal: Option<f64>,
    kernel: NormalKernel,
}

impl TorchGenerator {
    /// Equivalent to `torch.Generator().manual_seed(seed)` (and to `torch.manual_seed(seed)` for
    /// the CPU). Only the low 32 bits of `seed` are used, as in torch.
    pub fn manual_seed(seed: u64) -> Self {
        Self {
            engine: Mt19937::new(seed),
            next_double_normal: None,
            kernel: NormalKernel::default(),
        }
    }

    /// Selects the `normal_fill` kernel to reproduce (default: [`NormalKernel::Avx2`]).
    #[must_use]
    pub fn with_kernel(mut self, kernel: NormalKernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// The `normal_fill` kernel this generator reproduces.
    pub fn kernel(&self) -> NormalKernel {
        self.kernel
    }

    /// `CPUGeneratorImpl::random()`: one 32-bit word.
    pub fn random_u32(&mut self) -> u32 {
        self.engine.next_u32()
    }

    /// `CPUGeneratorImpl::random64()`: two words, the first one in the high half.
    pub fn random_u64(&mut self) -> u64 {
        let high = u64::from(self.engine.next_u32());
        let low = u64::from(self.engine.next_u32());
        (high << 32) | low
    }

    /// `uniform_real_distribution<float>(0, 1)`: 24 random bits scaled into `[0, 1)`.
    pub fn uniform_f32(&mut self) -> f32 {
        (self.random_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
    }

    /// `uniform_real_distribution<double>(0, 1)`: 53 random bits scaled into `[0, 1)`.
    pub fn uniform_f64(&mut self) -> f64 {
        (self.random_u64() & ((1u64 << 53) - 1)) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `normal_distribution<double>(0, 1)`: one standard normal sample, using and refilling the
    /// generator's cached second Box–Muller value.
    pub fn normal_f64(&mut self) -> f64 {
        if let Some(cached) = self.next_double_normal.take() {
            return cached;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let radius = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.next_double_normal = Some(radius * theta.sin());
        radius * theta.cos()
    }

    /// `torch.randn(shape, dtype=torch.float32, generator=self)` on the CPU, in row-major order.
    /// `torch.randn_like(x, generator=self)` is the same call with `x`'s shape.
    pub fn randn(&mut self, shape: &[usize]) -> Vec<f32> {
        let len: usize = shape.iter().product();
        self.randn_len(len)
    }

    /// [`randn`](Self::randn) for a flat number of elements.
    pub fn randn_len(&mut self, len: usize) -> Vec<f32> {
        if len < 16 {
            return (0..len).map(|_| self.normal_f64() as f32).collect();
        }
        let mut data: Vec<f32> = (0..len).map(|_| self.uniform_f32()).collect();
        let kernel = self.kernel;
        for block in data.chunks_exact_mut(16) {
            box_muller_16(kernel, block);
        }
        if !len.is_multiple_of(16) {
            let tail = &mut data[len - 16..];
            for value in tail.iter_mut() {
                *value = self.uniform_f32();
            }
            box_muller_16(kernel, tail);
        }
        data
    }
}

/// Box–Muller on one block of 16 uniforms in place, pairing `j` with `j + 8`.
fn box_muller_16(kernel: NormalKernel, block: &mut [f32]) {
    let (first, second) = block.split_at_mut(8);
    for (a, b) in first.iter_mut().zip(second.iter_mut()) {
        let (n1, n2) = match kernel {
            NormalKernel::Avx2 => box_muller_avx2(*a, *b),
            NormalKernel::Scalar => box_muller_scalar(*a, *b),
        };
        *a = n1;
        *b = n2;
    }
}

fn box_muller_avx2(uniform_a: f32, uniform_b: f32) -> (f32, f32) {
    const TWO_PI: f32 = (2.0 * std::f64::consts::PI) as f32;
    let u1 = 1.0 - uniform_a;
    let radius = (-2.0 * log_ps(u1)).sqrt();
    let theta = TWO_PI * uniform_b;
    let (sin, cos) = sincos_ps(theta);
    // `_mm256_fmadd_ps(n, std, mean)` with std 1 and mean 0 is exactly `n`.
    (radius * cos, radius * sin)
}

fn box_muller_scalar(uniform_a: f32, uniform_b: f32) -> (f32, f32) {
    let u1 = 1.0 - uniform_a;
    let radius = (-2.0 * u1.ln()).sqrt();
    // `2.0f * c10::pi<double> * u2` is evaluated in double and then stored as float.
    let theta = (2.0 * std::f64::consts::PI * f64::from(uniform_b)) as f32;
    (radius * theta.cos(), radius * theta.sin())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_zero_matches_torch_first_values() {
        // torch.randn(16, generator=torch.Generator().manual_seed(0)) on an AVX2 machine.
        let values = TorchGenerator::manual_seed(0).randn(&[16]);
        let expected = [-1.125_839_8_f32, -1.152_360_2, -0.250_578_6, -0.433_878_8];
        for (got, want) in values.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn small_draws_share_the_cached_pair() {
        let mut split = TorchGenerator::manual_seed(3);
        let mut first = split.randn(&[3]);
        first.extend(split.randn(&[1]));
        let whole = TorchGenerator::manual_seed(3).randn(&[4]);
        assert_eq!(first, whole);
    }

    #[test]
    fn reseeding_clears_the_cache() {
        let mut generator = TorchGenerator::manual_seed(9);
        let first = generator.randn(&[1]);
        let again = TorchGenerator::manual_seed(9).randn(&[1]);
        assert_eq!(first, again);
    }

    #[test]
    fn randn_is_roughly_standard_normal() {
        let values = TorchGenerator::manual_seed(42).randn(&[100_000]);
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / 100_000.0;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / 100_000.0;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
    }
}
