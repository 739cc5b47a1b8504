//! The keepalive policy: when to ping, when to give up. Time is an argument,
//! so the policy is tested without a runtime.

use std::time::Duration;

use crate::config::Millis;
use tokio::time::Instant;

/// The payload of every keepalive Ping, whether the connection's task or
/// its parker ([`Parked::ping_if_due`](crate::Parked::ping_if_due)) sends it.
pub(crate) const PING_PAYLOAD: &[u8] = b"wshub";

/// What the keepalive timer asks for when its deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeepaliveAction {
    /// Send a Ping now; wake again at the returned deadline.
    Ping,
    /// The peer stayed silent past the pong timeout: drop the connection.
    Dead,
    /// Nothing to do yet.
    Wait,
}

/// Sends a Ping every `interval`; after each, expects some frame from the
/// peer within `timeout`.
#[derive(Debug, Clone)]
pub(crate) struct Keepalive {
    interval: Millis,
    timeout: Millis,
    /// When to ping next, or when the awaited answer is overdue.
    deadline: Instant,
    awaiting: bool,
}

impl Keepalive {
    pub(crate) fn new(interval: Duration, timeout: Duration, now: Instant) -> Self {
        Self {
            interval: Millis::new(interval),
            timeout: Millis::new(timeout),
            deadline: now + interval,
            awaiting: false,
        }
    }

    /// The next instant at which [`Keepalive::poll`] has something to do.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Any frame from the peer proves it alive.
    /// `now` is called only when the time matters (an answer was awaited):
    /// reading the clock on every read cost 0.5% of an echo server's CPU.
    pub(crate) fn on_frame(&mut self, now: impl FnOnce() -> Instant) {
        if self.awaiting {
            self.awaiting = false;
            self.deadline = now() + self.interval.get();
        }
    }

    pub(crate) fn poll(&mut self, now: Instant) -> KeepaliveAction {
        if now < self.deadline {
            return KeepaliveAction::Wait;
        }
        if self.awaiting {
            return KeepaliveAction::Dead;
        }
        self.awaiting = true;
        self.deadline = now + self.timeout.get();
        KeepaliveAction::Ping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_every_interval_while_the_peer_answers() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut k = Keepalive::new(25 * s, 10 * s, t0);
        assert_eq!(k.poll(t0 + 24 * s), KeepaliveAction::Wait);
        assert_eq!(k.poll(t0 + 25 * s), KeepaliveAction::Ping);
        assert_eq!(k.deadline(), t0 + 35 * s);
        k.on_frame(|| t0 + 26 * s);
        assert_eq!(k.deadline(), t0 + 51 * s);
        assert_eq!(k.poll(t0 + 40 * s), KeepaliveAction::Wait);
        assert_eq!(k.poll(t0 + 51 * s), KeepaliveAction::Ping);
    }

    #[test]
    fn a_silent_peer_is_dead_after_the_pong_timeout() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut k = Keepalive::new(25 * s, 10 * s, t0);
        assert_eq!(k.poll(t0 + 25 * s), KeepaliveAction::Ping);
        assert_eq!(k.poll(t0 + 34 * s), KeepaliveAction::Wait);
        assert_eq!(k.poll(t0 + 35 * s), KeepaliveAction::Dead);
    }
}
