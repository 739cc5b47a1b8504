//! [`WebSocket`]: a [`Connection`] driven over an async byte stream.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use wshub_proto::{
    CloseCode, CloseEvent, Connection, Event, Message, PreparedMessage, Role, SendError, State,
};

use crate::config::Millis;
use crate::keepalive::{Keepalive, KeepaliveAction, PING_PAYLOAD};
use crate::{Error, WebSocketConfig};

/// What [`WebSocket::recv_incoming`] returns: a data message, or a Ping or
/// Pong with its payload (at most 125 bytes, RFC 6455 §5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Incoming {
    /// A complete data message (text or binary).
    Message(Message),
    /// A Ping (opcode 0x9); the Pong is owed, and sent, already.
    Ping(Bytes),
    /// A Pong (opcode 0xA).
    Pong(Bytes),
}

/// What [`WebSocket::poll_next_or_idle`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NextOrIdle {
    /// A complete data message (text or binary).
    Message(Message),
    /// The connection has gone quiet and could be parked: see
    /// [`WebSocket::poll_next_or_idle`].
    Idle,
}

/// Bytes read from the socket per call, into [`READ_BUFFER`]: one per
/// thread, so an idle connection holds no read buffer at all.
const READ_CHUNK: usize = 64 * 1024;

/// Bytes read per call by a connection polled while its thread's
/// [`READ_BUFFER`] is in use, into a buffer on the stack.
const NESTED_READ_CHUNK: usize = 4096;

thread_local! {
    /// The thread's read buffer, [`READ_CHUNK`] bytes, allocated (and zeroed)
    /// on first use. Not on the stack: a 64 KiB frame is probed page by page
    /// (16 stores) on every call, twice per message at 1 message in flight.
    /// Initialised once, so a transport that reads into initialised bytes
    /// only ([`TcpTransport`](crate::TcpTransport)) need not zero it per read.
    static READ_BUFFER: RefCell<Option<Box<[u8]>>> = const { RefCell::new(None) };
}

/// Buffers above this size, in bytes, are freed as soon as the connection
/// has nothing more to read; smaller ones after [`IDLE_SHRINK_AFTER`] of
/// quiet, or at the next keepalive tick. Above what a busy connection's
/// buffers reach in steady state, so they are reused rather than freed per
/// batch: the message buffer grows by up to 64 KiB ahead of a frame's
/// payload, and echoing 16 KiB messages 4 at a time holds 80 KiB
/// (`Connection::buffer_capacity`, 2026-12-05). At 64 KiB, freeing then
/// took 7–13% off `bench/compare`'s echo-10x16KiB-p4 row.
const LARGE_BUFFER: usize = 256 * 1024;

/// How long after its last read a connection keeps its smaller buffers. A
/// busy connection reallocates them at most once per this period; a quiet
/// one gives them back (idle memory matters as much as throughput).
const IDLE_SHRINK_AFTER: Duration = Duration::from_millis(250);

/// Wakes both the reading and the writing task: a socket keeps one waker per
/// direction, and both halves of a split socket write (the reader writes Pongs
/// and Close echoes), so a write-readiness wake must reach both.
#[derive(Default)]
struct Wakers {
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.reader.wake();
        self.writer.wake();
    }
}

/// Where the connection is in its shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading and writing.
    Open,
    /// Done with frames: flush what is queued, then close the transport.
    Finishing,
    /// Client after a clean close handshake: wait for the server to close TCP
    /// first (RFC 6455 §7.1.1), up to the close timeout.
    AwaitingEof,
    /// The transport is closed.
    Done,
}

/// What the opening handshake settled, shown by the browser API as
/// `protocol`, `extensions` and `url`.
#[derive(Debug, Clone, Default)]
pub(crate) struct HandshakeInfo {
    pub(crate) protocol: Option<Box<str>>,
    pub(crate) extensions: Option<Box<str>>,
    pub(crate) url: Box<str>,
}

/// Every idle connection holds one of these, so it keeps only what it uses:
/// rare state (errors, the close event) is boxed when it happens, and of the
/// config only the two settings read after construction stay.
pub(crate) struct Inner<S> {
    io: S,
    conn: Connection,
    /// [`WebSocketConfig::write_buffer_limit`], bytes.
    write_buffer_limit: usize,
    /// [`WebSocketConfig::close_timeout`].
    close_timeout: Millis,
    /// [`WebSocketConfig::message_timeout`] (zero: none).
    message_timeout: Millis,
    info: HandshakeInfo,
    phase: Phase,
    keepalive: Option<Keepalive>,
    close_deadline: Option<Instant>,
    /// When the incoming message in progress must have ended; set while one
    /// is in progress at the end of a read (the timeout on, no Close yet),
    /// and set anew when a message before it is taken.
    message_deadline: Option<Instant>,
    /// When to give back buffers, set when reading goes quiet with some held.
    shrink_deadline: Option<Instant>,
    /// Armed for the earliest deadline; freed when there is none.
    timer: Option<Pin<Box<Sleep>>>,
    /// The waker `timer` was last polled with, at its current deadline:
    /// while both stay the same, the timer will wake that task, and a poll
    /// only has to ask whether it fired.
    timer_waker: Option<Waker>,
    /// Returned once the transport is closed, after the failing Close went out.
    pending_error: Option<Box<Error>>,
    /// Set by [`WebSocket::split`]: the halves' wakers. A whole `WebSocket`
    /// is polled by one task, which gets every wake-up through its own
    /// `Context`, so it needs none (and pays no atomic registration per poll).
    split: Option<Box<SplitWakers>>,
}

/// The proxy wakers of a split connection.
struct SplitWakers {
    wakers: Arc<Wakers>,
    /// Wakes both halves; the `Context` of every write.
    write_waker: Waker,
}

