//! Deterministic, counter-based random values: every element of every tensor is a pure function
//! of `(seed, canonical tensor key, element index)`.
//!
//! Counter-based (rather than a sequential stream) so that one canonical tensor can be written
//! whole in one layout and sliced, transposed or concatenated in another (diffusers' split q/k/v,
//! open_clip's fused `in_proj_weight`) while every layout still holds bit-identical values.
//! Each element hashes its counter into a fixed table of Box-Muller normal samples (see
//! [`fill_normal`]).

use std::sync::OnceLock;

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

/// log2 of the number of pre-drawn standard normal samples.
const TABLE_BITS: u32 = 13;
const TABLE_LEN: usize = 1 << TABLE_BITS;

/// 2^13 standard normal samples drawn once with the Box-Muller transform from a fixed SplitMix64
/// stream. Elements index it through a per-element hash: one hash and one load per element is
/// what keeps writing hundreds of millions of values fast in an opt-level-1 build; the table
/// fits the L1 cache (random lookups into a larger one cost more than the hash), and 8192
/// distinct N(0, 1) samples are plenty for test weights.
fn normal_table() -> &'static [f32; TABLE_LEN] {
    static TABLE: OnceLock<Box<[f32; TABLE_LEN]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Box::new([0.0f32; TABLE_LEN]);
        let mut counter: u64 = 0x5EED_0F7A_B1E0;
        for pair in table.chunks_exact_mut(2) {
            counter = counter.wrapping_add(1);
            let bits = splitmix64(counter);
            // 32-bit uniforms; the +0.5 keeps u1 strictly inside (0, 1) so ln(u1) is finite.
            let u1 = ((bits >> 32) as f64 + 0.5) / 4_294_967_296.0;
            let u2 = (bits & 0xFFFF_FFFF) as f64 / 4_294_967_296.0;
            let radius = (-2.0 * u1.ln()).sqrt();
            let (sin, cos) = (std::f64::consts::TAU * u2).sin_cos();
            pair[0] = (radius * cos) as f32;
            pair[1] = (radius * sin) as f32;
        }
        table
    })
}

/// Writes `mean + std * N(0,1)` for elements `start .. start + out.len()` of stream `stream`.
pub(crate) fn fill_normal(stream: u64, start: usize, mean: f32, std: f32, out: &mut [f32]) {
    let table = normal_table();
    let mut index = start as u64;
    for slot in out.iter_mut() {
        let hash = splitmix64(stream ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        *slot = mean + std * table[(hash >> (64 - TABLE_BITS)) as usize & (TABLE_LEN - 1)];
        index = index.wrapping_add(1);
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
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        // The 8192-entry table fixes the pool: its own sample mean/variance are what show.
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
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
