//! Exponential backoff with jitter between reconnection attempts.

use std::time::Duration;

use rand::{rngs::StdRng, Rng, SeedableRng};

/// Delay before the next attempt: `initial * 2^attempt`, capped at `max`, then scaled by a
/// random factor in `[0.5, 1.0]` so that many agents cut off together do not reconnect
/// together.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: StdRng,
}

impl Backoff {
    /// A backoff starting at `initial` and never above `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self::with_rng(initial, max, StdRng::from_entropy())
    }

    /// Same, with a given random generator (tests).
    pub fn with_rng(initial: Duration, max: Duration, rng: StdRng) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempt: 0,
            rng,
        }
    }

    /// The delay before the next attempt; each call doubles the base delay.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(30));
        let base = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        base.mul_f64(self.rng.gen_range(0.5..=1.0))
    }

    /// Starts again from `initial` (after a connection that worked).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff::with_rng(
            Duration::from_millis(100),
            Duration::from_secs(10),
            StdRng::seed_from_u64(7),
        )
    }

    #[test]
    fn delays_grow_and_never_pass_the_maximum() {
        let mut b = backoff();
        let delays: Vec<Duration> = (0..40).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(10)));
        assert!(delays[0] <= Duration::from_millis(100));
        assert!(delays[0] >= Duration::from_millis(50));
        assert!(delays[39] >= Duration::from_secs(5), "{:?}", delays[39]);
    }

    #[test]
    fn jitter_spreads_agents_that_fail_together() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..20 {
            let mut b = Backoff::with_rng(
                Duration::from_secs(1),
                Duration::from_secs(60),
                StdRng::seed_from_u64(seed),
            );
            seen.insert(b.next_delay().as_millis());
        }
        assert!(seen.len() > 10, "{seen:?}");
    }

    #[test]
    fn reset_starts_again_from_the_initial_delay() {
        let mut b = backoff();
        for _ in 0..10 {
            b.next_delay();
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