/// What an idle connection needs to be rebuilt without its transport
/// (see [`Parked`](crate::Parked)): the protocol's config instead of the
/// protocol state, and the few settings and timers [`Inner`] keeps.
#[derive(Debug)]
pub(crate) struct IdleParts {
    role: Role,
    config: wshub_proto::Config,
    keepalive: Option<Keepalive>,
    /// [`WebSocketConfig::write_buffer_limit`], bytes.
    write_buffer_limit: usize,
    close_timeout: Millis,
    message_timeout: Millis,
    info: HandshakeInfo,
}

impl IdleParts {
    /// When the keepalive must act: send a Ping, or give up on the peer.
    pub(crate) fn keepalive_deadline(&self) -> Option<Instant> {
        self.keepalive.as_ref().map(Keepalive::deadline)
    }

    /// The keepalive's state, for a parker that sends its Pings and takes
    /// its Pongs.
    pub(crate) fn keepalive_mut(&mut self) -> Option<&mut Keepalive> {
        self.keepalive.as_mut()
    }

    /// The role of the parked connection.
    pub(crate) fn role(&self) -> Role {
        self.role
    }
}

/// Slices per vectored write: each shared payload is one, with the bytes
/// queued before it another.
const WRITE_SLICES: usize = 64;

/// The earlier of two optional instants; `None` only when both are.
#[inline]
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Writes everything `conn` has queued to `io`, with vectored writes when
/// payloads are queued by reference, then flushes it.
fn write_out<S: AsyncWrite + Unpin>(
    io: &mut S,
    conn: &mut Connection,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    loop {
        let queued = conn.backlog().bytes;
        let mut first = [IoSlice::new(&[])];
        if conn.outgoing_vectored(&mut first) == 0 {
            break;
        }
        // Owed Pongs join a drained output (`queued` 0) as one buffer.
        let written = if queued == 0 || first[0].len() == queued {
            // One contiguous buffer (the small-message case): a plain write,
            // without setting up the slices.
            Pin::new(&mut *io).poll_write(cx, &first[0])
        } else {
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let n = conn.outgoing_vectored(&mut slices);
            Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n])
        };
        match ready!(written) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => conn.advance_outgoing(n),
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Pin::new(io).poll_flush(cx)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Inner<S> {
    fn new(io: S, role: Role, config: WebSocketConfig, info: HandshakeInfo, early: &[u8]) -> Self {
        let mut conn = Connection::new(role, config.protocol.clone());
        let pending_error = conn.receive(early).err().map(|e| Box::new(e.into()));
        let keepalive = config
            .ping_interval
            .map(|interval| Keepalive::new(interval, config.pong_timeout, Instant::now()));
        let mut inner = Self {
            io,
            conn,
            info,
            phase: Phase::Open,
            keepalive,
            close_deadline: None,
            message_deadline: None,
            shrink_deadline: None,
            timer: None,
            timer_waker: None,
            pending_error,
            split: None,
            write_buffer_limit: config.write_buffer_limit,
            close_timeout: Millis::new(config.close_timeout),
            message_timeout: Millis::new_optional(config.message_timeout),
        };
        // The early bytes may have started a message.
        inner.track_message();
        inner
    }

    /// Arms the message deadline when a message is left in progress by a
    /// read and clears it once none is. Called only when the two disagree
    /// (or at the start), so a read that leaves no message in progress, as
    /// every read of whole messages does, costs one comparison; and when a
    /// message is taken while a deadline is set, since the message still in
    /// progress is then a later one (a read may end one and begin the next).
    #[inline(never)]
    fn track_message(&mut self) {
        self.message_deadline = match self.message_timeout.optional() {
            // Once a Close went either way, the close timeout bounds the rest.
            Some(timeout) if self.conn.mid_message() && self.close_deadline.is_none() => {
                // A message still in progress keeps the deadline it started with.
                Some(
                    self.message_deadline
                        .unwrap_or_else(|| Instant::now() + timeout),
                )
            }
            _ => None,
        };
    }

    fn ready_state(&self) -> State {
        match self.phase {
            Phase::Open => self.conn.state(),
            Phase::Finishing | Phase::AwaitingEof => State::Closing.max(self.conn.state()),
            Phase::Done => State::Closed,
        }
    }

    /// Wakes the reading half of a split connection.
    fn register_reader(&self, cx: &Context<'_>) {
        if let Some(split) = &self.split {
            split.wakers.reader.register(cx.waker());
        }
    }

    /// Registers the writing half of a split connection.
    fn register_writer(&self, cx: &Context<'_>) {
        if let Some(split) = &self.split {
            split.wakers.writer.register(cx.waker());
        }
    }

    /// Writes everything queued, then flushes the transport. A split
    /// connection writes with the waker of both halves: either may be the
    /// one waiting for the socket to drain.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.split {
            Some(split) => {
                let mut cx = Context::from_waker(&split.write_waker);
                write_out(&mut self.io, &mut self.conn, &mut cx)
            }
            None => write_out(&mut self.io, &mut self.conn, cx),
        }
    }

    /// The transport failed or is given up on: the protocol decides how
    /// the connection ended (1006 before a close handshake), and what is
    /// queued goes out on a best-effort basis.
    fn finish_abnormally(&mut self, error: Option<Error>) {
        self.phase = Phase::Finishing;
        self.conn.receive_eof();
        if self.pending_error.is_none() {
            self.pending_error = error.map(Box::new);
        }
    }

    /// Arms the timer for the earliest deadline; `Ready` when it has passed.
    #[inline(always)]
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        // Checked twice per message. The common case, a timer armed for this
        // deadline and registered for this task, stays inline and skips the
        // registration (atomics and a waker comparison inside tokio); the
        // rest is a call.
        if let (Some(timer), Some(waker)) = (&self.timer, &self.timer_waker) {
            if waker.will_wake(cx.waker()) && Some(timer.deadline()) == self.next_deadline() {
                return if timer.is_elapsed() {
                    Poll::Ready(Instant::now())
                } else {
                    Poll::Pending
                };
            }
        }
        self.poll_timer_slow(cx)
    }

    /// The earliest of the keepalive, close, message and shrink deadlines.
    #[inline(always)]
    fn next_deadline(&self) -> Option<Instant> {
        earliest(
            earliest(
                self.keepalive.as_ref().map(Keepalive::deadline),
                self.close_deadline,
            ),
            earliest(self.message_deadline, self.shrink_deadline),
        )
    }

    /// [`Inner::poll_timer`] when the timer must be armed, moved, registered
    /// or freed.
    fn poll_timer_slow(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        let Some(deadline) = self.next_deadline() else {
            // Nothing to wait for: free the timer rather than keep it per
            // idle connection.
            self.timer = None;
            self.timer_waker = None;
            return Poll::Pending;
        };
        let timer = match &mut self.timer {
            Some(timer) if timer.deadline() == deadline => timer,
            Some(timer) => {
                timer.as_mut().reset(deadline);
                self.timer_waker = None;
                timer
            }
            None => {
                self.timer_waker = None;
                self.timer
                    .insert(Box::pin(tokio::time::sleep_until(deadline)))
            }
        };
        // Not registered for this task and deadline (`poll_timer` returns
        // before this otherwise): register.
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Instant::now()),
            Poll::Pending => {
                self.timer_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// The next message among the events already parsed, without I/O.
    /// Control frames met on the way need nothing here: the protocol queues
    /// the Pongs and the Close echo itself, and records how the connection
    /// ended.
    #[inline(always)]
    fn take_message(&mut self) -> Option<Message> {
        // Looked at several times per message and mostly empty: the check
        // is inline, the work is not.
        if !self.conn.has_events() {
            return None;
        }
        match self.take_queued::<false>()? {
            Incoming::Message(message) => Some(message),
            // `take_queued::<false>` returns messages only.
            Incoming::Ping(_) | Incoming::Pong(_) => None,
        }
    }

    /// [`Inner::take_message`] once an event is queued; with `CONTROLS`,
    /// Pings and Pongs are returned too.
    fn take_queued<const CONTROLS: bool>(&mut self) -> Option<Incoming> {
        loop {
            match self.conn.next_event()? {
                Event::Message(message) => {
                    if self.message_deadline.is_some() {
                        // The message in progress began after this one
                        // ended, so no earlier than now: its own deadline.
                        self.message_deadline = None;
                        self.track_message();
                    }
                    return Some(Incoming::Message(message));
                }
                Event::Ping(payload) if CONTROLS => return Some(Incoming::Ping(payload)),
                Event::Pong(payload) if CONTROLS => return Some(Incoming::Pong(payload)),
                Event::Ping(_) | Event::Pong(_) | Event::Close(_) => {}
            }
        }
    }

    /// [`Inner::take_message`] while the connection is open.
    fn next_buffered(&mut self) -> Option<Message> {
        if self.phase != Phase::Open {
            return None;
        }
        self.take_message()
    }

    /// [`Inner::next_buffered`], or, in the middle of a frame, what one read
    /// of the transport completes. Nothing when no message is ready now.
    fn poll_next_ready(&mut self, cx: &mut Context<'_>) -> Option<Message> {
        if let Some(message) = self.next_buffered() {
            return Some(message);
        }
        if self.phase != Phase::Open
            || self.pending_error.is_some()
            || !self.conn.mid_frame()
            || self.conn.backlog().bytes >= self.write_buffer_limit
        {
            return None;
        }
        self.register_reader(cx);
        if self.poll_read_some(cx).is_pending() {
            return None;
        }
        self.next_buffered()
    }

    fn poll_next_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        self.poll_next::<false, false>(cx).map(|next| {
            next.map(|incoming| match incoming? {
                Incoming::Message(message) => Ok(message),
                // `poll_next::<false, _>` returns messages only.
                Incoming::Ping(_) | Incoming::Pong(_) => unreachable!("a control frame"),
            })
        })
    }

    /// [`WebSocket::poll_next_or_idle`].
    #[inline(always)]
    fn poll_next_or_idle(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<NextOrIdle, Error>>> {
        let next = ready!(self.poll_next::<false, true>(cx));
        Poll::Ready(match next {
            Some(Ok(Incoming::Message(message))) => Some(Ok(NextOrIdle::Message(message))),
            // `poll_next::<false, _>` returns messages only.
            Some(Ok(Incoming::Ping(_) | Incoming::Pong(_))) => unreachable!("a control frame"),
            Some(Err(e)) => Some(Err(e)),
            // `poll_next::<_, true>` ends with `None` while open only when idle.
            None if self.phase == Phase::Open => Some(Ok(NextOrIdle::Idle)),
            None => None,
        })
    }

    /// Whether the connection is between messages with nothing held but
    /// what [`Connection::config`] rebuilds: open, no message or frame in
    /// progress, nothing queued either way, no error or timeout pending,
    /// not split, no compression context kept across messages.
    fn parkable(&self) -> bool {
        self.phase == Phase::Open
            && self.conn.state() == State::Open
            && self.pending_error.is_none()
            && self.split.is_none()
            && self.close_deadline.is_none()
            && self.message_deadline.is_none()
            && !self.conn.has_events()
            && !self.conn.mid_frame()
            && !self.conn.mid_message()
            && self.conn.backlog().is_empty()
            && self.no_deflate_context()
    }

    /// Whether permessage-deflate keeps no context between messages: off,
    /// or negotiated with no context takeover both ways (RFC 7692 §7.1.1).
    fn no_deflate_context(&self) -> bool {
        #[cfg(feature = "deflate")]
        if let Some(agreement) = self.conn.config().deflate_agreement() {
            return agreement.server_no_context_takeover && agreement.client_no_context_takeover;
        }
        true
    }

    /// The next message or, with `CONTROLS`, Ping or Pong. With `IDLE`,
    /// `Ready(None)` while the phase is still `Open` says the connection
    /// went quiet ([`WebSocket::poll_next_or_idle`]).
    // Inlined into its callers, the echo loop's wait among them: once the
    // hub's member session waited with `poll_next_or_idle` too, the
    // compiler kept this out of line, at 38 instructions more per echoed
    // message (bench/instructions, 100 × 20 B at 1 in flight, 2,392 →
    // 2,430).
    #[inline(always)]
    fn poll_next<const CONTROLS: bool, const IDLE: bool>(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Incoming, Error>>> {
        self.register_reader(cx);
        loop {
            if self.conn.has_events() {
                if let Some(incoming) = self.take_queued::<CONTROLS>() {
                    return Poll::Ready(Some(Ok(incoming)));
                }
            }
            if self.phase == Phase::Open && self.pending_error.is_some() {
                // The messages before the protocol error were delivered (and
                // may have been answered); now the failing Close goes out.
                self.phase = Phase::Finishing;
            }
            match self.phase {
                Phase::Done => return Poll::Ready(self.pending_error.take().map(|e| Err(*e))),
                Phase::Finishing => {
                    // No more Pings, and no keepalive or message deadline to
                    // wake the wait below.
                    self.keepalive = None;
                    self.message_deadline = None;
                    // Best effort: the peer may be gone already, or may have
                    // stopped reading, leaving our output stuck behind its full
                    // window; the close deadline bounds the wait for the latter.
                    self.close_deadline
                        .get_or_insert_with(|| Instant::now() + self.close_timeout.get());
                    let written = match self.poll_write_out(cx) {
                        Poll::Ready(written) => written,
                        Poll::Pending => {
                            ready!(self.poll_timer(cx));
                            Err(io::ErrorKind::TimedOut.into())
                        }
                    };
                    if let Err(e) = written {
                        tracing::debug!(error = %e, "write failed while closing");
                    } else if self.conn.role() == Role::Client
                        && self.conn.state() == State::Closed
                        && self.pending_error.is_none()
                        && self.conn.close_event().is_some_and(|e| e.was_clean)
                    {
                        self.phase = Phase::AwaitingEof;
                        self.close_deadline = Some(Instant::now() + self.close_timeout.get());
                        continue;
                    }
                    let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
                    self.phase = Phase::Done;
                    self.keepalive = None;
                    self.close_deadline = None;
                    self.conn.receive_eof();
                    continue;
                }
                Phase::AwaitingEof | Phase::Open => {}
            }
            // Replies the protocol owes (Pongs, our Close) go out now; data the
            // application fed without flushing waits for its flush, so a
            // batch of messages leaves in one write.
            if self.phase == Phase::Open && self.conn.backlog().control {
                if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                    self.finish_abnormally(Some(e.into()));
                    continue;
                }
            }
            if self.phase == Phase::Open {
                match self.conn.state() {
                    State::Closed => {
                        self.phase = Phase::Finishing;
                        continue;
                    }
                    _ if self.conn.close_expected() && self.close_deadline.is_none() => {
                        // From here the close timeout bounds the wait; a
                        // keepalive Ping could not be sent after our Close.
                        self.keepalive = None;
                        self.message_deadline = None;
                        self.close_deadline = Some(Instant::now() + self.close_timeout.get());
                    }
                    _ => {}
                }
            }
            if let Poll::Ready(now) = self.poll_timer(cx) {
                if self.shrink_deadline.is_some_and(|d| now >= d) {
                    self.shrink_deadline = None;
                    if !IDLE {
                        self.conn.shrink_buffers();
                    } else if self.conn.holds_buffers() {
                        // Something was read or sent since the last look:
                        // give the buffers back and look again later.
                        // Nothing is (re)allocated without a message or a
                        // control frame, so none held then means quiet,
                        // with no cost per message.
                        self.conn.shrink_buffers();
                        self.shrink_deadline = Some(now + IDLE_SHRINK_AFTER);
                    } else if self.parkable() {
                        return Poll::Ready(None);
                    }
                    // Quiet but not parkable: no more looks until a
                    // message allocates buffers again (the read path then
                    // arms the deadline).
                }
                if self.message_deadline.is_some_and(|d| now >= d) {
                    self.fail_message_timeout();
                    continue;
                }
                if self.close_deadline.is_some_and(|d| now >= d) {
                    // Our Close went unanswered, or the server did not close TCP.
                    if self.phase == Phase::AwaitingEof {
                        self.close_deadline = None;
                        self.phase = Phase::Finishing;
                        let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
                        self.phase = Phase::Done;
                        self.conn.receive_eof();
                    } else {
                        // The passed deadline stays, so Finishing does not wait
                        // again for a silent peer to read what is queued.
                        self.finish_abnormally(None);
                    }
                    continue;
                }
                if let Some(k) = self.keepalive.as_mut() {
                    match k.poll(now) {
                        KeepaliveAction::Ping => {
                            // Written by the owed-control flush at the top of the loop.
                            let _ = self.conn.send_ping(PING_PAYLOAD);
                            // Once per interval, give back what a quiet
                            // connection does not need.
                            self.conn.shrink_buffers();
                        }
                        KeepaliveAction::Dead => {
                            tracing::debug!("keepalive timeout");
                            self.keepalive = None;
                            // The peer is gone: Finishing must not wait for it to read.
                            self.close_deadline = Some(now);
                            self.finish_abnormally(Some(Error::KeepaliveTimeout));
                        }
                        KeepaliveAction::Wait => {}
                    }
                }
                continue;
            }
            ready!(self.poll_read_some(cx));
        }
    }

    /// The message in progress outlived [`WebSocketConfig::message_timeout`]:
    /// fail the connection with 1008 (our Close first, unless one was sent),
    /// then close the transport, waiting at most the close timeout for the
    /// peer to take the Close.
    #[cold]
    fn fail_message_timeout(&mut self) {
        tracing::debug!(close_code = 1008, "message timeout");
        self.message_deadline = None;
        // `Err` only when a Close was sent already: nothing more to say.
        let _ = self
            .conn
            .send_close(CloseCode::PolicyViolation, "message timeout");
        self.finish_abnormally(Some(Error::MessageTimeout));
    }

    /// Reads once from the transport and feeds the bytes to the protocol.
    /// `Ready` when something happened (bytes, end of stream, error), so the
    /// caller looks at the connection again.
    ///
    /// The bytes land in the thread's read buffer ([`READ_BUFFER`]): the
    /// protocol copies what it keeps before this returns, so every
    /// connection polled on a thread shares one.
    fn poll_read_some(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        READ_BUFFER.with(|cell| match cell.try_borrow_mut() {
            Ok(mut slot) => {
                let buf = slot.get_or_insert_with(|| vec![0; READ_CHUNK].into_boxed_slice());
                self.poll_read_into(cx, buf)
            }
            // The transport itself polls another connection on this thread
            // (a WebSocket tunnelled through a WebSocket, say).
            Err(_) => self.poll_read_on_stack(cx),
        })
    }

    /// [`Inner::poll_read_some`] when the thread's buffer is in use.
    #[inline(never)]
    fn poll_read_on_stack(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut buf = [0; NESTED_READ_CHUNK];
        self.poll_read_into(cx, &mut buf)
    }

    fn poll_read_into(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<()> {
        let mut read_buf = ReadBuf::new(buf);
        let read = Pin::new(&mut self.io).poll_read(cx, &mut read_buf);
        if read.is_pending() {
            // Waiting for the peer: a message left in progress now starts
            // its deadline (and one no longer in progress drops it). Checked
            // only here, not per read: a peer that keeps the socket busy is
            // sending the message, or bounded by the message size limit.
            if self.conn.mid_message() != self.message_deadline.is_some() {
                self.track_message();
                if self.poll_timer(cx).is_ready() {
                    cx.waker().wake_by_ref();
                }
            }
            if self.conn.buffer_capacity() > LARGE_BUFFER {
                // Nothing more to read: do not keep a big message's buffer.
                self.conn.shrink_buffers();
            } else if self.shrink_deadline.is_none() && self.conn.holds_buffers() {
                // Smaller ones go if the connection stays quiet.
                self.shrink_deadline = Some(Instant::now() + IDLE_SHRINK_AFTER);
                if self.poll_timer(cx).is_ready() {
                    // A deadline passed since the loop's own check: come
                    // back to handle it rather than miss its wake-up.
                    cx.waker().wake_by_ref();
                }
            }
        }
        match ready!(read) {
            Ok(()) if read_buf.filled().is_empty() => {
                if self.phase == Phase::AwaitingEof {
                    self.phase = Phase::Done;
                    self.close_deadline = None;
                    self.conn.receive_eof();
                } else {
                    self.finish_abnormally(None);
                }
            }
            Ok(()) => {
                // Any bytes from the peer prove it alive.
                if let Some(k) = self.keepalive.as_mut() {
                    k.on_frame(Instant::now);
                }
                if let Err(e) = self.conn.receive(read_buf.filled()) {
                    self.pending_error = Some(Box::new(e.into()));
                }
            }
            Err(e) => self.finish_abnormally(Some(e.into())),
        }
        Poll::Ready(())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.register_writer(cx);
        if self.phase != Phase::Open || self.conn.close_sent() {
            return Poll::Ready(Err(Error::ConnectionClosed));
        }
        while self.conn.backlog().bytes >= self.write_buffer_limit {
            if let Err(e) = ready!(self.poll_write_out(cx)) {
                self.finish_abnormally(None);
                return Poll::Ready(Err(e.into()));
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.register_writer(cx);
        if self.phase == Phase::Done {
            return Poll::Ready(Ok(()));
        }
        match ready!(self.poll_write_out(cx)) {
            Ok(()) => {
                // A just-sent Close starts the close timeout, which the
                // reading half arms: wake it, once. (Not after every flush:
                // that would be a spurious poll per batch.)
                if let Some(split) = &self.split {
                    if self.conn.close_sent() && self.close_deadline.is_none() {
                        split.wakers.reader.wake();
                    }
                }
                Poll::Ready(Ok(()))
            }
            Err(e) => {
                self.finish_abnormally(None);
                Poll::Ready(Err(e.into()))
            }
        }
    }

    fn send_with(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<(), SendError>,
    ) -> Result<(), Error> {
        if self.phase != Phase::Open {
            return Err(Error::ConnectionClosed);
        }
        f(&mut self.conn).map_err(Error::from)
    }
}

/// A WebSocket connection over any `AsyncRead + AsyncWrite + Unpin` transport.
///
/// It is a [`Stream`] of incoming [`Message`]s and a [`Sink`] of outgoing
/// ones. While it is polled for messages it answers Pings by itself, echoes
/// the peer's Close, runs the keepalive and enforces the close timeout. The
/// stream ends after the close handshake (or a failure); [`WebSocket::close_event`]
/// then tells how it ended.
///
/// Sending waits while more than
/// [`WebSocketConfig::write_buffer_limit`] bytes are queued (backpressure).
pub struct WebSocket<S> {
    inner: Inner<S>,
}

impl<S> fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("conn", &self.inner.conn)
            .field("phase", &self.inner.phase)
            .field("url", &self.inner.info.url)
            .finish_non_exhaustive()
    }
}

macro_rules! browser_api {
    () => {
        /// The ready state: `Connecting` (0), `Open` (1), `Closing` (2) or `Closed` (3).
        pub fn ready_state(&self) -> State {
            self.with_inner(|i| i.ready_state())
        }

        /// Bytes queued but not yet written to the transport (the browser's
        /// `bufferedAmount`).
        pub fn buffered_amount(&self) -> usize {
            self.with_inner(|i| i.conn.backlog().bytes)
        }

        /// The subprotocol the server selected, if any.
        pub fn protocol(&self) -> Option<String> {
            self.with_inner(|i| i.info.protocol.as_deref().map(str::to_owned))
        }

        /// The negotiated `Sec-WebSocket-Extensions` value, if any.
        pub fn extensions(&self) -> Option<String> {
            self.with_inner(|i| i.info.extensions.as_deref().map(str::to_owned))
        }

        /// The URL connected to (client), or the request target (server).
        pub fn url(&self) -> String {
            self.with_inner(|i| i.info.url.to_string())
        }

        /// How the connection ended; `None` while it is open.
        pub fn close_event(&self) -> Option<CloseEvent> {
            self.with_inner(|i| i.conn.close_event().cloned())
        }
    };
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a transport whose opening handshake is complete. `early` holds
    /// bytes read past the handshake (frames the peer sent right after it).
    pub fn from_raw(io: S, role: Role, config: WebSocketConfig, early: &[u8]) -> Self {
        Self::from_parts(io, role, config, HandshakeInfo::default(), early)
    }

    pub(crate) fn from_parts(
        io: S,
        role: Role,
        config: WebSocketConfig,
        info: HandshakeInfo,
        early: &[u8],
    ) -> Self {
        Self {
            inner: Inner::new(io, role, config, info, early),
        }
    }

    browser_api!();

    fn with_inner<R>(&self, f: impl FnOnce(&Inner<S>) -> R) -> R {
        f(&self.inner)
    }

    /// The next message; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        std::future::poll_fn(|cx| self.inner.poll_next_message(cx)).await
    }

    /// The next message, Ping or Pong; `None` once the connection is
    /// closed. For an application that shows control frames or measures
    /// round-trip times: [`WebSocket::recv`] and the [`Stream`] impl skip
    /// Pings and Pongs. A Ping has been answered already (unless
    /// [`ProtocolConfig::auto_pong`](crate::ProtocolConfig::auto_pong) is
    /// off); a Pong is the peer's answer to [`WebSocket::ping`] or to a
    /// keepalive Ping (payload `wshub`), or one the peer sent unasked
    /// (RFC 6455 §5.5.3).
    ///
    /// # Errors
    /// As [`WebSocket::recv`].
    pub async fn recv_incoming(&mut self) -> Option<Result<Incoming, Error>> {
        std::future::poll_fn(|cx| self.inner.poll_next::<true, false>(cx)).await
    }

    /// The next message as [`WebSocket::recv`] (Pings and Pongs skipped),
    /// or [`NextOrIdle::Idle`] once the connection has gone quiet and could
    /// be parked ([`WebSocket::try_park`]).
    ///
    /// Quiet means: no data message and no control frame received or sent
    /// for between 250 and 500 ms, and then still open, between messages,
    /// nothing queued either way, not split, no permessage-deflate context
    /// kept across messages. The 250 ms are those after which a quiet
    /// connection gives its buffers back anyway: that timer, when it fires
    /// and finds buffers held, gives them back and looks again 250 ms
    /// later; finding none held, nothing happened in between. Call
    /// [`WebSocket::watch_idle`] first: it starts the watch for a
    /// connection that has not exchanged anything yet. `Idle` comes once
    /// per quiet spell; polling on after it waits for the next message as
    /// [`WebSocket::recv`] does. The watch costs nothing per message: it is
    /// the timer that gives buffers back, looked at again.
    ///
    /// # Errors
    /// As [`WebSocket::recv`].
    pub fn poll_next_or_idle(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<NextOrIdle, Error>>> {
        self.inner.poll_next_or_idle(cx)
    }

    /// Starts the quiet watch of [`WebSocket::poll_next_or_idle`] now, so
    /// that a connection that never sends anything is reported idle too.
    pub fn watch_idle(&mut self) {
        self.inner
            .shrink_deadline
            .get_or_insert_with(|| Instant::now() + IDLE_SHRINK_AFTER);
    }

    /// The next message that is ready without waiting: one already read from
    /// the transport and parsed or, when part of a frame was read and fewer
    /// than [`WebSocketConfig::write_buffer_limit`] bytes are queued to send,
    /// one that a single read of what the transport already holds completes.
    /// For a server that answers a batch of pipelined messages, then flushes
    /// once: the batch ends by the time the limit is reached.
    ///
    /// `None` says only that no message is ready now. Errors, the end of the
    /// stream and the close handshake are reported by [`WebSocket::recv`]
    /// (or the [`Stream`] impl), which also writes the Pongs and the Close
    /// echo the protocol owes.
    pub async fn next_ready(&mut self) -> Option<Message> {
        std::future::poll_fn(|cx| Poll::Ready(self.inner.poll_next_ready(cx))).await
    }

    /// Sends a message, waiting for room in the write buffer and then for the
    /// bytes to reach the transport.
    ///
    /// # Errors
    /// [`Error::ConnectionClosed`] after a Close was sent; [`Error::Io`] if the
    /// transport fails.
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        self.send_with(|conn| conn.send_message(&message)).await
    }

    /// Sends a text message.
    ///
    /// # Errors
    /// As [`WebSocket::send`].
    pub async fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.send_with(|conn| conn.send_text(text)).await
    }

    /// Sends a message encoded once for many connections (server only).
    ///
    /// # Errors
    /// As [`WebSocket::send`], and [`Error::Send`] with
    /// [`SendError::MaskRequired`] on a client.
    pub async fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), Error> {
        self.send_with(|conn| conn.send_prepared(message)).await
    }

    /// Queues a message encoded once for many connections without waiting for
    /// it to be written; [`WebSocket::flush`] writes it out. Errors as
    /// [`WebSocket::send_prepared`].
    pub fn feed_prepared(&mut self, message: &PreparedMessage) -> Result<(), Error> {
        self.inner.send_with(|conn| conn.send_prepared(message))
    }

    /// Queues a message without waiting, even past
    /// [`WebSocketConfig::write_buffer_limit`]; [`WebSocket::flush`] writes
    /// it out. For answering a batch just read (see
    /// [`WebSocket::next_ready`]), whose replies grow the queue by about what
    /// one read brought; elsewhere [`WebSocket::send`] or the [`Sink`], which
    /// wait for room, keep a peer that does not read from growing it.
    ///
    /// # Errors
    /// As [`WebSocket::send`] (nothing is written here, so no I/O error).
    pub fn feed_message(&mut self, message: &Message) -> Result<(), Error> {
        self.inner.send_with(|conn| conn.send_message(message))
    }

    /// Sends a Ping with `payload` (at most 125 bytes).
    ///
    /// # Errors
    /// As [`WebSocket::send`], and [`Error::Send`] if `payload` is too long.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.send_with(|conn| conn.send_ping(payload)).await
    }

    /// Sends a Pong with `payload` (at most 125 bytes) unasked, as a
    /// one-way heartbeat (RFC 6455 §5.5.3); Pings are answered without
    /// this.
    ///
    /// # Errors
    /// As [`WebSocket::ping`].
    pub async fn pong(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.send_with(|conn| conn.send_pong(payload)).await
    }

    /// Writes everything queued.
    ///
    /// # Errors
    /// [`Error::Io`] if the transport fails.
    pub async fn flush(&mut self) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.inner.poll_flush(cx)).await
    }

    async fn send_with(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<(), SendError>,
    ) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        self.inner.send_with(f)?;
        self.flush().await
    }

    /// Starts the close handshake with `code` and `reason` (at most 123 bytes of
    /// UTF-8), then reads until the peer's Close arrives or the close timeout
    /// passes, dropping any messages still in flight (RFC 6455 §7.1.2).
    /// Returns how the connection ended.
    ///
    /// # Errors
    /// [`Error::Send`] for a code that may not be sent (§7.4) or a reason over
    /// 123 bytes; nothing is sent then.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<CloseEvent, Error> {
        if self.inner.phase == Phase::Open && !self.inner.conn.close_sent() {
            self.inner.conn.send_close(code, reason)?;
        }
        while let Some(item) = self.recv().await {
            if let Err(e) = item {
                tracing::debug!(error = %e, "error while closing");
            }
        }
        Ok(self.close_event().unwrap_or_else(CloseEvent::abnormal))
    }

    /// Queues a Close with `code` and `reason` without waiting. Keep reading
    /// the stream: messages the peer sent before it saw our Close still
    /// arrive, then the stream ends with the close handshake (RFC 6455 §7.1.2).
    ///
    /// # Errors
    /// As [`WebSocket::close`]; [`Error::ConnectionClosed`] if a Close was
    /// already sent.
    pub fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.inner.send_with(|conn| conn.send_close(code, reason))
    }

    /// Splits into a reading and a writing half, usable from separate tasks.
    pub fn split(mut self) -> (WebSocketReader<S>, WebSocketWriter<S>) {
        let wakers = Arc::new(Wakers::default());
        self.inner.split = Some(Box::new(SplitWakers {
            write_waker: Waker::from(wakers.clone()),
            wakers,
        }));
        let shared = Arc::new(Mutex::new(self.inner));
        (
            WebSocketReader {
                shared: shared.clone(),
            },
            WebSocketWriter { shared },
        )
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Whether [`WebSocket::into_idle_parts`] would take this connection
    /// apart (`Inner::parkable`).
    pub(crate) fn is_parkable(&self) -> bool {
        self.inner.parkable()
    }

    /// The transport and what rebuilds the connection around it, when it is
    /// idle (`Inner::parkable`); `self` back otherwise.
    // `Err` is the connection itself, back as it came (see `try_park`).
    #[allow(clippy::result_large_err)]
    pub(crate) fn into_idle_parts(self) -> Result<(S, IdleParts), Self> {
        if !self.inner.parkable() {
            return Err(self);
        }
        let inner = self.inner;
        let parts = IdleParts {
            role: inner.conn.role(),
            config: inner.conn.config(),
            keepalive: inner.keepalive,
            write_buffer_limit: inner.write_buffer_limit,
            close_timeout: inner.close_timeout,
            message_timeout: inner.message_timeout,
            info: inner.info,
        };
        Ok((inner.io, parts))
    }

    /// The connection [`WebSocket::into_idle_parts`] took apart, on `io`.
    /// Its quiet watch ([`WebSocket::watch_idle`]) is running.
    pub(crate) fn from_idle_parts(io: S, parts: IdleParts) -> Self {
        let mut ws = Self {
            inner: Inner {
                io,
                conn: Connection::new(parts.role, parts.config),
                write_buffer_limit: parts.write_buffer_limit,
                close_timeout: parts.close_timeout,
                message_timeout: parts.message_timeout,
                info: parts.info,
                phase: Phase::Open,
                keepalive: parts.keepalive,
                close_deadline: None,
                message_deadline: None,
                shrink_deadline: None,
                timer: None,
                timer_waker: None,
                pending_error: None,
                split: None,
            },
        };
        ws.watch_idle();
        ws
    }
}

