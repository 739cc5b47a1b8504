//! The parker: one per hub, it holds the quiet `/echo` connections its
//! sessions hand it ([`ParkedEcho`]), with no task and no tokio
//! registration each, and gives each back to a new session when its
//! socket turns readable or its keepalive must act (the netpoll idea of
//! "A Million WebSockets and Go").
//!
//! - Readiness: a `mio::Poll` of the parker's own, one epoll instance,
//!   whose descriptor tokio watches ([`AsyncFd`]): no thread of its own.
//!   Sockets are registered edge-triggered and readable-only; a socket that
//!   became readable before it was registered is reported at once by
//!   `epoll_ctl(ADD)`. Readable covers data, the peer's FIN and a reset,
//!   so a client that leaves while parked is resumed, reads the end of its
//!   stream and is released as any other (1006, counted).
//! - Timers: the parked connections' keepalive deadlines in one ordered
//!   set, `(deadline, slot)`, with one tokio `Sleep` for the earliest; each
//!   insertion and removal is O(log n), and a tick looks only at the
//!   deadlines that passed.
//! - Keepalive: at its deadline a connection is resumed, and its session's
//!   keepalive sends the Ping (or, past the pong timeout, gives up on the
//!   peer with 1006, the path of any connection). The Pong wakes it anyway
//!   (readable), so writing the Ping from here would save one resume of
//!   two; the resumed session parks again 250 to 500 ms after the Pong.
//! - Shutdown: on the drain's first batch every parked connection is
//!   resumed; each session then closes with 1001 when its own batch comes,
//!   as if it had never been parked. Connections handed over during the
//!   drain are resumed at once.
//!
//! Memory per parked connection: its slot (the [`Parked`](wshub::Parked)
//! socket and state, the session's guards; a unit test bounds its size),
//! its url string, and, with keepalive, one entry of the deadline set.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use wshub::{TcpTransport, WebSocket};

use crate::metrics::{Metrics, OpenConnection};
use crate::park::ParkedEcho;

/// Events taken from the poller per `epoll_wait`.
const EVENTS: usize = 1024;

/// Connections handed over taken from the channel per wake-up.
const BATCH: usize = 256;

/// Where sessions hand their parked connections, with what their task
/// held for them (`H`: the admission slot and the drain count).
#[derive(Debug)]
pub(crate) struct Parker<H>(mpsc::UnboundedSender<(ParkedEcho, H)>);

impl<H> Clone for Parker<H> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<H> Parker<H> {
    /// Hands `echo` over. If the parker is gone (the server has stopped),
    /// the connection is dropped with it, as the server's other tasks are.
    pub(crate) fn park(&self, echo: ParkedEcho, held: H) {
        let _ = self.0.send((echo, held));
    }
}

/// The parker's half: run it with [`run`].
#[derive(Debug)]
pub(crate) struct Inbox<H>(mpsc::UnboundedReceiver<(ParkedEcho, H)>);

/// A parker and what runs it.
pub(crate) fn channel<H>() -> (Parker<H>, Inbox<H>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Parker(tx), Inbox(rx))
}

/// A connection handed back: its `WebSocket`, id, open-connection guard and
/// what its task held. The callee starts its session.
pub(crate) type Resume<H> =
    dyn Fn(WebSocket<TcpTransport>, u64, OpenConnection<false>, H) + Send + Sync;

/// One parked connection.
pub(crate) struct Slot<H> {
    echo: ParkedEcho,
    held: H,
    /// Its keepalive deadline, as in the timer set.
    deadline: Option<Instant>,
}

/// The parked connections, their poller and their deadlines.
struct Parking<H> {
    poll: AsyncFd<Poll>,
    slots: Slab<Slot<H>>,
    deadlines: BTreeSet<(Instant, usize)>,
}

impl<H> Parking<H> {
    /// Registers `echo` with the poller; resumes it at once if it cannot be.
    fn insert(&mut self, echo: ParkedEcho, held: H, resume: &Resume<H>) {
        let entry = self.slots.vacant_entry();
        let key = entry.key();
        let fd = echo.socket.as_raw_fd();
        let registered = self.poll.get_ref().registry().register(
            &mut SourceFd(&fd),
            Token(key),
            Interest::READABLE,
        );
        if let Err(e) = registered {
            tracing::debug!(conn_id = echo.conn_id, error = %e, "not parked: poller refused the socket");
            wake(echo, held, resume);
            return;
        }
        let deadline = echo.socket.keepalive_deadline();
        if let Some(deadline) = deadline {
            self.deadlines.insert((deadline, key));
        }
        entry.insert(Slot {
            echo,
            held,
            deadline,
        });
    }

