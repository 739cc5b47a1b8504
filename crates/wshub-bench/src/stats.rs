//! Counters and latency histograms: live ones the progress line reads, and
//! per-thread ones merged into the report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Counters shared by every worker thread, read by the progress line and by
/// the thread that coordinates the phases. Bumped once per read, not once
/// per message.
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// Connections open (handshake done; in fan-out, room joined).
    pub(crate) opened: AtomicU64,
    /// Connections that failed before they were open.
    pub(crate) failed: AtomicU64,
    /// Echoes, handshakes or deliveries completed, warm-up included.
    pub(crate) events: AtomicU64,
    /// Errors of any kind so far.
    pub(crate) errors: AtomicU64,
}

impl Live {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// When the run's clock started, when measuring starts and when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub(crate) start: Instant,
    pub(crate) measure_from: Instant,
    pub(crate) end: Instant,
}

impl Timing {
    pub(crate) fn new(start: Instant, warmup: Duration, duration: Duration) -> Self {
        Self {
            start,
            measure_from: start + warmup,
            end: start + warmup + duration,
        }
    }

    /// Whether an event at `t` counts.
    pub(crate) fn measuring(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.end
    }
}

/// A latency histogram in nanoseconds, 1 ns to 1 hour, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("constant bounds are valid")
}

/// Records `latency` (saturating at the histogram's hour).
pub(crate) fn record(hist: &mut Histogram<u64>, latency: Duration) {
    let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
    hist.saturating_record(ns.max(1));
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Samples recorded.
    pub samples: u64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Median, µs.
    pub p50_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Largest, µs.
    pub max_us: f64,
}

impl Latency {
    pub(crate) fn from_histogram(hist: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1_000.0;
        if hist.is_empty() {
            return Self {
                samples: 0,
                mean_us: 0.0,
                p50_us: 0.0,
                p90_us: 0.0,
                p99_us: 0.0,
                max_us: 0.0,
            };
        }
        Self {
            samples: hist.len(),
            mean_us: hist.mean() / 1_000.0,
            p50_us: us(hist.value_at_quantile(0.50)),
            p90_us: us(hist.value_at_quantile(0.90)),
            p99_us: us(hist.value_at_quantile(0.99)),
            max_us: us(hist.max()),
        }
    }
}

/// The first error seen, kept as text for the report, and a count of all.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    pub(crate) count: u64,
    pub(crate) first: Option<String>,
}

impl Errors {
    /// Counts `err`, logs it at debug level, and keeps its text if it is the first.
    pub(crate) fn add(&mut self, live: &Live, err: &dyn std::fmt::Display) {
        self.count += 1;
        Live::add(&live.errors, 1);
        tracing::debug!(error = %err, "connection error");
        if self.first.is_none() {
            self.first = Some(err.to_string());
        }
    }

    pub(crate) fn merge(&mut self, other: Errors) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_reported_in_microseconds() {
        let mut hist = histogram();
        for us in 1..=100 {
            record(&mut hist, Duration::from_micros(us));
        }
        let l = Latency::from_histogram(&hist);
        assert_eq!(l.samples, 100);
        assert!((l.p50_us - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p99_us - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.max_us - 100.0).abs() < 0.1, "{l:?}");
    }

    #[test]
    fn only_the_measured_window_counts() {
        let start = Instant::now();
        let t = Timing::new(start, Duration::from_secs(1), Duration::from_secs(2));
        assert!(!t.measuring(start));
        assert!(t.measuring(start + Duration::from_secs(1)));
        assert!(!t.measuring(start + Duration::from_secs(3)));
    }
}
