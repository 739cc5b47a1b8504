//! The parker: one per hub, it holds the quiet connections its sessions
//! hand it ([`ParkedConn`], `/echo` and `/ws`), with no task and no tokio
//! registration each, and gives each back to a new session when its
//! socket brings more than Pongs, when a member's rooms deliver to it, or
//! when its session has a deadline (the netpoll idea of "A Million
//! WebSockets and Go").
//!
//! - Readiness: a `mio::Poll` of the parker's own, one epoll instance,
//!   whose descriptor tokio watches ([`AsyncFd`]): no thread of its own.
//!   Sockets are registered edge-triggered and readable-only; a socket that
//!   became readable before it was registered is reported at once by
//!   `epoll_ctl(ADD)`. Readable covers data, the peer's FIN and a reset,
//!   so a client that leaves while parked is resumed, reads the end of its
//!   stream and is released as any other (1006, counted).
//! - Room deliveries (`/ws`): a parked member's send queue wakes a waker
//!   of the parker's ([`SlotWaker`]: the slot and the connection's id),
//!   which resumes it; the resumed session writes what was queued. The
//!   waker is registered when the member is parked, and whatever was
//!   queued before that resumes it at once.
//! - Timers: the parked connections' keepalive deadlines (and a member's
//!   auth deadline, whichever is first) in one ordered
//!   set, `(deadline, slot)`, with one tokio `Sleep` for the earliest; each
//!   insertion and removal is O(log n), and a tick looks only at the
//!   deadlines that passed.
//! - Keepalive: at its deadline the parker writes the connection's Ping
//!   itself ([`Parked::ping_if_due`](wshub::Parked::ping_if_due)), and when
//!   the socket turns readable it first looks whether only Pongs arrived
//!   ([`Parked::take_pongs`](wshub::Parked::take_pongs)) and takes them: a
//!   keepalive round resumes nothing. A connection is resumed for anything
//!   else: a message, the peer's Ping or Close, the end of its stream, a
//!   Ping that found no room in the send buffer, or a peer past its pong
//!   timeout (its session then gives up with 1006, the path of any
//!   connection). A Ping only partly written (the peer not reading, its
//!   send buffer full to within a few bytes) ends the connection here,
//!   1006, logged and counted as any other.
//! - Shutdown: on the drain's first batch every parked connection is
//!   resumed; each session then closes with 1001 when its own batch comes,
//!   as if it had never been parked. Connections handed over during the
//!   drain are resumed at once.
//!
//! Memory per parked connection: its slot (the [`Parked`](wshub::Parked)
//! socket and state, the session's guards; a unit test bounds its size),
//! its url string, and, with keepalive, one entry of the deadline set; a
//! member adds its boxed state ([`IdleMember`](crate::member::IdleMember))
//! and its waker.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use wshub::{TcpTransport, Tended, WebSocket};

use crate::metrics::Metrics;
use crate::park::{IdleSession, ParkedConn};

/// Events taken from the poller per `epoll_wait`.
const EVENTS: usize = 1024;

/// Connections handed over taken from the channel per wake-up.
const BATCH: usize = 256;

/// Where sessions hand their parked connections, with what their task
/// held for them (`H`: the admission slot and the drain count).
#[derive(Debug)]
pub(crate) struct Parker<H>(mpsc::UnboundedSender<(ParkedConn, H)>);

impl<H> Clone for Parker<H> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<H> Parker<H> {
    /// Hands `conn` over. If the parker is gone (the server has stopped),
    /// the connection is dropped with it, as the server's other tasks are.
    pub(crate) fn park(&self, conn: ParkedConn, held: H) {
        let _ = self.0.send((conn, held));
    }
}

/// The parker's half: run it with [`run`].
#[derive(Debug)]
pub(crate) struct Inbox<H>(mpsc::UnboundedReceiver<(ParkedConn, H)>);

/// A parker and what runs it.
pub(crate) fn channel<H>() -> (Parker<H>, Inbox<H>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Parker(tx), Inbox(rx))
}

/// A connection handed back: its `WebSocket`, id, what its session kept
/// and what its task held. The callee starts its session.
pub(crate) type Resume<H> = dyn Fn(WebSocket<TcpTransport>, u64, IdleSession, H) + Send + Sync;

