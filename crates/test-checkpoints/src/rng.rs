//! Deterministic, counter-based random values: every element of every tensor is a pure function
//! of `(seed, canonical tensor key, element index)`.
//!
//! Counter-based (rather than a sequential stream) so that one canonical tensor can be written
//! whole in one layout and sliced, transposed or concatenated in another (diffusers' split q/k/v,
//! open_clip's fused `in_proj_weight`) while every layout still holds bit-identical values.

/// SplitMix64's finaliser: a bijective 64-bit mixer.
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over the key bytes, then mixed with the seed: the per-tensor stream id.
pub(crate) fn stream_id(seed: u64, key: &str) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    splitmix64(hash ^ splitmix64(seed))
}

/// Two independent standard normal samples for counter `pair` of stream `stream` (Box-Muller).
fn normal_pair(stream: u64, pair: u64) -> (f32, f32) {
    let bits = splitmix64(stream ^ pair.wrapping_mul(0xD1B5_4A32_D192_ED03));
    // 24-bit uniforms; the +0.5 keeps u1 strictly inside (0, 1) so ln(u1) is finite.
    let u1 = (((bits >> 40) as f32) + 0.5) * (1.0 / 16_777_216.0);
    let u2 = ((bits & 0x00FF_FFFF) as f32) * (1.0 / 16_777_216.0);
    let radius = (-2.0 * u1.ln()).sqrt();
    let (sin, cos) = (std::f32::consts::TAU * u2).sin_cos();
    (radius * cos, radius * sin)
}

/// Writes `mean + std * N(0,1)` for elements `start .. start + out.len()` of stream `stream`.
pub(crate) fn fill_normal(stream: u64, start: usize, mean: f32, std: f32, out: &mut [f32]) {
    let mut index = start;
    let mut position = 0;
    if index % 2 == 1 && position < out.len() {
        let (_, second) = normal_pair(stream, (index / 2) as u64);
        out[position] = mean + std * second;
        index += 1;
        position += 1;
    }
    while position + 1 < out.len() {
        let (first, second) = normal_pair(stream, (index / 2) as u64);
        out[position] = mean + std * first;
        out[position + 1] = mean + std * second;
        index += 2;
        position += 2;
    }
    if position < out.len() {
        let (first, _) = normal_pair(stream, (index / 2) as u64);
        out[position] = mean + std * first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_agree_with_the_whole() {
        let stream = stream_id(7, "diffusion_model.x");
        let mut whole = vec![0.0; 101];
        fill_normal(stream, 0, 0.0, 1.0, &mut whole);
        for start in [0, 1, 2, 33, 50] {
            let mut part = vec![0.0; 41];
            fill_normal(stream, start, 0.0, 1.0, &mut part);
            assert_eq!(&whole[start..start + 41], &part[..]);
        }
    }

    #[test]
    fn samples_look_standard_normal() {
        let mut values = vec![0.0f32; 200_000];
        fill_normal(stream_id(1, "k"), 0, 0.0, 1.0, &mut values);
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }

    #[test]
    fn seeds_and_keys_change_values() {
        let mut a = [0.0; 4];
        let mut b = [0.0; 4];
        let mut c = [0.0; 4];
        fill_normal(stream_id(1, "a"), 0, 0.0, 1.0, &mut a);
        fill_normal(stream_id(2, "a"), 0, 0.0, 1.0, &mut b);
        fill_normal(stream_id(1, "b"), 0, 0.0, 1.0, &mut c);
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
