//! Reconnect delays: exponential backoff with full jitter, as RFC 6455 §7.2.3
//! asks ("the first reconnect attempt SHOULD be delayed by a random amount of
//! time ... subsequent reconnect attempts SHOULD be delayed by increasingly
//! longer amounts of time").

use std::time::Duration;

use rand::Rng;

/// An endless iterator of reconnect delays: attempt `n` waits a uniformly
/// random time in `[0, min(max, base × 2ⁿ)]` ("full jitter"), so a crowd of
/// clients that lost the same server does not come back in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays growing from `base` to at most `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// Starts again from `base`, after a connection that stayed up.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The cap for the next delay, before jitter.
    pub fn ceiling(&self) -> Duration {
        self.base
            .saturating_mul(1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max)
    }
}

impl Default for Backoff {
    /// 500 ms doubling up to 30 s.
    fn default() -> Self {
        Self::new(Duration::from_millis(500), Duration::from_secs(30))
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = ceiling.as_nanos().min(u64::MAX as u128) as u64;
        Some(Duration::from_nanos(
            rand::thread_rng().gen_range(0..=nanos),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_a_doubling_ceiling_capped_at_max() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings = [100, 200, 400, 800, 1000, 1000];
        for ms in ceilings {
            assert_eq!(b.ceiling(), Duration::from_millis(ms));
            assert!(b.next().unwrap() <= Duration::from_millis(ms));
        }
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn delays_are_random() {
        let b = Backoff::new(Duration::from_secs(10), Duration::from_secs(10));
        let delays: std::collections::HashSet<_> = b.take(20).collect();
        assert!(delays.len() > 1);
    }

    #[test]
    fn the_ceiling_never_overflows() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..200 {
            assert!(b.next().unwrap() <= Duration::from_secs(60));
        }
    }
}