    /// Takes slot `key` out of the poller and the timers and resumes it.
    fn resume(&mut self, key: usize, resume: &Resume<H>) {
        let Some(slot) = self.slots.try_remove(key) else {
            return;
        };
        let fd = slot.echo.socket.as_raw_fd();
        // Only fails for a descriptor not registered, which this one is;
        // the socket leaves the poller when closed in any case.
        let _ = self
            .poll
            .get_ref()
            .registry()
            .deregister(&mut SourceFd(&fd));
        if let Some(deadline) = slot.deadline {
            self.deadlines.remove(&(deadline, key));
        }
        wake(slot.echo, slot.held, resume);
    }

    /// Resumes every connection whose deadline has passed at `now`.
    fn resume_due(&mut self, now: Instant, resume: &Resume<H>) {
        while let Some(&(deadline, key)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.resume(key, resume);
        }
    }

    /// Resumes every connection that became readable.
    fn resume_readable(&mut self, events: &mut Events, resume: &Resume<H>) -> io::Result<()> {
        loop {
            self.poll.get_mut().poll(events, Some(Duration::ZERO))?;
            let mut n = 0;
            for event in events.iter() {
                n += 1;
                self.resume(event.token().0, resume);
            }
            // Edge-triggered, and tokio's readiness was cleared before:
            // take every event now, or a leftover would wait for the next.
            if n < EVENTS {
                return Ok(());
            }
        }
    }

    fn resume_all(&mut self, resume: &Resume<H>) {
        let keys: Vec<usize> = self.slots.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.resume(key, resume);
        }
    }
}

/// `echo` back to a session.
fn wake<H>(echo: ParkedEcho, held: H, resume: &Resume<H>) {
    let ParkedEcho {
        socket,
        conn_id,
        open,
    } = echo;
    match socket.resume() {
        Ok(ws) => resume(ws, conn_id, open, held),
        Err(e) => {
            tracing::info!(conn_id, route = "/echo", close_code = 1006, error = %e, "connection closed with error");
            open.ended(1006);
        }
    }
}

/// Holds what `inbox` receives until it is readable, its keepalive is due,
/// or the drain begins (`drain` changes); `resume` starts each one's session
/// again. Runs until the server drops every [`Parker`]. If the poller
/// cannot be made, connections are resumed as they come (parking off).
pub(crate) async fn run<H>(
    inbox: Inbox<H>,
    mut drain: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    resume: Box<Resume<H>>,
) {
    let mut rx = inbox.0;
    // tokio 1.54 deprecated the safe constructor for the I/O safety it
    // cannot check: the descriptor must stay open, and the same, while the
    // `AsyncFd` lives. A `mio::Poll` owns its epoll descriptor from its
    // creation to its drop and never replaces it, and the `AsyncFd` owns
    // the `Poll`, so that holds here; its replacement is `unsafe`, which
    // this crate forbids.
    #[allow(deprecated)]
    let poll =
        Poll::new().and_then(|poll| AsyncFd::with_interest(poll, tokio::io::Interest::READABLE));
    let poll = match poll {
        Ok(poll) => poll,
        Err(e) => {
            tracing::warn!(error = %e, "no poller for idle connections: parking is off");
            while let Some((echo, held)) = rx.recv().await {
                wake(echo, held, &*resume);
            }
            return;
        }
    };
    let mut parking = Parking {
        poll,
        slots: Slab::new(),
        deadlines: BTreeSet::new(),
    };
    let mut events = Events::with_capacity(EVENTS);
    let mut received = Vec::with_capacity(BATCH);
    let mut draining = false;
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    loop {
        let next = parking.deadlines.first().map(|&(deadline, _)| deadline);
        if let Some(deadline) = next {
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
        }
        tokio::select! {
            biased;
            changed = drain.changed(), if !draining => {
                // A change is the drain (`Err`: the server is gone).
                let _ = changed;
                draining = true;
                parking.resume_all(&*resume);
            }
            () = &mut sleep, if next.is_some() => {
                parking.resume_due(Instant::now(), &*resume);
            }
            ready = parking.poll.readable(), if !draining => {
                match ready {
                    Ok(mut guard) => guard.clear_ready(),
                    Err(e) => {
                        tracing::warn!(error = %e, "idle-connection poller failed: resuming them all");
                        parking.resume_all(&*resume);
                        draining = true;
                    }
                }
                if let Err(e) = parking.resume_readable(&mut events, &*resume) {
                    tracing::warn!(error = %e, "idle-connection poller failed: resuming them all");
                    parking.resume_all(&*resume);
                    draining = true;
                }
            }
            n = rx.recv_many(&mut received, BATCH) => {
                if n == 0 {
                    break;
                }
                for (echo, held) in received.drain(..) {
                    if draining {
                        wake(echo, held, &*resume);
                    } else {
                        parking.insert(echo, held, &*resume);
                    }
                }
            }
        }
        metrics.set_parked(parking.slots.len());
    }
    parking.resume_all(&*resume);
    metrics.set_parked(0);
}
