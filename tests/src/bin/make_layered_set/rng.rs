//! A small integer PRNG (SplitMix64). The set must come out the same on every machine and
//! with every version of every dependency, so the random streams are defined here rather than
//! borrowed from a crate whose algorithms may change between releases.

/// SplitMix64 (Steele, Lea and Flood 2014): 64 bits of state, integer operations only.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from a sample's name (FNV-1a), so that each sample's content depends
    /// on its own name only: adding or reordering samples leaves the others unchanged.
    pub fn from_name(name: &str) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in name.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Rng(hash)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform integer in `lo..=hi` (multiply-shift: no modulo bias worth speaking of, and
    /// no rejection loop whose length could depend on anything but the stream).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        assert!(lo <= hi, "empty range {lo}..={hi}");
        let span = (hi - lo) as u128 + 1;
        lo + ((u128::from(self.next_u64()) * span) >> 64) as i64
    }

    /// A uniform float in `[0, 1)`: 53 random bits divided by 2^53, exact on every platform.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform float in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: i64, den: i64) -> bool {
        self.range(0, den - 1) < num
    }

    /// One of `items`, uniformly.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as i64 - 1) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream is SplitMix64's: the first output for state 0 is the published reference
    /// value, so the generator is the algorithm it claims to be.
    #[test]
    fn splitmix64_reference_value() {
        assert_eq!(Rng(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }
}
