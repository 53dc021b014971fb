//! Exponential backoff, the one kind of wait between attempts kafkad knows: sink retries
//! (`[retry]`, with jitter so a fleet of consumers does not retry in step), dead-letter copies,
//! `topic ensure` waiting for its brokers, and a replayed record the sink failed on.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Waits that grow: `initial` after the first failure, times `multiplier` after each further
/// one, never above `max`, each varied by up to `jitter` (a fraction) either way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub multiplier: f64,
    pub max: Duration,
    pub jitter: f64,
}

impl Backoff {
    /// `initial`, doubling up to `max`, without jitter.
    pub const fn doubling(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            multiplier: 2.0,
            max,
            jitter: 0.0,
        }
    }

    /// The same waits without jitter.
    pub const fn steady(self) -> Self {
        Backoff {
            jitter: 0.0,
            ..self
        }
    }

    /// The wait after the `failed`-th failure (1 for the first), varied by `random`, a number
    /// in [0, 1) (see [`Jitter`]; any value when there is no jitter).
    pub fn delay(&self, failed: u32, random: f64) -> Duration {
        let exponent = i32::try_from(failed.saturating_sub(1)).unwrap_or(i32::MAX);
        let max = self.max.as_secs_f64();
        let base = (self.initial.as_secs_f64() * self.multiplier.powi(exponent)).min(max);
        let spread = self.jitter * (2.0 * random - 1.0);
        Duration::from_secs_f64((base * (1.0 + spread)).clamp(0.0, max))
    }
}

/// The randomness of jittered waits: different in every process, so that consumers of one
/// group that failed together do not retry together. Not for anything but spreading waits.
#[derive(Debug)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new() -> Self {
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Jitter(seed | 1)
    }

    /// A number in [0, 1) (xorshift).
    pub fn uniform(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Jitter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_by_the_multiplier_up_to_max() {
        let backoff = Backoff::doubling(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<u128> = (1..=6).map(|n| backoff.delay(n, 0.5).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.delay(u32::MAX, 0.5), Duration::from_secs(1));
    }

    #[test]
    fn jitter_varies_a_wait_within_its_fraction_and_never_above_max() {
        let backoff = Backoff {
            initial: Duration::from_secs(1),
            multiplier: 1.0,
            max: Duration::from_millis(1100),
            jitter: 0.2,
        };
        let mut jitter = Jitter::new();
        for _ in 0..1000 {
            let wait = backoff.delay(1, jitter.uniform());
            assert!(wait >= Duration::from_millis(800), "{wait:?}");
            assert!(wait <= Duration::from_millis(1100), "{wait:?}");
        }
        assert_eq!(backoff.steady().delay(1, 0.99), Duration::from_secs(1));
    }
}