impl<S> WebSocket<S> {
    /// The transport, e.g. for its `peer_addr`.
    pub fn get_ref(&self) -> &S {
        &self.inner.io
    }

    /// The transport, mutably: for its settings (`set_nodelay`). Reading
    /// from or writing to it directly corrupts the WebSocket's stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner.io
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.poll_next_message(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().inner.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.get_mut()
            .inner
            .send_with(|conn| conn.send_message(&item))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().inner.poll_flush(cx)
    }

    /// Sends Close 1000 (if no Close was sent yet) and flushes. Keep reading
    /// the stream to see the peer's answer.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let inner = &mut self.get_mut().inner;
        if inner.phase == Phase::Open && !inner.conn.close_sent() {
            inner.conn.send_close(CloseCode::NormalClosure, "")?;
        }
        inner.poll_flush(cx)
    }
}

fn lock<S>(shared: &Mutex<Inner<S>>) -> MutexGuard<'_, Inner<S>> {
    // A poisoned lock means a poll panicked mid-way; the state is still
    // consistent enough to report closed, so take it.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The reading half of a split [`WebSocket`]: a [`Stream`] of messages. It
/// also answers Pings and echoes Close, so keep polling it.
pub struct WebSocketReader<S> {
    // A std Mutex is fine: it is held only inside a poll, never across an `.await`.
    shared: Arc<Mutex<Inner<S>>>,
}

