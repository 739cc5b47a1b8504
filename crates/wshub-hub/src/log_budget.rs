//! How many log lines a repeated event may write: a fixed number per second,
//! the rest counted and reported on the next line written. Used where the
//! network decides how often a line is due (refused handshakes, failed
//! accepts), so an attacker cannot turn the log into the bottleneck or fill
//! the disk.

use std::time::{Duration, Instant};

/// At most `per_second` lines in each one-second window. Time is an
/// argument, for the tests.
#[derive(Debug)]
pub(crate) struct LogBudget {
    per_second: u32,
    window_start: Option<Instant>,
    /// Lines written in the current window.
    written: u32,
    /// Lines left out since the last one written.
    suppressed: u64,
}

impl LogBudget {
    const WINDOW: Duration = Duration::from_secs(1);

    pub(crate) const fn new(per_second: u32) -> Self {
        Self {
            per_second,
            window_start: None,
            written: 0,
            suppressed: 0,
        }
    }

    /// An event to log happened at `now`: `Some(lines left out since the
    /// last line written)` when it is to be logged, `None` when it is over
    /// the budget (and counted).
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        let new_window = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= Self::WINDOW);
        if new_window {
            self.window_start = Some(now);
            self.written = 0;
        }
        if self.written >= self.per_second {
            self.suppressed += 1;
            return None;
        }
        self.written += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_budget_per_second_and_reports_what_it_left_out() {
        let start = Instant::now();
        let mut budget = LogBudget::new(3);
        let logged: Vec<_> = (0..10).map(|_| budget.admit(start)).collect();
        assert_eq!(logged[..3], [Some(0), Some(0), Some(0)]);
        assert!(logged[3..].iter().all(Option::is_none));
        // Still the same window 999 ms later.
        assert_eq!(budget.admit(start + Duration::from_millis(999)), None);
        // The next window's first line says 8 were left out.
        let next = start + Duration::from_secs(1);
        assert_eq!(budget.admit(next), Some(8));
        assert_eq!(budget.admit(next), Some(0));
    }

    #[test]
    fn one_per_second_logs_the_first_failure_then_once_a_second() {
        let start = Instant::now();
        let mut budget = LogBudget::new(1);
        assert_eq!(budget.admit(start), Some(0));
        for ms in (50..1000).step_by(50) {
            assert_eq!(budget.admit(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(budget.admit(start + Duration::from_millis(1000)), Some(19));
    }
}
