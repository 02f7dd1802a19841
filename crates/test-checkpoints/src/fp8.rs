//! fp8 encoders: `float8_e4m3fn` and `float8_e5m2`, round-to-nearest-even, saturating at the
//! largest finite value (as ComfyUI's clamping cast does), NaN to the canonical NaN.
//!
//! Layouts: e4m3fn = 1 sign, 4 exponent (bias 7), 3 mantissa bits, no infinities, `0x7F` NaN,
//! largest finite 448. e5m2 = 1 sign, 5 exponent (bias 15), 2 mantissa bits, IEEE-like, largest
//! finite 57344.

/// Which fp8 format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fp8Kind {
    /// `float8_e4m3fn`.
    E4M3,
    /// `float8_e5m2`.
    E5M2,
}

struct Format {
    mantissa_bits: i32,
    bias: i32,
    max_finite: f32,
    max_finite_code: u8,
    nan_code: u8,
}

impl Fp8Kind {
    fn format(self) -> Format {
        match self {
            Fp8Kind::E4M3 => Format {
                mantissa_bits: 3,
                bias: 7,
                max_finite: 448.0,
                max_finite_code: 0x7E,
                nan_code: 0x7F,
            },
            Fp8Kind::E5M2 => Format {
                mantissa_bits: 2,
                bias: 15,
                max_finite: 57344.0,
                max_finite_code: 0x7B,
                nan_code: 0x7F,
            },
        }
    }

    /// Largest finite magnitude.
    pub fn max_finite(self) -> f32 {
        self.format().max_finite
    }

    /// Encodes one value (round to nearest even, saturating).
    pub fn encode(self, value: f32) -> u8 {
        let format = self.format();
        let bits = value.to_bits();
        let sign = ((bits >> 24) & 0x80) as u8;
        let magnitude_bits = bits & 0x7FFF_FFFF;
        if magnitude_bits > 0x7F80_0000 {
            return sign | format.nan_code;
        }
        let magnitude = f32::from_bits(magnitude_bits);
        if magnitude >= format.max_finite {
            return sign | format.max_finite_code;
        }
        let exponent = (magnitude_bits >> 23) as i32 - 127;
        let min_normal_exponent = 1 - format.bias;
        if exponent < min_normal_exponent {
            // Subnormal: scale so one step is 1 (exact, a power of two), then round to nearest
            // even by adding and removing 2^23 (default rounding mode, no fast-math).
            let scaled = magnitude * 2f32.powi(format.mantissa_bits - min_normal_exponent);
            let rounded = (scaled + 8_388_608.0) - 8_388_608.0;
            return sign | rounded as u8;
        }
        // Normal: round the f32 bits to `mantissa_bits` (ties to even; a carry moves into the
        // exponent as it should), then rebias the exponent.
        let shift = (23 - format.mantissa_bits) as u32;
        let odd = (magnitude_bits >> shift) & 1;
        let rounded = (magnitude_bits + (1 << (shift - 1)) - 1 + odd) >> shift;
        let rebias = ((127 - format.bias) as u32) << format.mantissa_bits;
        sign | (rounded - rebias) as u8
    }

    /// Reference encoder: plain float arithmetic, the slow twin [`Fp8Kind::encode`] is tested
    /// against.
    #[cfg(test)]
    fn encode_reference(self, value: f32) -> u8 {
        let format = self.format();
        let sign = if value.is_sign_negative() { 0x80 } else { 0x00 };
        if value.is_nan() {
            return sign | format.nan_code;
        }
        let magnitude = value.abs();
        if magnitude >= format.max_finite {
            return sign | format.max_finite_code;
        }
        let min_normal_exponent = 1 - format.bias;
        let mantissa_scale = (1i32 << format.mantissa_bits) as f32;
        // Exact binary exponent from the f32 bits (f32 subnormals are far below fp8's range).
        let mut exponent = ((magnitude.to_bits() >> 23) & 0xFF) as i32 - 127;
        if magnitude == 0.0 || exponent < min_normal_exponent {
            // Subnormal: multiples of 2^(min_normal_exponent - mantissa_bits). A result of
            // 2^mantissa_bits is the smallest normal, which the same integer encodes.
            let step = 2f32.powi(min_normal_exponent - format.mantissa_bits);
            let quantum = (magnitude / step).round_ties_even() as u8;
            return sign | quantum;
        }
        let fraction = magnitude / 2f32.powi(exponent) - 1.0;
        let mut mantissa = (fraction * mantissa_scale).round_ties_even() as i32;
        if mantissa == 1 << format.mantissa_bits {
            mantissa = 0;
            exponent += 1;
        }
        let code = (((exponent + format.bias) << format.mantissa_bits) | mantissa) as u8;
        sign | code.min(format.max_finite_code)
    }

