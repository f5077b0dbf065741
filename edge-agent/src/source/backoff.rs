//! Reconnect delays: exponential back-off with equal jitter.
//!
//! Attempt `n` (from 0) has the ceiling `min(cap, base · 2ⁿ)` and waits a
//! uniformly random time in `[ceiling / 2, ceiling]` ("equal jitter"). Half
//! the ceiling is always waited, so a dead camera is never hammered, and the
//! other half is random, so the cameras of a site that lost its network
//! together do not reconnect in lock-step. (Full jitter, `[0, ceiling]`,
//! spreads more but can retry at once.)

use std::time::Duration;

/// The first ceiling: a camera that dropped once is back within half a second.
pub const BASE: Duration = Duration::from_millis(500);

/// Growth of the ceiling per failed attempt.
pub const FACTOR: u32 = 2;

/// Exponential back-off with equal jitter; the state of one camera's retries.
#[derive(Debug, Clone)]
pub struct Backoff {
    cap: Duration,
    attempt: u32,
    rng: XorShift64,
}

impl Backoff {
    /// Back-off up to `cap`, its jitter drawn from a generator seeded with
    /// `seed` (the same seed gives the same delays).
    pub fn new(cap: Duration, seed: u64) -> Self {
        Backoff {
            cap,
            attempt: 0,
            rng: XorShift64::new(seed),
        }
    }

    /// The ceiling of attempt `attempt` (from 0): `min(cap, BASE · FACTORⁿ)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = FACTOR.saturating_pow(attempt.min(32));
        BASE.saturating_mul(factor).min(self.cap)
    }

    /// The delay before the next attempt; each call is one more attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let spread = (ceiling - half).as_micros() as u64;
        half + Duration::from_micros(self.rng.below(spread.saturating_add(1)))
    }

    /// Attempts made since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over from the first ceiling (after a healthy run).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A seed that differs between processes, cameras and starts.
pub fn seed(camera: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ (camera as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Marsaglia's xorshift64* generator: plenty for jitter, not for secrets.
#[derive(Debug, Clone)]
struct XorShift64(u64);

impl XorShift64 {
    fn new(seed: u64) -> Self {
        // Zero is the one state xorshift never leaves.
        XorShift64(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, bound)` (0 when `bound` is 0), by rejection.
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        let zone = u64::MAX - u64::MAX % bound;
        loop {
            let x = self.next();
            if x < zone {
                return x % bound;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(30);

    #[test]
    fn ceilings_double_from_half_a_second_up_to_the_cap() {
        let backoff = Backoff::new(CAP, 1);
        let ceilings: Vec<u64> = (0..9)
            .map(|n| backoff.ceiling(n).as_millis() as u64)
            .collect();
        assert_eq!(
            ceilings,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(backoff.ceiling(u32::MAX), CAP, "no overflow, forever");
        let short = Backoff::new(Duration::from_millis(800), 1);
        assert_eq!(short.ceiling(0), Duration::from_millis(500));
        assert_eq!(short.ceiling(1), Duration::from_millis(800));
        let tiny = Backoff::new(Duration::from_millis(100), 1);
        assert_eq!(
            tiny.ceiling(0),
            Duration::from_millis(100),
            "cap below base"
        );
    }

    #[test]
    fn delays_lie_between_half_the_ceiling_and_the_ceiling() {
        for seed in 0..50 {
            let mut backoff = Backoff::new(CAP, seed);
            for attempt in 0..12 {
                let ceiling = backoff.ceiling(attempt);
                let delay = backoff.next_delay();
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "seed {seed} attempt {attempt}: {delay:?} vs {ceiling:?}"
                );
            }
            assert_eq!(backoff.attempts(), 12);
        }
    }

    #[test]
    fn a_seed_gives_the_same_delays_and_seeds_spread_them() {
        let delays = |seed| {
            let mut backoff = Backoff::new(CAP, seed);
            (0..8).map(|_| backoff.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(delays(42), delays(42));
        assert_ne!(delays(42), delays(43));
        // 200 cameras retrying their 4th attempt (ceiling 4 s) together:
        // spread over [2 s, 4 s], not bunched.
        let fourth: Vec<Duration> = (0..200).map(|seed| delays(seed)[3]).collect();
        let below_3s = fourth
            .iter()
            .filter(|d| **d < Duration::from_secs(3))
            .count();
        assert!(
            (60..=140).contains(&below_3s),
            "{below_3s} of 200 below 3 s"
        );
        let distinct: std::collections::BTreeSet<_> = fourth.iter().collect();
        assert!(distinct.len() > 190);
    }

    #[test]
    fn reset_starts_over_from_the_base() {
        let mut backoff = Backoff::new(CAP, 7);
        for _ in 0..6 {
            backoff.next_delay();
        }
        assert!(backoff.next_delay() >= Duration::from_secs(15));
        backoff.reset();
        assert_eq!(backoff.attempts(), 0);
        assert!(backoff.next_delay() <= BASE);
    }
}