/// The writing half of a split [`WebSocket`]: a [`Sink`] of messages.
pub struct WebSocketWriter<S> {
    shared: Arc<Mutex<Inner<S>>>,
}

impl<S> fmt::Debug for WebSocketReader<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketReader").finish_non_exhaustive()
    }
}

impl<S> fmt::Debug for WebSocketWriter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketWriter").finish_non_exhaustive()
    }
}

/// [`WebSocketReader::reunite`] was given the halves of two different
/// WebSockets; here they are back.
pub struct ReuniteError<S>(pub WebSocketReader<S>, pub WebSocketWriter<S>);

impl<S> fmt::Debug for ReuniteError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReuniteError(..)")
    }
}

impl<S> fmt::Display for ReuniteError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the reader and the writer are halves of different WebSockets")
    }
}

impl<S> std::error::Error for ReuniteError<S> {}

impl<S> WebSocketReader<S> {
    /// The WebSocket `self` and `writer` were split from, whole again.
    ///
    /// # Errors
    /// [`ReuniteError`], holding both halves, if they are not the halves
    /// of one WebSocket.
    pub fn reunite(self, writer: WebSocketWriter<S>) -> Result<WebSocket<S>, ReuniteError<S>> {
        if !Arc::ptr_eq(&self.shared, &writer.shared) {
            return Err(ReuniteError(self, writer));
        }
        drop(writer);
        let Ok(shared) = Arc::try_unwrap(self.shared) else {
            unreachable!("only the two halves hold the connection");
        };
        let mut inner = shared.into_inner().unwrap_or_else(|p| p.into_inner());
        inner.split = None;
        Ok(WebSocket { inner })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketReader<S> {
    browser_api!();

    fn with_inner<R>(&self, f: impl FnOnce(&Inner<S>) -> R) -> R {
        f(&lock(&self.shared))
    }

    /// The next message; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        std::future::poll_fn(|cx| lock(&self.shared).poll_next_message(cx)).await
    }

    /// The next message, Ping or Pong, as [`WebSocket::recv_incoming`].
    pub async fn recv_incoming(&mut self) -> Option<Result<Incoming, Error>> {
        std::future::poll_fn(|cx| lock(&self.shared).poll_next::<true, false>(cx)).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketWriter<S> {
    browser_api!();

    fn with_inner<R>(&self, f: impl FnOnce(&Inner<S>) -> R) -> R {
        f(&lock(&self.shared))
    }

    /// Sends a message, waiting for room in the write buffer and for the bytes
    /// to reach the transport.
    ///
    /// # Errors
    /// As [`WebSocket::send`].
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        std::future::poll_fn(|cx| lock(&self.shared).poll_ready(cx)).await?;
        lock(&self.shared).send_with(|conn| conn.send_message(&message))?;
        std::future::poll_fn(|cx| lock(&self.shared).poll_flush(cx)).await
    }

    /// Queues a message encoded once for many connections (server only)
    /// without waiting; [`WebSocketWriter::flush`] writes it out.
    ///
    /// # Errors
    /// As [`WebSocket::feed_prepared`].
    pub fn feed_prepared(&mut self, message: &PreparedMessage) -> Result<(), Error> {
        lock(&self.shared).send_with(|conn| conn.send_prepared(message))
    }

    /// Sends a message encoded once for many connections (server only).
    ///
    /// # Errors
    /// As [`WebSocket::send_prepared`].
    pub async fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), Error> {
        std::future::poll_fn(|cx| lock(&self.shared).poll_ready(cx)).await?;
        self.feed_prepared(message)?;
        self.flush().await
    }

    /// Writes everything queued.
    ///
    /// # Errors
    /// [`Error::Io`] if the transport fails.
    pub async fn flush(&mut self) -> Result<(), Error> {
        std::future::poll_fn(|cx| lock(&self.shared).poll_flush(cx)).await
    }

    /// Sends a Close with `code` and `reason` and flushes it; the reading half
    /// sees the peer's answer and then ends.
    ///
    /// # Errors
    /// As [`WebSocket::close`].
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        {
            let mut inner = lock(&self.shared);
            if inner.phase == Phase::Open && !inner.conn.close_sent() {
                inner.conn.send_close(code, reason)?;
            }
        }
        std::future::poll_fn(|cx| lock(&self.shared).poll_flush(cx)).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocketReader<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        lock(&self.shared).poll_next_message(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocketWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        lock(&self.shared).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        lock(&self.shared).send_with(|conn| conn.send_message(&item))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        lock(&self.shared).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut inner = lock(&self.shared);
        if inner.phase == Phase::Open && !inner.conn.close_sent() {
            inner.conn.send_close(CloseCode::NormalClosure, "")?;
        }
        inner.poll_flush(cx)
    }
}
