//! Lane-by-lane emulation of PyTorch's `avx_mathfun.h` `log256_ps` and `sincos256_ps` (Cephes
//! single-precision polynomials) exactly as GCC compiles them for torch's AVX2/AVX-512 CPU
//! kernels, including which multiply–add pairs it contracts into FMA instructions.
//!
//! The contraction points were read from the disassembly of
//! `NormalFill16<float, true>::operator()` in the PyPI `torch` 2.x `libtorch_cpu.so`; every
//! `mul_add` below is one `vfmadd`/`vfnmadd`/`vfmsub` there, every plain `*` a `vmulps`.

/// The smallest positive normal f32, which `log256_ps` clamps its input to.
const MIN_NORM_POS: f32 = f32::MIN_POSITIVE;

// The constants are C double literals narrowed to float, so narrow from f64 here as well.
const SQRT_HALF: f32 = std::f64::consts::FRAC_1_SQRT_2 as f32;
const LOG_P: [f32; 9] = [
    7.037_683_629_2E-2_f64 as f32,
    -1.151_461_031_0E-1_f64 as f32,
    1.167_699_874_0E-1_f64 as f32,
    -1.242_014_084_6E-1_f64 as f32,
    1.424_932_278_7E-1_f64 as f32,
    -1.666_805_766_5E-1_f64 as f32,
    2.000_071_476_5E-1_f64 as f32,
    -2.499_999_399_3E-1_f64 as f32,
    3.333_333_117_4E-1_f64 as f32,
];
const LOG_Q1: f32 = -2.121_944_40e-4_f64 as f32;
const LOG_Q2: f32 = 0.693_359_375_f64 as f32;

const MINUS_DP1: f32 = -0.785_156_25_f64 as f32;
// Written exactly as in `avx_mathfun.h`, narrowed from double as the C compiler does.
#[allow(clippy::excessive_precision)]
const MINUS_DP2: f32 = -2.418_756_484_985_351_562_5e-4_f64 as f32;
#[allow(clippy::excessive_precision)]
const MINUS_DP3: f32 = -3.774_894_977_445_941_08e-8_f64 as f32;
const SIN_P: [f32; 3] = [
    -1.951_529_589_1E-4_f64 as f32,
    8.332_160_873_6E-3_f64 as f32,
    -1.666_665_461_1E-1_f64 as f32,
];
const COS_P: [f32; 3] = [
    2.443_315_711_809_948E-005_f64 as f32,
    -1.388_731_625_493_765E-003_f64 as f32,
    4.166_664_568_298_827E-002_f64 as f32,
];
const FOUR_OVER_PI: f32 = 1.273_239_544_735_16_f64 as f32;

const SIGN_MASK: u32 = 0x8000_0000;

/// Natural logarithm as `log256_ps` computes it for one lane. Returns NaN for `x <= 0`.
pub(crate) fn log_ps(x: f32) -> f32 {
    let invalid = x <= 0.0;
    // `_mm256_max_ps(x, min)` returns `min` when `x` is NaN; `f32::max` would return `min` too.
    let x = if x > MIN_NORM_POS { x } else { MIN_NORM_POS };
    let bits = x.to_bits();
    let exponent = (bits >> 23) as i32 - 0x7f;
    let mantissa = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    let mut e = exponent as f32 + 1.0;

    let below_sqrt_half = mantissa < SQRT_HALF;
    let tmp = if below_sqrt_half { mantissa } else { 0.0 };
    let mut x = mantissa - 1.0;
    e -= if below_sqrt_half { 1.0 } else { 0.0 };
    x += tmp;

    let z = x * x;
    let mut y = LOG_P[0];
    for &p in &LOG_P[1..] {
        y = y.mul_add(x, p);
    }
    y *= x;
    y = y.mul_add(z, e * LOG_Q1);
    y = (-z).mul_add(0.5, y);
    let x = x + y;
    let x = e.mul_add(LOG_Q2, x);
    if invalid {
        f32::from_bits(x.to_bits() | 0xffff_ffff)
    } else {
        x
    }
}

/// `(sin x, cos x)` as `sincos256_ps` computes them for one lane.
pub(crate) fn sincos_ps(x: f32) -> (f32, f32) {
    let mut sign_sin = x.to_bits() & SIGN_MASK;
    let x = f32::from_bits(x.to_bits() & !SIGN_MASK);

    let scaled = x * FOUR_OVER_PI;
    // `_mm256_cvttps_epi32`: truncation, with the "integer indefinite" value on overflow.
    let truncated = if scaled.is_finite() && scaled.abs() < 2_147_483_648.0 {
        scaled as i32
    } else {
        i32::MIN
    };
    let octant = truncated.wrapping_add(1) & !1;
    let y = octant as f32;
    let swap_sign_sin = ((octant & 4) as u32) << 29;
    let use_sin_poly_for_sin = (octant & 2) == 0;

    let x = y.mul_add(MINUS_DP1, x);
    let x = y.mul_add(MINUS_DP2, x);
    let x = y.mul_add(MINUS_DP3, x);

    let sign_cos = ((!octant.wrapping_sub(2) & 4) as u32) << 29;
    sign_sin ^= swap_sign_sin;

    let z = x * x;
    let mut cos_poly = COS_P[0].mul_add(z, COS_P[1]);
    cos_poly = cos_poly.mul_add(z, COS_P[2]);
    cos_poly *= z;
    let half_z = z * 0.5;
    cos_poly = cos_poly.mul_add(z, -half_z);
    cos_poly += 1.0;

    let mut sin_poly = SIN_P[0].mul_add(z, SIN_P[1]);
    sin_poly = sin_poly.mul_add(z, SIN_P[2]);
    sin_poly *= z;
    sin_poly = sin_poly.mul_add(x, x);

    // The vector code selects with masks and recombines with adds; keep the same operations so
    // that signed zeros come out identically.
    let (sin_from_sin, sin_from_cos) = if use_sin_poly_for_sin {
        (sin_poly, 0.0)
    } else {
        (0.0, cos_poly)
    };
    let sin = sin_from_cos + sin_from_sin;
    let cos = (sin_poly - sin_from_sin) + (cos_poly - sin_from_cos);
    (
        f32::from_bits(sin.to_bits() ^ sign_sin),
        f32::from_bits(cos.to_bits() ^ sign_cos),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_is_close_to_the_true_logarithm() {
        for i in 1..=1000 {
            let x = i as f32 / 1000.0;
            let got = log_ps(x);
            let want = (x as f64).ln();
            assert!(
                (got as f64 - want).abs() < 1e-6,
                "log({x}) = {got}, want {want}"
            );
        }
        assert!(log_ps(0.0).is_nan());
        assert!(log_ps(-1.0).is_nan());
    }

    #[test]
    fn sincos_is_close_to_the_true_functions() {
        for i in 0..=1000 {
            let x = i as f32 * (std::f32::consts::TAU / 1000.0);
            let (s, c) = sincos_ps(x);
            assert!((s as f64 - (x as f64).sin()).abs() < 1e-6, "sin({x})");
            assert!((c as f64 - (x as f64).cos()).abs() < 1e-6, "cos({x})");
        }
        let (s, c) = sincos_ps(-1.0);
        assert!((s as f64 + 1f64.sin()).abs() < 1e-6);
        assert!((c as f64 - 1f64.cos()).abs() < 1e-6);
    }
}
