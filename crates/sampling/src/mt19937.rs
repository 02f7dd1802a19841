//! `Mt19937`: the 32-bit Mersenne Twister exactly as PyTorch's CPU generator runs it.
//!
//! PyTorch (`ATen/core/MT19937RNGEngine.h`) uses the textbook MT19937 with the standard
//! initialisation multiplier 1812433253, seeded with the low 32 bits of the 64-bit seed. The
//! state is regenerated lazily on the first draw after seeding.

const STATE_SIZE: usize = 624;
const MIDDLE: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// A Mersenne Twister (MT19937) producing 32-bit words.
#[derive(Clone)]
pub(crate) struct Mt19937 {
    state: [u32; STATE_SIZE],
    next: usize,
    left: usize,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mt19937")
            .field("next", &self.next)
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

impl Mt19937 {
    /// Seeds the generator the way `at::mt19937(seed)` does: only the low 32 bits count.
    pub(crate) fn new(seed: u64) -> Self {
        let mut state = [0u32; STATE_SIZE];
        // Truncation is the point: torch keeps `seed & 0xffffffff`.
        state[0] = (seed & 0xffff_ffff) as u32;
        for j in 1..STATE_SIZE {
            let previous = state[j - 1];
            state[j] = 1_812_433_253u32
                .wrapping_mul(previous ^ (previous >> 30))
                .wrapping_add(j as u32);
        }
        Self {
            state,
            next: 0,
            left: 1,
        }
    }

    fn regenerate(&mut self) {
        self.left = STATE_SIZE;
        self.next = 0;
        for i in 0..STATE_SIZE {
            let y = (self.state[i] & UPPER_MASK) | (self.state[(i + 1) % STATE_SIZE] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.state[i] = self.state[(i + MIDDLE) % STATE_SIZE] ^ (y >> 1) ^ mag;
        }
    }

    /// The next tempered 32-bit word.
    pub(crate) fn next_u32(&mut self) -> u32 {
        self.left -= 1;
        if self.left == 0 {
            self.regenerate();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_mt19937_sequence() {
        // std::mt19937 with the default seed 5489 yields 3499211612 first and 4123659995 as
        // its 10000th output (C++ standard, [rand.predef]).
        let mut mt = Mt19937::new(5489);
        assert_eq!(mt.next_u32(), 3_499_211_612);
        for _ in 1..9_999 {
            mt.next_u32();
        }
        assert_eq!(mt.next_u32(), 4_123_659_995);
    }

    #[test]
    fn only_the_low_32_bits_of_the_seed_count() {
        let mut a = Mt19937::new(5);
        let mut b = Mt19937::new((1u64 << 32) + 5);
        for _ in 0..1000 {
            assert_eq!(a.next_u32(), b.next_u32());
        }
    }
}
