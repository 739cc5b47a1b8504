//! Graceful drain: on shutdown, open connections are told to close (1001,
//! going away) a batch at a time, so that their clients' reconnects reach
//! the other nodes spread out rather than all in the same instant.
//!
//! Each connection listens on the watch channel of its batch (its id modulo
//! the number of batches), so the drain costs no per-connection state and
//! no list of connections: the server flips one channel per step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// The batches' channels, and whether the drain has begun (`/readyz`).
#[derive(Debug)]
pub(crate) struct Drain {
    batches: Vec<(watch::Sender<bool>, watch::Receiver<bool>)>,
    draining: AtomicBool,
}

impl Drain {
    /// `batches` channels (at least one).
    pub(crate) fn new(batches: u32) -> Self {
        let batches = (0..batches.max(1)).map(|_| watch::channel(false)).collect();
        Self {
            batches,
            draining: AtomicBool::new(false),
        }
    }

    /// What connection `conn_id` waits on: its batch's channel, which
    /// changes when the batch is told to close.
    pub(crate) fn receiver(&self, conn_id: u64) -> watch::Receiver<bool> {
        let batch = (conn_id % self.batches.len() as u64) as usize;
        self.batches[batch].1.clone()
    }

    /// What a connection still in its handshake waits on: the first batch,
    /// so handshakes under way are dropped as the drain begins.
    pub(crate) fn first(&self) -> watch::Receiver<bool> {
        self.batches[0].1.clone()
    }

    /// Whether the drain has begun.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Tells every batch to close, one after another, `spread` apart in
    /// all: batch `k` of `n` at `spread * k / n`.
    pub(crate) async fn run(&self, spread: Duration) {
        self.draining.store(true, Ordering::Relaxed);
        let n = self.batches.len() as u32;
        let step = spread / n;
        for (k, (sender, _)) in self.batches.iter().enumerate() {
            if k > 0 && !step.is_zero() {
                tokio::time::sleep(step).await;
            }
            let _ = sender.send(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn batches_close_in_turn_across_the_spread() {
        let drain = Drain::new(4);
        let receivers: Vec<_> = (0..8u64).map(|id| drain.receiver(id)).collect();
        let handshake = drain.first();
        assert!(!drain.is_draining());
        let start = tokio::time::Instant::now();
        let run = drain.run(Duration::from_secs(2));
        tokio::pin!(run);
        // Batch 0 (ids 0 and 4, and handshakes) at once.
        tokio::select! {
            () = &mut run => panic!("the drain ended early"),
            () = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
        assert!(drain.is_draining());
        let told: Vec<bool> = receivers.iter().map(|r| *r.borrow()).collect();
        assert_eq!(told, [true, false, false, false, true, false, false, false]);
        assert!(*handshake.borrow());
        run.await;
        // Batches at 0, 0.5, 1 and 1.5 s.
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
        assert!(receivers.iter().all(|r| *r.borrow()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_spread_closes_everyone_at_once() {
        let drain = Drain::new(10);
        let receivers: Vec<_> = (0..20u64).map(|id| drain.receiver(id)).collect();
        let start = tokio::time::Instant::now();
        drain.run(Duration::ZERO).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(receivers.iter().all(|r| *r.borrow()));
    }
}