/// One parked connection.
pub(crate) struct Slot<H> {
    conn: ParkedConn,
    held: H,
    /// Its first deadline (keepalive or session), as in the timer set.
    deadline: Option<Instant>,
}

impl<H> Slot<H> {
    /// When the parker must look at it again, whatever its socket does.
    fn next_deadline(&self) -> Option<Instant> {
        match (
            self.conn.socket.keepalive_deadline(),
            self.conn.session.deadline(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The waker a parked member's send queue wakes: it asks the parker to
/// resume slot `key`, if that still holds connection `conn_id` (a slot
/// freed and taken again holds another).
struct SlotWaker {
    key: usize,
    conn_id: u64,
    woken: mpsc::UnboundedSender<(usize, u64)>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.woken.send((self.key, self.conn_id));
    }
}

/// The parked connections, their poller and their deadlines.
struct Parking<H> {
    poll: AsyncFd<Poll>,
    slots: Slab<Slot<H>>,
    deadlines: BTreeSet<(Instant, usize)>,
    /// Where the members' wakers send their slots.
    woken: mpsc::UnboundedSender<(usize, u64)>,
    /// Resumed since the metrics last counted them.
    resumed: u64,
}

impl<H> Parking<H> {
    /// Registers `conn` with the poller (and a member with its waker);
    /// resumes it at once if it cannot be, or if a member's rooms have
    /// delivered to it already.
    fn insert(&mut self, conn: ParkedConn, held: H, resume: &Resume<H>) {
        let entry = self.slots.vacant_entry();
        let key = entry.key();
        let conn_id = conn.conn_id;
        let watched = conn.session.watch(|| {
            Waker::from(Arc::new(SlotWaker {
                key,
                conn_id,
                woken: self.woken.clone(),
            }))
        });
        if watched {
            self.resumed += 1;
            wake(conn, held, resume);
            return;
        }
        let fd = conn.socket.as_raw_fd();
        let registered = self.poll.get_ref().registry().register(
            &mut SourceFd(&fd),
            Token(key),
            Interest::READABLE,
        );
        if let Err(e) = registered {
            tracing::debug!(conn_id, error = %e, "not parked: poller refused the socket");
            self.resumed += 1;
            wake(conn, held, resume);
            return;
        }
        let mut slot = Slot {
            conn,
            held,
            deadline: None,
        };
        slot.deadline = slot.next_deadline();
        if let Some(deadline) = slot.deadline {
            self.deadlines.insert((deadline, key));
        }
        entry.insert(slot);
    }

    /// Resumes slot `key` for its member's rooms, if it still holds
    /// connection `conn_id`.
    fn woken(&mut self, key: usize, conn_id: u64, resume: &Resume<H>) {
        if self
            .slots
            .get(key)
            .is_some_and(|slot| slot.conn.conn_id == conn_id)
        {
            self.resume(key, resume);
        }
    }

    /// Takes slot `key` out of the slab, the poller and the timers.
    fn take(&mut self, key: usize) -> Option<Slot<H>> {
        let slot = self.slots.try_remove(key)?;
        let fd = slot.conn.socket.as_raw_fd();
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
        Some(slot)
    }

    /// Takes slot `key` out and resumes it.
    fn resume(&mut self, key: usize, resume: &Resume<H>) {
        if let Some(slot) = self.take(key) {
            self.resumed += 1;
            wake(slot.conn, slot.held, resume);
        }
    }

    /// Takes slot `key` out and ends its connection: it failed while
    /// parked (the socket drops, the peer sees no Close).
    fn fail(&mut self, key: usize, error: &io::Error) {
        let Some(slot) = self.take(key) else {
            return;
        };
        let ParkedConn {
            conn_id, session, ..
        } = slot.conn;
        tracing::info!(conn_id, route = session.route(), close_code = 1006, error = %error, "connection closed with error");
        session.ended(1006);
    }

    /// Acts on what tending slot `key` (with [`Parked::ping_if_due`] or
    /// [`Parked::take_pongs`]) at `now` found: it stays, with its deadline
    /// moved if the keepalive moved it, or is resumed (also when a
    /// deadline has passed that only its session can act on), or failed.
    ///
    /// [`Parked::ping_if_due`]: wshub::Parked::ping_if_due
    /// [`Parked::take_pongs`]: wshub::Parked::take_pongs
    fn tended(&mut self, key: usize, tended: Tended, now: Instant, resume: &Resume<H>) {
        match tended {
            Tended::Parked => {
                let Some(slot) = self.slots.get_mut(key) else {
                    return;
                };
                let deadline = slot.next_deadline();
                if deadline.is_some_and(|deadline| deadline <= now) {
                    self.resume(key, resume);
                    return;
                }
                if deadline != slot.deadline {
                    if let Some(old) = slot.deadline {
                        self.deadlines.remove(&(old, key));
                    }
                    if let Some(new) = deadline {
                        self.deadlines.insert((new, key));
                    }
                    slot.deadline = deadline;
                }
            }
            Tended::Failed(error) => self.fail(key, &error),
            // `Resume`, and any outcome a later `wshub` adds.
            _ => self.resume(key, resume),
        }
    }

    /// Sends the Ping of every connection whose deadline has passed at
    /// `now`, resuming those that need their session.
    fn ping_due(&mut self, now: Instant, resume: &Resume<H>) {
        while let Some(&(deadline, key)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            let Some(slot) = self.slots.get_mut(key) else {
                self.deadlines.pop_first();
                continue;
            };
            let tended = slot.conn.socket.ping_if_due(now);
            // Every deadline still at or before `now` resumes it, so this
            // loop moves on.
            self.tended(key, tended, now, resume);
        }
    }

    /// Takes the Pongs of every connection that became readable, resuming
    /// those where anything else arrived.
    fn tend_readable(&mut self, events: &mut Events, resume: &Resume<H>) -> io::Result<()> {
        loop {
            self.poll.get_mut().poll(events, Some(Duration::ZERO))?;
            let mut n = 0;
            let now = Instant::now();
            for event in events.iter() {
                n += 1;
                let key = event.token().0;
                if event.is_error() || event.is_read_closed() {
                    self.resume(key, resume);
                    continue;
                }
                let Some(slot) = self.slots.get_mut(key) else {
                    continue;
                };
                let tended = slot.conn.socket.take_pongs(now);
                self.tended(key, tended, now, resume);
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

/// `conn` back to a session.
fn wake<H>(conn: ParkedConn, held: H, resume: &Resume<H>) {
    let ParkedConn {
        socket,
        conn_id,
        session,
    } = conn;
    match socket.resume() {
        Ok(ws) => resume(ws, conn_id, session, held),
        Err(e) => {
            tracing::info!(conn_id, route = session.route(), close_code = 1006, error = %e, "connection closed with error");
            session.ended(1006);
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
            while let Some((conn, held)) = rx.recv().await {
                wake(conn, held, &*resume);
            }
            return;
        }
    };
    let (woken_tx, mut woken_rx) = mpsc::unbounded_channel();
    let mut parking = Parking {
        poll,
        slots: Slab::new(),
        deadlines: BTreeSet::new(),
        woken: woken_tx,
        resumed: 0,
    };
    let mut woken = Vec::with_capacity(BATCH);
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
                parking.ping_due(Instant::now(), &*resume);
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
                if let Err(e) = parking.tend_readable(&mut events, &*resume) {
                    tracing::warn!(error = %e, "idle-connection poller failed: resuming them all");
                    parking.resume_all(&*resume);
                    draining = true;
                }
            }
            // Never closed: `parking` holds a sender.
            _ = woken_rx.recv_many(&mut woken, BATCH) => {
                for (key, conn_id) in woken.drain(..) {
                    parking.woken(key, conn_id, &*resume);
                }
            }
            n = rx.recv_many(&mut received, BATCH) => {
                if n == 0 {
                    break;
                }
                for (conn, held) in received.drain(..) {
                    if draining {
                        wake(conn, held, &*resume);
                    } else {
                        parking.insert(conn, held, &*resume);
                    }
                }
            }
        }
        metrics.set_parked(parking.slots.len());
        metrics.resumed(std::mem::take(&mut parking.resumed));
    }
    parking.resume_all(&*resume);
    metrics.set_parked(0);
    metrics.resumed(parking.resumed);
}
