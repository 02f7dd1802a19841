//! `SeedSequence`: numpy's `numpy.random.SeedSequence` entropy mixer (O'Neill's `seed_seq_fe`
//! design), which torchsde uses to derive a seed for every node of its Brownian tree.

const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;

/// A mixed entropy pool; [`generate_state`](Self::generate_state) draws words from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SeedSequence {
    pool: Vec<u32>,
}

fn hashmix(value: u32, hash_const: &mut u32) -> u32 {
    let mut value = value ^ *hash_const;
    *hash_const = hash_const.wrapping_mul(MULT_A);
    value = value.wrapping_mul(*hash_const);
    value ^ (value >> XSHIFT)
}

fn mix(x: u32, y: u32) -> u32 {
    let result = MIX_MULT_L
        .wrapping_mul(x)
        .wrapping_sub(MIX_MULT_R.wrapping_mul(y));
    result ^ (result >> XSHIFT)
}

/// `_int_to_uint32_array`: little-endian 32-bit words, `[0]` for zero.
pub(crate) fn int_to_words(mut value: u128) -> Vec<u32> {
    if value == 0 {
        return vec![0];
    }
    let mut words = Vec::new();
    while value > 0 {
        words.push((value & 0xffff_ffff) as u32);
        value >>= 32;
    }
    words
}

impl SeedSequence {
    /// `SeedSequence(entropy=entropy, spawn_key=spawn_key, pool_size=pool_size)`.
    pub(crate) fn new(entropy: u128, spawn_key: &[u128], pool_size: usize) -> Self {
        let mut run_entropy = int_to_words(entropy);
        let spawn_entropy: Vec<u32> = spawn_key.iter().flat_map(|&k| int_to_words(k)).collect();
        if !spawn_entropy.is_empty() && run_entropy.len() < pool_size {
            run_entropy.resize(pool_size, 0);
        }
        let entropy: Vec<u32> = run_entropy.into_iter().chain(spawn_entropy).collect();

        let mut pool = vec![0u32; pool_size];
        let mut hash_const = INIT_A;
        for (i, slot) in pool.iter_mut().enumerate() {
            *slot = hashmix(entropy.get(i).copied().unwrap_or(0), &mut hash_const);
        }
        for src in 0..pool_size {
            for dst in 0..pool_size {
                if src != dst {
                    let hashed = hashmix(pool[src], &mut hash_const);
                    pool[dst] = mix(pool[dst], hashed);
                }
            }
        }
        for &word in entropy.iter().skip(pool_size) {
            for slot in pool.iter_mut() {
                let hashed = hashmix(word, &mut hash_const);
                *slot = mix(*slot, hashed);
            }
        }
        Self { pool }
    }

    /// `generate_state(n_words)` as `uint32`.
    pub(crate) fn generate_state(&self, n_words: usize) -> Vec<u32> {
        let mut hash_const = INIT_B;
        self.pool
            .iter()
            .cycle()
            .take(n_words)
            .map(|&word| {
                let mut value = word ^ hash_const;
                hash_const = hash_const.wrapping_mul(MULT_B);
                value = value.wrapping_mul(hash_const);
                value ^ (value >> XSHIFT)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_split_into_little_endian_words() {
        assert_eq!(int_to_words(0), vec![0]);
        assert_eq!(int_to_words(5), vec![5]);
        assert_eq!(int_to_words((1 << 32) + 7), vec![7, 1]);
    }

    #[test]
    fn matches_numpy_seed_sequence_fixtures() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/seed_sequence.json"
        );
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let parse = |v: &serde_json::Value| v.as_str().unwrap().parse::<u128>().unwrap();
        for case in fixture["cases"].as_array().unwrap() {
            let entropy = parse(&case["entropy"]);
            let spawn_key: Vec<u128> = case["spawn_key"]
                .as_array()
                .unwrap()
                .iter()
                .map(parse)
                .collect();
            let pool_size = case["pool_size"].as_u64().unwrap() as usize;
            let want: Vec<u32> = case["words"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w.as_u64().unwrap() as u32)
                .collect();
            let got = SeedSequence::new(entropy, &spawn_key, pool_size).generate_state(want.len());
            assert_eq!(got, want, "entropy {entropy} spawn_key {spawn_key:?}");
        }
    }

    #[test]
    fn different_spawn_keys_give_different_states() {
        let a = SeedSequence::new(1, &[0, 0], 24).generate_state(4);
        let b = SeedSequence::new(1, &[1, 1], 24).generate_state(4);
        assert_ne!(a, b);
    }
}
