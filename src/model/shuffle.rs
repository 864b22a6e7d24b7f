//! The pre-queue's shuffle at a schedule's opening (queue order `SHUFFLE_AT_OPEN`): which
//! place each pre-queued arrival takes, derived from a seed alone, so that any instance can
//! apply it, the event streams and a rebuild can recompute it, and anyone holding the seed
//! can audit it.
//!
//! The pre-queue took the arrival sequences `first..=last` (a sequence whose token left
//! before the opening is simply not placed). The order is a Fisher–Yates shuffle of the
//! `n = last - first + 1` arrivals, driven by ChaCha20 seeded with the 32-byte seed:
//! start from the arrivals in order, and for `i` from `n - 1` down to 1 swap element `i`
//! with element `j`, `j` uniform in `0..=i` (a `u32` from the generator, drawn again while it
//! falls in the incomplete last block of size `i + 1`, then taken modulo `i + 1`). The
//! arrival at index `p` of the result takes place `first + p`: places are sequences of the
//! same range, so the pre-queue stays ahead of every later arrival.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// A drawn shuffle: the seed and the range of sequences it orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shuffle {
    pub seed: [u8; 32],
    pub first: u64,
    pub last: u64,
}

impl Shuffle {
    /// Arrivals it orders.
    pub fn len(&self) -> usize {
        (self.last + 1).saturating_sub(self.first) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The seed as stored and logged: 64 lowercase hex digits.
    pub fn seed_hex(&self) -> String {
        Self::hex_of(&self.seed)
    }

    /// A seed's hex form (see [`Self::seed_hex`]).
    pub fn hex_of(seed: &[u8; 32]) -> String {
        seed.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The seed from its hex form.
    pub fn parse_seed(hex: &str) -> Option<[u8; 32]> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut seed = [0u8; 32];
        for (i, byte) in seed.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(seed)
    }

    /// The shuffled order: element `p` is the offset from `first` of the arrival that takes
    /// place `first + p`.
    pub fn order(&self) -> Vec<u32> {
        let n = self.len();
        assert!(n <= u32::MAX as usize, "a pre-queue fits in u32 offsets");
        let mut order: Vec<u32> = (0..n as u32).collect();
        let mut rng = ChaCha20Rng::from_seed(self.seed);
        for i in (1..n).rev() {
            let j = below(&mut rng, i as u32 + 1);
            order.swap(i, j as usize);
        }
        order
    }

    /// The place of each arrival: element `i` is the place (a sequence) of arrival
    /// `first + i`.
    pub fn places(&self) -> Vec<u64> {
        let mut places = vec![0; self.len()];
        for (p, &arrival) in self.order().iter().enumerate() {
            places[arrival as usize] = self.first + p as u64;
        }
        places
    }

    /// The place of the token of `sequence` in the queue's order: its own sequence outside
    /// the shuffled range.
    pub fn place_of(places: &[u64], first: u64, sequence: u64) -> u64 {
        sequence
            .checked_sub(first)
            .and_then(|i| places.get(i as usize))
            .copied()
            .unwrap_or(sequence)
    }
}

/// A uniform integer in `0..bound` (`bound` ≥ 1): a draw in the incomplete last block of
/// `bound` values is drawn again, so no value is favoured.
fn below(rng: &mut ChaCha20Rng, bound: u32) -> u32 {
    let zone = u32::MAX - (u32::MAX - bound + 1) % bound;
    loop {
        let x = rng.next_u32();
        if x <= zone {
            return x % bound;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn shuffle(seed: u64, first: u64, last: u64) -> Shuffle {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        Shuffle {
            seed: bytes,
            first,
            last,
        }
    }

    #[test]
    fn places_are_a_permutation_of_the_range_and_depend_only_on_the_seed() {
        let s = shuffle(7, 101, 1100);
        let places = s.places();
        let mut sorted = places.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (101..=1100).collect::<Vec<_>>());
        assert_eq!(places, s.places(), "the same seed, the same order");
        assert_ne!(places, shuffle(8, 101, 1100).places(), "another seed");
        assert_ne!(places, sorted, "not arrival order");
        assert_eq!(
            Shuffle::place_of(&places, 101, 100),
            100,
            "before the range"
        );
        assert_eq!(Shuffle::place_of(&places, 101, 1101), 1101, "after it");
        assert_eq!(Shuffle::place_of(&places, 101, 101), places[0]);
        assert!(shuffle(1, 1, 0).places().is_empty(), "nobody pre-queued");
    }

    #[test]
    fn seeds_round_trip_through_hex() {
        let s = shuffle(0xdead_beef, 1, 2);
        let hex = s.seed_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(Shuffle::parse_seed(&hex), Some(s.seed));
        assert_eq!(Shuffle::parse_seed(&hex[1..]), None);
        assert_eq!(Shuffle::parse_seed(&"g".repeat(64)), None);
    }

    /// Every one of the 24 orders of 4 arrivals comes up equally often over 24 000 seeds:
    /// Pearson's chi-square with 23 degrees of freedom stays below 49.7, its 0.1 % critical
    /// value. The common slip of drawing `j` from the whole range instead of `0..=i` makes
    /// some orders almost twice as likely as others, which this fails by far.
    #[test]
    fn every_order_is_equally_likely() {
        let trials = 24_000;
        let mut seen: HashMap<Vec<u32>, u32> = HashMap::new();
        for seed in 0..trials {
            *seen.entry(shuffle(seed, 1, 4).order()).or_default() += 1;
        }
        assert_eq!(seen.len(), 24, "every order comes up");
        let expected = trials as f64 / 24.0;
        let chi2: f64 = seen
            .values()
            .map(|&o| (o as f64 - expected).powi(2) / expected)
            .sum();
        assert!(
            chi2 < 49.7,
            "chi-square {chi2:.1} over 23 degrees of freedom"
        );
    }

    #[test]
    fn draws_below_a_bound_stay_below_it() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        for bound in [1, 2, 3, 1000, u32::MAX] {
            for _ in 0..100 {
                assert!(below(&mut rng, bound) < bound);
            }
        }
    }
}
