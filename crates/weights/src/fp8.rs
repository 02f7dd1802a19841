//! fp8 e4m3fn and e5m2: decoding of all 256 codes (functions and lookup tables) and rounding
//! encoders from `f32`.
//!
//! Decoding is exact (every fp8 value is an `f32`). The tables are built by a `const fn`, so they
//! live in the binary's read-only data and can be uploaded to a device for `index_select`
//! widening.
//!
//! # Encoding and overflow
//!
//! Both encoders round to nearest, ties to even. They differ only in what happens to values
//! beyond the largest finite code:
//!
//! * [`f32_to_e4m3fn`] / [`f32_to_e5m2`] follow PyTorch 2.15's `tensor.to(torch.float8_e4m3fn)`
//!   / `.to(torch.float8_e5m2)` byte for byte (checked against torch-written fixtures in
//!   `tests/foreign_files.rs`): e4m3fn saturates anything that rounds above 448 (and ±inf) to
//!   ±448 (PyTorch PR #178817; older PyTorch gave NaN); e5m2 turns anything that rounds above
//!   57344 (`|x| >= 61440`) into ±inf. NaN is `0x7F` with the input's sign in both formats.
//! * [`f32_to_e4m3fn_saturating`] / [`f32_to_e5m2_saturating`] clamp to ±448 / ±57344 (±inf too),
//!   as NVIDIA's `__NV_SATFINITE` conversion and the `float8` crate's `from_f32` do. Use these when
//!   quantising weights yourself: one outlier must not become infinite.
//!
//! NaN inputs become the format's NaN with the input's sign in both variants.

/// Which fp8 layout, with its exponent-bias and mantissa width.
#[derive(Clone, Copy)]
struct Layout {
    mantissa_bits: u32,
    bias: i32,
    /// Largest finite code without the sign bit.
    max_finite: u8,
    /// Code (without sign) produced on overflow by the PyTorch-compatible encoder.
    overflow: u8,
    /// Code (without sign) for NaN.
    nan: u8,
}

const E4M3FN: Layout = Layout {
    mantissa_bits: 3,
    bias: 7,
    max_finite: 0x7E,
    overflow: 0x7F,
    nan: 0x7F,
};

const E5M2: Layout = Layout {
    mantissa_bits: 2,
    bias: 15,
    max_finite: 0x7B,
    overflow: 0x7C,
    // PyTorch writes NaN as 0x7F (`f_bits > fp32_inf ? 0x7F : 0x7C` in c10's Float8_e5m2.h).
    nan: 0x7F,
};

/// Builds the `f32` bit pattern of an fp8 code's magnitude from its exponent and mantissa fields
/// (both formats share the scheme; only widths and bias differ).
const fn finite_magnitude_bits(exponent: u32, mantissa: u32, layout: Layout) -> u32 {
    let mbits = layout.mantissa_bits;
    if exponent == 0 {
        if mantissa == 0 {
            return 0;
        }
        // Subnormal: renormalise so the leading mantissa bit becomes the implicit one.
        let mut exp = 1 - layout.bias;
        let mut m = mantissa;
        while m & (1 << mbits) == 0 {
            m <<= 1;
            exp -= 1;
        }
        let m = m & ((1 << mbits) - 1);
        (((exp + 127) as u32) << 23) | (m << (23 - mbits))
    } else {
        let exp = exponent as i32 - layout.bias;
        (((exp + 127) as u32) << 23) | (mantissa << (23 - mbits))
    }
}

/// Decodes one fp8 e4m3fn code: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities;
/// `0x7F`/`0xFF` are NaN; largest finite magnitude 448.
pub const fn e4m3fn_to_f32(code: u8) -> f32 {
    let sign = ((code as u32) >> 7) << 31;
    let exponent = ((code >> 3) & 0x0F) as u32;
    let mantissa = (code & 0x07) as u32;
    if exponent == 0x0F && mantissa == 0x07 {
        return f32::from_bits(sign | 0x7FC0_0000);
    }
    f32::from_bits(sign | finite_magnitude_bits(exponent, mantissa, E4M3FN))
}

