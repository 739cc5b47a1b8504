//! When subscribers drop their connections to resume, and which ones: run
//! by the coordinating thread, which wakes every few milliseconds anyway.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::FanState;
use crate::stats::Timing;

/// Rounds of resumes: from the start of the measured window until its end,
/// every `every`, `share` of the subscribers, drawn afresh each round.
#[derive(Debug)]
pub(super) struct Rounds {
    /// Subscribers told to resume each round.
    count: usize,
    every: Duration,
    next: Instant,
    end: Instant,
    rng: StdRng,
}

impl Rounds {
    /// `None` when `share` is 0 (no resumes).
    pub(super) fn new(
        share: f64,
        every: Duration,
        subscribers: usize,
        timing: &Timing,
    ) -> Option<Self> {
        (share > 0.0).then(|| Self {
            count: per_round(share, subscribers),
            every,
            next: timing.measure_from,
            end: timing.end,
            rng: StdRng::from_entropy(),
        })
    }

    /// Starts the rounds that are due at `now`: each one tells `count`
    /// subscribers chosen at random among those connected and not resuming
    /// already (fewer if fewer are) to drop their connection and resume.
    pub(super) fn tick(&mut self, state: &FanState, now: Instant) {
        if now < self.next || now >= self.end {
            return;
        }
        // A late tick starts one round, not every one it missed.
        while self.next <= now {
            self.next += self.every;
        }
        let mut candidates = state.resumable();
        let (chosen, _) = candidates.partial_shuffle(&mut self.rng, self.count);
        for &slot in chosen.iter() {
            state.tell_to_resume(slot);
        }
    }
}

/// Subscribers per round: `share` of them, rounded, at least one.
fn per_round(share: f64, subscribers: usize) -> usize {
    ((share * subscribers as f64).round() as usize).clamp(1, subscribers.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_is_the_share_of_the_subscribers_rounded_and_at_least_one() {
        assert_eq!(per_round(0.2, 50), 10);
        assert_eq!(per_round(0.2, 51), 10);
        assert_eq!(per_round(0.01, 10), 1);
        assert_eq!(per_round(1.0, 7), 7);
        assert_eq!(per_round(0.5, 3), 2);
    }
}
