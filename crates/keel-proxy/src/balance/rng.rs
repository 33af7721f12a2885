//! The balancer's randomness: a seedable, lock-free generator shared by every connection.
//!
//! SplitMix64 over one atomic counter: each draw is a `fetch_add` of the golden-ratio increment
//! followed by the SplitMix finaliser, so concurrent picks never wait on each other and never
//! see the same value. Production seeds it from the OS; tests seed it to replay a run exactly.

use std::sync::atomic::{AtomicU64, Ordering};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// A thread-safe SplitMix64 generator.
#[derive(Debug)]
pub struct SplitMix {
    state: AtomicU64,
}

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix {
            state: AtomicU64::new(seed),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GOLDEN, Ordering::Relaxed)
            .wrapping_add(GOLDEN);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`0` when `n` is 0), by Lemire's multiply-shift.
    pub fn below(&self, n: u64) -> u64 {
        scale(self.next_u64(), n)
    }
}

/// Maps 64 random bits onto `0..n` without a division (bias below 2^-32 for any `n` < 2^32).
pub fn scale(bits: u64, n: u64) -> u64 {
    ((u128::from(bits) * u128::from(n)) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_replays_the_same_sequence() {
        let a = SplitMix::new(7);
        let b = SplitMix::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let rng = SplitMix::new(1);
        let mut seen = [0u32; 5];
        for _ in 0..5000 {
            let v = rng.below(5) as usize;
            seen[v] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        assert_eq!(rng.below(0), 0);
    }
}