/// Decodes one fp8 e5m2 code: 1 sign, 5 exponent (bias 15), 2 mantissa bits; IEEE-like, with ±inf
/// at `0x7C`/`0xFC` and NaNs at `0x7D..=0x7F`/`0xFD..=0xFF`; largest finite magnitude 57344.
pub const fn e5m2_to_f32(code: u8) -> f32 {
    let sign = ((code as u32) >> 7) << 31;
    let exponent = ((code >> 2) & 0x1F) as u32;
    let mantissa = (code & 0x03) as u32;
    if exponent == 0x1F {
        let special = if mantissa == 0 {
            0x7F80_0000
        } else {
            0x7FC0_0000
        };
        return f32::from_bits(sign | special);
    }
    f32::from_bits(sign | finite_magnitude_bits(exponent, mantissa, E5M2))
}

// Function pointers cannot be called in a `const fn`, hence one builder per format.
const fn build_e4m3fn_table() -> [f32; 256] {
    let mut table = [0.0f32; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = e4m3fn_to_f32(code as u8);
        code += 1;
    }
    table
}

const fn build_e5m2_table() -> [f32; 256] {
    let mut table = [0.0f32; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = e5m2_to_f32(code as u8);
        code += 1;
    }
    table
}

/// `E4M3FN_TABLE[code]` is [`e4m3fn_to_f32`]`(code)`.
pub static E4M3FN_TABLE: [f32; 256] = build_e4m3fn_table();

/// `E5M2_TABLE[code]` is [`e5m2_to_f32`]`(code)`.
pub static E5M2_TABLE: [f32; 256] = build_e5m2_table();

/// Rounds `|value|` (finite, non-NaN) to the nearest code magnitude, ties to even, without any
/// overflow handling: the result may exceed `max_finite`.
fn round_magnitude(magnitude: f32, layout: Layout) -> u32 {
    let min_normal_exp = 1 - layout.bias;
    let steps_per_binade = 1u32 << layout.mantissa_bits;
    let exp = if magnitude == 0.0 {
        min_normal_exp
    } else {
        // `floor(log2)` from the f32 exponent field; subnormal f32s are far below fp8 range
        // and land in the fp8 subnormal branch either way.
        let biased = ((magnitude.to_bits() >> 23) & 0xFF) as i32;
        (biased - 127).max(min_normal_exp)
    };
    // Quantum of the binade `exp` (for subnormals: the fixed subnormal step). Scaling by a
    // power of two is exact, so the only rounding is `round_ties_even`.
    let quantum_exp = exp - layout.mantissa_bits as i32;
    let steps = (magnitude * 2f32.powi(-quantum_exp)).round_ties_even() as u32;
    if exp == min_normal_exp && steps < steps_per_binade {
        // Subnormal (or zero): the code is the step count itself.
        return steps;
    }
    // Normal: `steps` is in [2^m, 2^(m+1)]; the carry at 2^(m+1) rolls into the next exponent.
    let biased_exp = (exp + layout.bias) as u32;
    (biased_exp << layout.mantissa_bits) + (steps - steps_per_binade)
}

fn encode(value: f32, layout: Layout, saturate: bool) -> u8 {
    let sign = ((value.to_bits() >> 31) as u8) << 7;
    if value.is_nan() {
        return sign | layout.nan;
    }
    let magnitude = value.abs();
    let code = if magnitude.is_infinite() {
        u32::MAX
    } else {
        round_magnitude(magnitude, layout)
    };
    let code = if code <= layout.max_finite as u32 {
        code as u8
    } else if saturate {
        layout.max_finite
    } else {
        layout.overflow
    };
    sign | code
}

/// Encodes to e4m3fn like current PyTorch's `.to(torch.float8_e4m3fn)` (2.15+, PyTorch PR
/// #178817): round to nearest even; values that round past 448 and ±inf saturate to ±448, NaN
/// stays NaN. (Earlier PyTorch turned overflow into NaN; saturating is what a checkpoint wants.)
pub fn f32_to_e4m3fn(value: f32) -> u8 {
    encode(value, E4M3FN, true)
}