    /// Decodes one byte (used by the tests and by scale computations).
    pub fn decode(self, byte: u8) -> f32 {
        let format = self.format();
        let sign = if byte & 0x80 != 0 { -1.0 } else { 1.0 };
        let exponent_bits = i32::from((byte & 0x7F) >> format.mantissa_bits);
        let mantissa = i32::from(byte) & ((1 << format.mantissa_bits) - 1);
        let mantissa_scale = (1i32 << format.mantissa_bits) as f32;
        match self {
            Fp8Kind::E4M3 if byte & 0x7F == 0x7F => return f32::NAN,
            Fp8Kind::E5M2 if exponent_bits == 31 => {
                return if mantissa == 0 {
                    sign * f32::INFINITY
                } else {
                    f32::NAN
                };
            }
            _ => {}
        }
        if exponent_bits == 0 {
            return sign * (mantissa as f32 / mantissa_scale) * 2f32.powi(1 - format.bias);
        }
        sign * (1.0 + mantissa as f32 / mantissa_scale) * 2f32.powi(exponent_bits - format.bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_encoder_matches_reference() {
        let mut state = 12345u64;
        for kind in [Fp8Kind::E4M3, Fp8Kind::E5M2] {
            for bits in (0..=u16::MAX).step_by(1) {
                let value = half::f16::from_bits(bits).to_f32();
                if !value.is_nan() {
                    assert_eq!(
                        kind.encode(value),
                        kind.encode_reference(value),
                        "{kind:?} {value}"
                    );
                }
            }
            for _ in 0..200_000 {
                state = crate::rng::splitmix64(state);
                let value = f32::from_bits((state >> 32) as u32);
                if value.is_finite() {
                    assert_eq!(
                        kind.encode(value),
                        kind.encode_reference(value),
                        "{kind:?} {value:e}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_finite_code_round_trips() {
        for kind in [Fp8Kind::E4M3, Fp8Kind::E5M2] {
            for byte in 0..=255u8 {
                let value = kind.decode(byte);
                if value.is_finite() {
                    let back = kind.encode(value);
                    // +0 and -0 keep their sign bit.
                    assert_eq!(back, byte, "{kind:?} byte {byte:#04x} value {value}");
                }
            }
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(Fp8Kind::E4M3.encode(1.0), 0x38);
        assert_eq!(Fp8Kind::E4M3.encode(448.0), 0x7E);
        assert_eq!(Fp8Kind::E4M3.encode(1000.0), 0x7E);
        assert_eq!(Fp8Kind::E4M3.encode(-1000.0), 0xFE);
        assert_eq!(Fp8Kind::E4M3.encode(f32::NAN), 0x7F);
        assert_eq!(Fp8Kind::E4M3.decode(0x01), 2f32.powi(-9));
        assert_eq!(Fp8Kind::E5M2.encode(1.0), 0x3C);
        assert_eq!(Fp8Kind::E5M2.encode(1e9), 0x7B);
        assert_eq!(Fp8Kind::E5M2.decode(0x7B), 57344.0);
    }

    #[test]
    fn rounds_to_nearest_even() {
        // Between 1.0 (0x38) and 1.125 (0x39): the midpoint 1.0625 goes to the even code 0x38;
        // between 1.125 and 1.25 (0x3A) the midpoint 1.1875 goes to 0x3A.
        assert_eq!(Fp8Kind::E4M3.encode(1.0625), 0x38);
        assert_eq!(Fp8Kind::E4M3.encode(1.1875), 0x3A);
        assert_eq!(Fp8Kind::E4M3.encode(1.07), 0x39);
        // Subnormal midpoint: 1.5 × 2^-9 → 2 × 2^-9 (even).
        assert_eq!(Fp8Kind::E4M3.encode(1.5 * 2f32.powi(-9)), 0x02);
        assert_eq!(Fp8Kind::E4M3.encode(0.5 * 2f32.powi(-9)), 0x00);
    }

    #[test]
    fn nearest_code_is_chosen() {
        for kind in [Fp8Kind::E4M3, Fp8Kind::E5M2] {
            let finite: Vec<f32> = (0..=0x7Fu8)
                .map(|b| kind.decode(b))
                .filter(|v| v.is_finite())
                .collect();
            let mut value = 0.000_01f32;
            while value < kind.max_finite() {
                let decoded = kind.decode(kind.encode(value));
                let best = finite
                    .iter()
                    .map(|c| (c - value).abs())
                    .fold(f32::MAX, f32::min);
                assert!(
                    ((decoded - value).abs() - best).abs() <= best * 1e-6,
                    "{kind:?} {value}"
                );
                value *= 1.013;
            }
        }
    }
}