/// Encodes to e4m3fn, round to nearest even, clamping overflow (and ±inf) to ±448.
pub fn f32_to_e4m3fn_saturating(value: f32) -> u8 {
    encode(value, E4M3FN, true)
}

/// Encodes to e5m2 like PyTorch's `.to(torch.float8_e5m2)`: round to nearest even; overflow
/// becomes ±inf.
pub fn f32_to_e5m2(value: f32) -> u8 {
    encode(value, E5M2, false)
}

/// Encodes to e5m2, round to nearest even, clamping overflow (and ±inf) to ±57344.
pub fn f32_to_e5m2_saturating(value: f32) -> u8 {
    encode(value, E5M2, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent decoder written straight from the format definition, in f64.
    fn reference(code: u8, exp_bits: u32, mant_bits: u32, ieee_specials: bool) -> f64 {
        let sign = if code & 0x80 != 0 { -1.0 } else { 1.0 };
        let e = ((code as u32) >> mant_bits) & ((1 << exp_bits) - 1);
        let m = (code as u32) & ((1 << mant_bits) - 1);
        let bias = (1i32 << (exp_bits - 1)) - 1;
        let e_max = (1 << exp_bits) - 1;
        if ieee_specials && e == e_max {
            return if m == 0 {
                sign * f64::INFINITY
            } else {
                f64::NAN
            };
        }
        if !ieee_specials && e == e_max && m == (1 << mant_bits) - 1 {
            return f64::NAN;
        }
        let frac = m as f64 / (1u32 << mant_bits) as f64;
        if e == 0 {
            sign * 2f64.powi(1 - bias) * frac
        } else {
            sign * 2f64.powi(e as i32 - bias) * (1.0 + frac)
        }
    }

    fn same(a: f32, b: f64) -> bool {
        (a.is_nan() && b.is_nan())
            || (a as f64 == b && a.is_sign_negative() == b.is_sign_negative())
    }

    #[test]
    fn every_e4m3fn_code_matches_the_formula_and_the_float8_crate() {
        for code in 0..=255u8 {
            let ours = e4m3fn_to_f32(code);
            assert!(
                same(ours, reference(code, 4, 3, false)),
                "code {code:#04x}: {ours}"
            );
            assert_eq!(E4M3FN_TABLE[code as usize].to_bits(), ours.to_bits());
            let theirs = float8::F8E4M3::from_bits(code).to_f32();
            assert!(
                same(ours, theirs as f64),
                "code {code:#04x}: {ours} vs float8 {theirs}"
            );
        }
        assert_eq!(e4m3fn_to_f32(0x7E), 448.0);
        assert_eq!(e4m3fn_to_f32(0x01), 2f32.powi(-9));
        assert!(e4m3fn_to_f32(0xFF).is_nan());
        assert_eq!(
            (0..=255u8)
                .filter(|&c| e4m3fn_to_f32(c).is_infinite())
                .count(),
            0
        );
    }

    #[test]
    fn every_e5m2_code_matches_the_formula_and_the_float8_crate() {
        for code in 0..=255u8 {
            let ours = e5m2_to_f32(code);
            assert!(
                same(ours, reference(code, 5, 2, true)),
                "code {code:#04x}: {ours}"
            );
            assert_eq!(E5M2_TABLE[code as usize].to_bits(), ours.to_bits());
            let theirs = float8::F8E5M2::from_bits(code).to_f32();
            assert!(
                same(ours, theirs as f64),
                "code {code:#04x}: {ours} vs float8 {theirs}"
            );
            // e5m2 is the top byte of an IEEE half.
            let half = half::f16::from_bits((code as u16) << 8).to_f32();
            assert!(same(ours, half as f64));
        }
        assert_eq!(e5m2_to_f32(0x7C), f32::INFINITY);
        assert_eq!(e5m2_to_f32(0xFC), f32::NEG_INFINITY);
        assert_eq!(e5m2_to_f32(0x7B), 57344.0);
        assert_eq!(e5m2_to_f32(0x01), 2f32.powi(-16));
        assert_eq!((0..=255u8).filter(|&c| e5m2_to_f32(c).is_nan()).count(), 6);
    }

    #[test]
    fn every_finite_code_round_trips_through_both_encoders() {
        for code in 0..=255u8 {
            let v = e4m3fn_to_f32(code);
            if !v.is_nan() {
                assert_eq!(f32_to_e4m3fn(v), code, "e4m3fn {code:#04x}");
                assert_eq!(f32_to_e4m3fn_saturating(v), code);
            }
            let v = e5m2_to_f32(code);
            if v.is_finite() {
                assert_eq!(f32_to_e5m2(v), code, "e5m2 {code:#04x}");
                assert_eq!(f32_to_e5m2_saturating(v), code);
            } else if v.is_infinite() {
                assert_eq!(f32_to_e5m2(v), code);
            }
        }
    }

    #[test]
    fn midpoints_round_to_even() {
        for (decode, encode, max) in [
            (
                e4m3fn_to_f32 as fn(u8) -> f32,
                f32_to_e4m3fn as fn(f32) -> u8,
                0x7Eu8,
            ),
            (e5m2_to_f32, f32_to_e5m2, 0x7B),
        ] {
            for code in 0..max {
                let (lo, hi) = (decode(code), decode(code + 1));
                let mid = (lo + hi) / 2.0; // exact in f32 for 8-bit neighbours
                let even = if code % 2 == 0 { code } else { code + 1 };
                assert_eq!(
                    encode(mid),
                    even,
                    "between {code:#04x} and {:#04x}",
                    code + 1
                );
                assert_eq!(encode(-mid), even | 0x80);
            }
        }
    }

    #[test]
    fn overflow_follows_pytorch_or_saturates() {
        assert_eq!(f32_to_e4m3fn(464.0), 0x7E); // tie to even: 448
        assert_eq!(f32_to_e4m3fn(470.0), 0x7E); // rounds to 480: saturates, as PyTorch 2.15
        assert_eq!(f32_to_e4m3fn(-1e6), 0xFE);
        assert_eq!(f32_to_e4m3fn(f32::INFINITY), 0x7E);
        assert_eq!(f32_to_e4m3fn(f32::NAN), 0x7F);
        assert_eq!(f32_to_e5m2(f32::NAN), 0x7F);
        assert_eq!(f32_to_e4m3fn_saturating(470.0), 0x7E);
        assert_eq!(f32_to_e4m3fn_saturating(f32::NEG_INFINITY), 0xFE);
        assert_eq!(f32_to_e5m2(61440.0), 0x7C);
        assert_eq!(f32_to_e5m2(61439.0), 0x7B);
        assert_eq!(f32_to_e5m2(-1e9), 0xFC);
        assert_eq!(f32_to_e5m2_saturating(1e9), 0x7B);
        assert!(e4m3fn_to_f32(f32_to_e4m3fn(f32::NAN)).is_nan());
        assert!(e5m2_to_f32(f32_to_e5m2_saturating(f32::NAN)).is_nan());
        assert_eq!(f32_to_e4m3fn(1e-30), 0);
        assert_eq!(f32_to_e4m3fn(-1e-30), 0x80);
    }

    #[test]
    fn saturating_encoders_agree_with_the_float8_crate_on_a_sweep() {
        // Deterministic sweep over f32 bit patterns spanning all magnitudes fp8 can see.
        let mut bits: u32 = 0x2F00_0000;
        while bits < 0x4800_0000 {
            for value in [f32::from_bits(bits), -f32::from_bits(bits)] {
                assert_eq!(
                    f32_to_e4m3fn_saturating(value),
                    float8::F8E4M3::from_f32(value).to_bits(),
                    "e4m3fn {value:e}"
                );
                assert_eq!(
                    f32_to_e5m2_saturating(value),
                    float8::F8E5M2::from_f32(value).to_bits(),
                    "e5m2 {value:e}"
                );
            }
            bits += 0x0000_1235;
        }
    }
}
