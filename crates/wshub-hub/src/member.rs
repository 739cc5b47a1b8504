//! One `/ws` connection, a member of the hub: JSON requests in (join,
//! leave, publish), room messages out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use wshub::{CloseCode, Error, Message, NextOrIdle, PreparedMessage, WebSocket};

use crate::auth::{Identity, RoomAction, Tokens};
use crate::metrics::{HubClose, OpenConnection};
use crate::protocol::{decode_request, ErrorCode, Op, ServerMessage};
use serde_json::Value;

use crate::engine::{EngineError, PresenceJoin, RedisEngine};
use crate::in_flight::EngineSide;
use crate::park::{IdleSession, Parkable, ParkedConn};
use crate::protocol::Since;
use crate::rooms::{
    Inbox, JoinRefused, Joined, NameTaken, Outbox, ParkedInbox, Rooms, SendQueue, Sender, Signal,
};
use crate::session::{finish, log_end};

/// What a member's session is allowed, from [`HubConfig`](crate::HubConfig).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemberLimits {
    /// [`HubConfig::send_queue`](crate::HubConfig::send_queue) and
    /// [`HubConfig::send_queue_bytes`](crate::HubConfig::send_queue_bytes).
    pub(crate) send_queue: SendQueue,
    /// [`HubConfig::write_timeout`](crate::HubConfig::write_timeout).
    pub(crate) write_timeout: Duration,
    /// [`WebSocketConfig::write_buffer_limit`](wshub::WebSocketConfig::write_buffer_limit):
    /// bytes queued on the socket above which the session stops taking
    /// frames from its send queue and requests from its client until the
    /// socket drains.
    pub(crate) write_buffer_limit: usize,
    /// [`HubConfig::max_rooms_per_member`](crate::HubConfig::max_rooms_per_member).
    pub(crate) max_rooms: usize,
    /// [`HubConfig::message_rate`](crate::HubConfig::message_rate),
    /// [`HubConfig::message_burst`](crate::HubConfig::message_burst) and
    /// [`HubConfig::rate_limit_grace`](crate::HubConfig::rate_limit_grace).
    pub(crate) rate: RateLimit,
}

impl Default for MemberLimits {
    fn default() -> Self {
        crate::HubConfig::default().member_limits()
    }
}

/// The `/ws` session of connection `conn_id`. Not an `async fn`, whose
/// future keeps its arguments twice (rust-lang/rust#62958): every idle
/// member would pay for the `WebSocket` twice.
///
/// One wait picks what happened next: the hub shutting down, the socket
/// taking (or refusing, past [`MemberLimits::write_timeout`]) what is
/// queued for it, frames from the rooms, or a request from the client. The
/// write never blocks the rest: while it waits, shutdown and the send
/// queue's limit are still seen, and the client is still read (so the
/// keepalive runs) until [`MemberLimits::write_buffer_limit`] bytes are
/// queued on the socket.
///
/// Once the connection has gone quiet (`WebSocket::poll_next_or_idle`) with
/// nothing queued either way, nothing in flight with the Redis engine and
/// publishers not held back, and it can be parked (plain TCP, no deflate
/// context), the session ends and returns it parked with its member state
/// ([`IdleMember`]), for the hub's parker to hold without a task; the
/// member stays in its rooms, and a delivery resumes it ([`resume`]).
// Written out by hand on purpose: see above. Its arguments are what a
// session is made of; bundling them would only add a type.
#[allow(clippy::manual_async_fn, clippy::too_many_arguments)]
pub(crate) fn run<S: Parkable>(
    ws: WebSocket<S>,
    conn_id: u64,
    rooms: Arc<Rooms>,
    limits: MemberLimits,
    shutdown: watch::Receiver<bool>,
    open: OpenConnection<true>,
    auth: MemberAuth,
    engine: Option<Arc<RedisEngine>>,
) -> impl Future<Output = Option<ParkedConn>> {
    let (out, inbox) = rooms.outbox(limits.send_queue);
    let auth = Auth::new(auth);
    let member = Member {
        conn_id,
        name: auth
            .identity
            .as_ref()
            .map_or_else(|| format!("anon-{conn_id}"), |id| id.sub.clone()),
        joined: RoomsJoined::new(),
        rooms,
        out,
        metrics: open,
        auth,
        engine: engine.map(|engine| Box::new(EngineSide::new(engine))),
    };
    let mut ws = ws;
    let welcome = ServerMessage::Welcome {
        id: member.conn_id,
        name: &member.name,
    }
    .to_json();
    // Queued, written by the session. Fails only on a connection that has
    // failed already (its first bytes broke a rule), whose first read in
    // the session reports it.
    let _ = ws.feed_message(&Message::text(welcome));
    session(ws, member, inbox, limits.rate, limits, shutdown)
}

/// The session of a member [`run`] parked, on its connection `ws` again:
/// as before, without a second welcome.
pub(crate) fn resume<S: Parkable>(
    ws: WebSocket<S>,
    idle: IdleMember,
    limits: MemberLimits,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = Option<ParkedConn>> {
    let IdleMember {
        mut member,
        inbox,
        rate,
        auth_deadline,
    } = idle;
    if let Some(at) = auth_deadline {
        member.auth.deadline = Some(Box::pin(tokio::time::sleep_until(at)));
    }
    let rate = limits.rate.with_state(rate);
    session(ws, member, inbox.resume(), rate, limits, shutdown)
}

/// A quiet member without its task: what its session needs to go on
/// (see [`run`]), held by the hub's parker.
pub(crate) struct IdleMember {
    member: Member,
    /// The receiving end of its send queue.
    inbox: ParkedInbox,
    /// Its message rate's bucket (the settings are the hub's).
    rate: RateState,
    /// Its auth deadline (the auth timeout or the token's expiry), if
    /// armed: kept as an instant, not a timer, while parked.
    auth_deadline: Option<Instant>,
}

impl std::fmt::Debug for IdleMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleMember")
            .field("conn_id", &self.member.conn_id)
            .field("name", &self.member.name)
            .field("joined", &self.member.joined)
            .field("auth_deadline", &self.auth_deadline)
            .finish_non_exhaustive()
    }
}

impl IdleMember {
    /// When the parker must resume it whatever else happens: its auth
    /// deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.auth_deadline
    }

    /// Has `waker` woken by its room deliveries and its kick; true if
    /// either is there already.
    pub(crate) fn watch(&self, waker: &Waker) -> bool {
        let mut cx = Context::from_waker(waker);
        self.inbox.poll_signal(&mut cx).is_ready()
    }

    /// Its connection ended while parked, with close code `code`: counted,
    /// and out of its rooms (as its drop does).
    pub(crate) fn ended(self, code: u16) {
        self.member.metrics.ended(code);
    }
}

/// The session of [`run`] and [`resume`], writing first what is queued on
/// `ws` (a new member's welcome). Its parts are arguments, captured by the `async move` block as they
/// are: parts moved out of a struct inside the block would keep their own
/// slots in the future too (16 bytes per idle member).
fn session<S: Parkable>(
    mut ws: WebSocket<S>,
    mut member: Member,
    mut inbox: Inbox,
    mut rate: RateLimit,
    limits: MemberLimits,
    mut shutdown: watch::Receiver<bool>,
) -> impl Future<Output = Option<ParkedConn>> {
    let mut writer = Writer::new(limits.write_timeout);
    if ws.buffered_amount() > 0 {
        writer.fed(&ws);
    }
    ws.watch_idle();
    let write_buffer_limit = limits.write_buffer_limit;
    let max_rooms = limits.max_rooms;
    let backlog = member.rooms.backlog().clone();
    async move {
        let mut error = None;
        // The Close the hub ends the session with, if it does.
        let mut closing: Option<(CloseCode, &'static str)> = None;
        // This receiver was cloned from the server's before any shutdown was
        // sent, so a change is the shutdown (or the server gone).
        let mut shutdown_changed = std::pin::pin!(shutdown.changed());
        let mut paused = None;
        let mut requests_first = false;
        while error.is_none() {
            // Only picks what happened; the work is done after it, so the
            // futures polled here and the work's own never coexist in the
            // session's state.
            let wake = std::future::poll_fn(|cx| {
                if shutdown_changed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Shutdown);
                }
                if let Poll::Ready(wake) = member.poll_own(cx) {
                    return Poll::Ready(wake);
                }
                if let Poll::Ready(wake) = writer.poll(&mut ws, cx) {
                    return Poll::Ready(wake);
                }
                let reading = member.takes_requests();
                // Nothing more is queued on a socket holding its limit:
                // frames stay in the send queue (bounded), requests in the
                // client's socket.
                let room = ws.buffered_amount() < write_buffer_limit;
                // The room's frames and the client's requests take turns, so
                // a busy room does not starve this member's own requests and
                // heartbeats, nor a chatty client its room messages.
                for turn in [requests_first, !requests_first] {
                    if turn {
                        // While the hub is behind on its fan-out, requests
                        // (each publish a fan-out more) wait in the socket.
                        if room && reading && backlog.poll_eased(&mut paused, cx).is_ready() {
                            if let Poll::Ready(incoming) = ws.poll_next_or_idle(cx) {
                                return Poll::Ready(match incoming {
                                    Some(Ok(NextOrIdle::Message(message))) => {
                                        Wake::Incoming(Some(Ok(message)))
                                    }
                                    Some(Ok(NextOrIdle::Idle)) => Wake::Idle,
                                    // `NextOrIdle` is non-exhaustive; it
                                    // has no other variant.
                                    Some(Ok(_)) => Wake::Nothing,
                                    Some(Err(e)) => Wake::Incoming(Some(Err(e))),
                                    None => Wake::Incoming(None),
                                });
                            }
                        }
                    } else {
                        match inbox.poll_signal(cx) {
                            Poll::Ready(Signal::Kicked) => return Poll::Ready(Wake::Kicked),
                            Poll::Ready(Signal::Frames) if room => {
                                return Poll::Ready(Wake::Frames)
                            }
                            _ => {}
                        }
                    }
                }
                Poll::Pending
            })
            .await;
            match wake {
                Wake::Frames => requests_first = true,
                Wake::Incoming(_) => requests_first = false,
                Wake::Idle => {
                    let quiet = !writer.pending
                        && paused.is_none()
                        && member.engine.as_ref().is_none_or(|side| side.is_idle());
                    if quiet {
                        match S::try_park(ws) {
                            Ok(socket) => {
                                let auth_deadline =
                                    member.auth.deadline.take().map(|sleep| sleep.deadline());
                                let conn_id = member.conn_id;
                                let idle = IdleMember {
                                    member,
                                    inbox: inbox.park(),
                                    rate: rate.state,
                                    auth_deadline,
                                };
                                return Some(ParkedConn {
                                    socket,
                                    conn_id,
                                    session: IdleSession::Member(Box::new(idle)),
                                });
                            }
                            Err(back) => ws = back,
                        }
                    }
                    continue;
                }
                Wake::Nothing => continue,
                _ => {}
            }
            // Messages a `join` recovered, sent right after its answer and
            // before anything in the send queue (docs/protocol.md, "History
            // and resume"). Scoped to this turn: no await while it lives,
            // so an idle member's future has no room for it; nor for a
            // request deferred to the Redis engine, boxed.
            let join = {
                let mut replay = Vec::new();
                let mut deferred = None;
                let reply = match wake {
                    Wake::Shutdown => {
                        member.metrics.hub_closed(HubClose::Shutdown);
                        closing = Some((CloseCode::GoingAway, "server shutting down"));
                        break;
                    }
                    Wake::AuthDeadline => {
                        let (why, close) = if member.auth.identity.is_some() {
                            (HubClose::TokenExpired, (TOKEN_EXPIRED, "token expired"))
                        } else {
                            (
                                HubClose::AuthRequired,
                                (AUTH_REQUIRED, "authentication required"),
                            )
                        };
                        member.metrics.hub_closed(why);
                        tracing::info!(
                            conn_id = member.conn_id,
                            close_code = close.0.as_u16(),
                            reason = close.1,
                            "closing"
                        );
                        closing = Some(close);
                        break;
                    }
                    Wake::Kicked => {
                        member.metrics.hub_closed(HubClose::SlowConsumer);
                        closing = Some(slow_consumer(member.conn_id, "send queue full"));
                        break;
                    }
                    Wake::WriteTimeout => {
                        member.metrics.hub_closed(HubClose::SlowConsumer);
                        closing = Some(slow_consumer(member.conn_id, "write timed out"));
                        break;
                    }
                    Wake::Written(result) => {
                        error = result.err();
                        None
                    }
                    Wake::Frames => {
                        error = inbox.drain(|frame| ws.feed_prepared(frame)).err();
                        writer.fed(&ws);
                        None
                    }
                    Wake::Answered => {
                        if let Some(side) = &mut member.engine {
                            error = feed_answered(&mut ws, side).err();
                            writer.fed(&ws);
                        }
                        None
                    }
                    Wake::Incoming(None) => break,
                    // Handled above.
                    Wake::Idle | Wake::Nothing => None,
                    Wake::Incoming(Some(Err(e))) => {
                        error = Some(e);
                        None
                    }
                    Wake::Incoming(Some(Ok(message))) => match rate.admit(Instant::now()) {
                        Admit::Yes => match message {
                            Message::Binary(_) => {
                                let reply_json = ServerMessage::Error {
                                    code: ErrorCode::BinaryUnsupported,
                                    message: "the hub protocol is JSON in text messages",
                                    id: None,
                                };
                                Some(reply_json.to_json())
                            }
                            // The bytes, not `as_str`: the protocol core
                            // validated them as UTF-8 already, and `as_str`
                            // would again.
                            Message::Text(text) => member.answer(
                                text.as_bytes(),
                                max_rooms,
                                &mut replay,
                                &mut deferred,
                            ),
                        },
                        Admit::RateLimited => {
                            member.metrics.rate_limited();
                            Some(rate.refusal())
                        }
                        Admit::Abuse => {
                            member.metrics.hub_closed(HubClose::RateLimit);
                            tracing::info!(
                                conn_id = member.conn_id,
                                close_code = 1008,
                                "over the message rate for too long, disconnecting"
                            );
                            closing = Some((CloseCode::PolicyViolation, "message rate exceeded"));
                            break;
                        }
                    },
                };
                if let Some(reply) = reply {
                    match &mut member.engine {
                        // Behind the answers still to come (only a join has
                        // a replay, and a join waits for them).
                        Some(side) if !side.is_idle() && replay.is_empty() => {
                            side.push_answer(reply)
                        }
                        _ => {
                            error = feed_answer(&mut ws, reply, &replay).err();
                            writer.fed(&ws);
                        }
                    }
                }
                match deferred {
                    // Sent on, not awaited: the session goes on reading,
                    // and answers it in turn (`Wake::Answered`).
                    Some(EngineOp::Publish {
                        room,
                        message,
                        key,
                        id,
                    }) => {
                        if let Some(side) = &mut member.engine {
                            let from = (&member.name, member.conn_id);
                            side.publish(room, from.0, from.1, &message, key.as_deref(), id);
                        }
                        None
                    }
                    Some(EngineOp::Join(join)) => Some(Box::new(join)),
                    None => None,
                }
            };
            // A join through the Redis engine: after the publishes before
            // it are answered, awaited here, in an allocation of its own,
            // so an idle member's future has no room for it.
            if let Some(join) = join {
                let (fed, reply, replay) = Box::pin(member.join_in_turn(&mut ws, join)).await;
                let fed = fed.and_then(|()| match reply {
                    Some(reply) => feed_answer(&mut ws, reply, &replay),
                    None => Ok(()),
                });
                error = error.or(fed.err());
                writer.fed(&ws);
            }
        }
        // Out of its rooms first: nothing more is queued for it, and its
        // rooms hear it leave without waiting for its close handshake.
        member.leave_all();
        drop(inbox);
        if let Some((code, reason)) = closing {
            // Queued behind whatever the socket has not taken; the close
            // timeout bounds the wait for a peer that does not read.
            let _ = ws.close(code, reason).await;
        }
        Box::pin(finish(&mut ws)).await;
        let code = log_end(member.conn_id, "/ws", &ws, error.as_ref());
        member.metrics.ended(code);
        None
    }
}

/// Queues the answers to requests in flight that are in, in order.
fn feed_answered<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    side: &mut EngineSide,
) -> Result<(), Error> {
    side.take_answered(|reply| ws.feed_message(&Message::text(reply)))
}

/// Queues a direct answer and the messages a join recovered after it.
fn feed_answer<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    reply: String,
    replay: &[PreparedMessage],
) -> Result<(), Error> {
    ws.feed_message(&Message::text(reply))?;
    for frame in replay {
        ws.feed_prepared(frame)?;
    }
    Ok(())
}

/// Close code of a connection that must authenticate and did not within
/// the auth timeout (docs/protocol.md, "Authentication").
const AUTH_REQUIRED: CloseCode = CloseCode::Other(4001);
/// Close code of a connection whose token expired without a fresh `auth`.
const TOKEN_EXPIRED: CloseCode = CloseCode::Other(4002);

/// What woke a member's task.
enum Wake {
    Shutdown,
    /// The auth timeout passed before `auth`, or the token expired.
    AuthDeadline,
    /// The send queue passed its limit.
    Kicked,
    /// The socket stayed blocked for [`MemberLimits::write_timeout`].
    WriteTimeout,
    /// Everything queued on the socket was written (or the write failed).
    Written(Result<(), Error>),
    Frames,
    /// The oldest request in flight with the Redis engine is answered.
    Answered,
    Incoming(Option<Result<Message, Error>>),
    /// The connection went quiet ([`NextOrIdle::Idle`]): park it if it can be.
    Idle,
    /// Nothing to act on.
    Nothing,
}

/// The socket's side of a session: whether bytes wait to be written, and
/// the write-stall deadline while they cannot be.
struct Writer {
    /// Bytes were queued on the socket and not yet flushed.
    pending: bool,
    /// [`MemberLimits::write_timeout`].
    timeout: Duration,
    /// Armed while a flush waits on the socket; allocated at the first such
    /// wait, so a member whose socket always takes its bytes has none.
    stall: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// Bytes queued on the socket when last looked at.
    queued: usize,
    /// Bytes the socket took since the deadline was set.
    drained: usize,
}

/// Bytes a blocked socket must take to restart the write timeout (or all
/// it had, if less): a reader that takes a byte now and then is a slow
/// consumer too, and is not to hold the hub's memory, or count as lagging
/// in its [`Backlog`](crate::rooms::Backlog), for long.
const WRITE_PROGRESS: usize = 16 * 1024;

impl Writer {
    fn new(timeout: Duration) -> Self {
        Self {
            pending: false,
            timeout,
            stall: None,
            armed: false,
            queued: 0,
            drained: 0,
        }
    }

    /// Bytes were just queued on `ws`.
    fn fed<S>(&mut self, ws: &WebSocket<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.pending = true;
        self.queued = ws.buffered_amount();
    }

    /// Flushes what is queued. `Ready` with [`Wake::Written`] once it is all
    /// written (or the socket failed), with [`Wake::WriteTimeout`] once the
    /// socket has taken less than [`WRITE_PROGRESS`] for the timeout.
    fn poll<S>(&mut self, ws: &mut WebSocket<S>, cx: &mut std::task::Context<'_>) -> Poll<Wake>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if !self.pending {
            return Poll::Pending;
        }
        if let Poll::Ready(result) = ws.poll_flush_unpin(cx) {
            self.pending = false;
            self.armed = false;
            return Poll::Ready(Wake::Written(result));
        }
        let queued = ws.buffered_amount();
        self.drained += self.queued.saturating_sub(queued);
        self.queued = queued;
        if !self.armed || self.drained >= WRITE_PROGRESS {
            let deadline = Instant::now() + self.timeout;
            match &mut self.stall {
                Some(stall) => stall.as_mut().reset(deadline),
                None => self.stall = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
            self.drained = 0;
        }
        if let Some(stall) = &mut self.stall {
            if stall.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::WriteTimeout);
            }
        }
        Poll::Pending
    }
}

/// Logs a slow consumer's disconnection (docs/protocol.md, "Slow
/// consumers"): its send queue passed its limit, or its socket stayed
/// blocked for the write timeout. Returns the Close it gets.
fn slow_consumer(conn_id: u64, reason: &'static str) -> (CloseCode, &'static str) {
    tracing::info!(
        conn_id,
        close_code = 1008,
        reason,
        "disconnecting slow consumer"
    );
    (CloseCode::PolicyViolation, reason)
}

/// A token bucket over a client's messages (docs/protocol.md, "Limits"):
/// `rate` messages per second on average, `burst` at once. A message over
/// the rate is answered with an `error` of code `rate_limited` and
/// otherwise ignored; a client still over the rate `grace` after its first
/// refusal, without having let the bucket fill up again in between, is
/// closed with 1008.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateLimit {
    rate: u32,
    burst: u32,
    grace: Duration,
    state: RateState,
}

/// What a [`RateLimit`] remembers of one client, apart from its settings:
/// all a parked member keeps of it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RateState {
    /// Tokens, in thousandths; `None` until the first message, when the
    /// bucket starts full.
    tokens: Option<(u64, Instant)>,
    /// The first refusal since the bucket was last full.
    over_since: Option<Instant>,
}

/// What [`RateLimit::admit`] decided about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Within the rate: carry it out.
    Yes,
    /// Over the rate: answer `rate_limited`.
    RateLimited,
    /// Over the rate for the whole grace period: close with 1008.
    Abuse,
}

impl RateLimit {
    /// `rate` messages per second, `burst` at once (each at least 1), and
    /// `grace` over the rate before the connection is closed.
    pub(crate) fn new(rate: u32, burst: u32, grace: Duration) -> Self {
        Self {
            rate: rate.max(1),
            burst: burst.max(1),
            grace,
            state: RateState::default(),
        }
    }

    /// This bucket's settings with `state`, a parked member's.
    fn with_state(self, state: RateState) -> Self {
        Self { state, ..self }
    }

    /// Takes a token for a message arriving at `now`.
    pub(crate) fn admit(&mut self, now: Instant) -> Admit {
        let full = u64::from(self.burst) * 1000;
        let tokens = match self.state.tokens {
            None => full,
            Some((tokens, last)) => {
                let elapsed = now.saturating_duration_since(last).as_micros();
                let refill = elapsed.saturating_mul(u128::from(self.rate)) / 1000;
                full.min(tokens.saturating_add(u64::try_from(refill).unwrap_or(u64::MAX)))
            }
        };
        if tokens == full {
            self.state.over_since = None;
        }
        if tokens >= 1000 {
            self.state.tokens = Some((tokens - 1000, now));
            return Admit::Yes;
        }
        self.state.tokens = Some((tokens, now));
        let since = *self.state.over_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.grace {
            Admit::Abuse
        } else {
            Admit::RateLimited
        }
    }

    /// The `error` answering a message over the rate.
    fn refusal(&self) -> String {
        ServerMessage::Error {
            code: ErrorCode::RateLimited,
            message: &format!(
                "over {} messages per second (bursts of {}); this one was ignored",
                self.rate, self.burst
            ),
            id: None,
        }
        .to_json()
    }
}

/// The rooms a member joined.
type RoomsJoined = smallvec::SmallVec<[String; 1]>;

/// What one member is: its identity and the rooms it is in.
struct Member {
    conn_id: u64,
    /// Display name: `anon-<id>` until a join names it.
    name: String,
    /// The rooms joined: a few, so a Vec beats a set's node allocation, and
    /// the first inline (a parked member in one room has no allocation for
    /// it).
    joined: RoomsJoined,
    rooms: Arc<Rooms>,
    /// Where the rooms deliver this member's frames.
    out: Outbox,
    metrics: OpenConnection<true>,
    auth: Auth,
    /// The Redis engine, when the hub runs on one, and the publishes in
    /// flight with it. Boxed: one pointer in every member's future.
    engine: Option<Box<EngineSide>>,
}

/// What a member's session is told of authentication when it starts.
#[derive(Debug, Default)]
pub(crate) struct MemberAuth {
    /// The hub's token settings, if it takes tokens.
    pub(crate) tokens: Option<Arc<Tokens>>,
    /// Who the handshake's token said the client is.
    pub(crate) identity: Option<Identity>,
}

/// A member's authentication state.
struct Auth {
    tokens: Option<Arc<Tokens>>,
    identity: Option<Box<Identity>>,
    /// Until the member has authenticated on a hub that requires it, the
    /// auth timeout; after, its token's expiry, if any. Allocated only
    /// then: an anonymous member of a hub without tokens has none.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Auth {
    fn new(start: MemberAuth) -> Self {
        let mut auth = Self {
            tokens: start.tokens,
            identity: start.identity.map(Box::new),
            deadline: None,
        };
        match (&auth.identity, &auth.tokens) {
            (Some(_), _) => auth.arm_expiry(),
            (None, Some(tokens)) if tokens.require => {
                auth.deadline = Some(Box::pin(tokio::time::sleep(tokens.timeout)));
            }
            _ => {}
        }
        auth
    }

    /// The deadline at the identity's expiry, or none.
    fn arm_expiry(&mut self) {
        let expires = self.identity.as_ref().and_then(|id| id.expires);
        self.deadline = expires.map(|at| {
            let left = at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            Box::pin(tokio::time::sleep(left))
        });
    }

    /// Whether requests other than `auth` wait for it.
    fn must_authenticate(&self) -> bool {
        self.identity.is_none() && self.tokens.as_ref().is_some_and(|t| t.require)
    }

    fn poll_deadline(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        match &mut self.deadline {
            Some(deadline) => deadline.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.leave_all();
    }
}

impl Member {
    /// What the member itself wakes for: its auth deadline, and the oldest
    /// request in flight with the Redis engine answered. (One method: the
    /// session's wait captures `member` once, not a field each.)
    fn poll_own(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Wake> {
        if self.auth.poll_deadline(cx).is_ready() {
            return Poll::Ready(Wake::AuthDeadline);
        }
        match &mut self.engine {
            Some(side) => side.poll_answered(cx).map(|()| Wake::Answered),
            None => Poll::Pending,
        }
    }

    /// Whether the member reads requests: not while as many publishes are
    /// in flight as allowed (the next ones wait in the socket).
    fn takes_requests(&self) -> bool {
        self.engine.as_ref().is_none_or(|side| !side.is_full())
    }

    /// Leaves every room joined. Called once the session stops reading, and
    /// again on drop, so a session future dropped before its end (a panic,
    /// runtime shutdown, an embedder's cancellation) does not stay a member
    /// of its rooms.
    fn leave_all(&mut self) {
        for room in self.joined.drain(..) {
            let _ = self.rooms.leave(&room, self.conn_id);
        }
    }

    /// Verifies `token` and takes the identity it proves, or says why not
    /// (the `error` code and message).
    fn authenticate(&mut self, token: &str) -> Result<(), (ErrorCode, String)> {
        let Some(tokens) = &self.auth.tokens else {
            return Err((
                ErrorCode::AuthUnavailable,
                "this hub takes no tokens".to_owned(),
            ));
        };
        let identity = tokens
            .verifier
            .verify(token, std::time::SystemTime::now())
            .map_err(|e| (ErrorCode::Unauthorized, e.to_string()))?;
        match &self.auth.identity {
            Some(current) if current.sub != identity.sub => {
                return Err((
                    ErrorCode::Unauthorized,
                    format!(
                        "this connection is {:?}; a token for {:?} needs a connection of its own",
                        current.sub, identity.sub
                    ),
                ))
            }
            None if !self.joined.is_empty() => {
                return Err((
                    ErrorCode::Unauthorized,
                    "authenticate before joining rooms, or on a new connection".to_owned(),
                ))
            }
            _ => {}
        }
        self.name.clone_from(&identity.sub);
        self.auth.identity = Some(Box::new(identity));
        self.auth.arm_expiry();
        Ok(())
    }

    /// Carries out one text request (`json`, a text message's bytes, valid
    /// UTF-8); returns the direct answer, if any, and puts in `replay` the
    /// room messages a `join` recovered, to be sent right after it.
    ///
    /// With the Redis engine, a `join` or `publish` that passed its checks
    /// is put in `deferred` instead, for [`Member::answer_engine`].
    /// `max_rooms`: [`MemberLimits::max_rooms`].
    fn answer(
        &mut self,
        json: &[u8],
        max_rooms: usize,
        replay: &mut Vec<PreparedMessage>,
        deferred: &mut Option<EngineOp>,
    ) -> Option<String> {
        let arrived = Instant::now();
        self.metrics.hub_request(json.len());
        // The application heartbeat of browser clients that cannot send a
        // protocol Ping: text "ping" is answered with "pong"
        // (docs/protocol.md, "Heartbeats").
        if json == b"ping" {
            return Some("pong".to_owned());
        }
        let request = match decode_request(json) {
            Ok(r) => r,
            Err(e) => {
                return Some(
                    ServerMessage::Error {
                        code: e.code,
                        message: &e.message,
                        id: e.id.as_ref(),
                    }
                    .to_json(),
                )
            }
        };
        let id = request.id.as_ref();
        let error = |code, message: &str| ServerMessage::Error { code, message, id }.to_json();
        if let Op::Auth { token } = &request.op {
            return Some(match self.authenticate(token) {
                Ok(()) => {
                    let identity = self.auth.identity.as_deref();
                    let exp = identity.and_then(|i| i.expires).map(|at| {
                        at.duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs())
                    });
                    ServerMessage::Authed {
                        name: &self.name,
                        exp,
                        id,
                    }
                    .to_json()
                }
                Err((code, message)) => error(code, &message),
            });
        }
        if self.auth.must_authenticate() {
            return Some(error(
                ErrorCode::Unauthorized,
                r#"this hub requires authentication: send {"op":"auth","token":"<JWT>"} first"#,
            ));
        }
        let not_joined = |room: &str| {
            ServerMessage::Error {
                code: ErrorCode::NotJoined,
                message: &format!("not a member of room {room:?}; join it first"),
                id,
            }
            .to_json()
        };
        let Self {
            conn_id,
            name,
            joined,
            rooms,
            out,
            metrics,
            auth,
            engine,
        } = self;
        let identity = auth.identity.as_deref();
        let forbidden = |action: RoomAction, room: &str| {
            let allowed = identity.is_none_or(|i| i.allows(action, room));
            (!allowed).then(|| {
                let verb = match action {
                    RoomAction::Join => "join",
                    RoomAction::Publish => "publish to",
                };
                error(
                    ErrorCode::Forbidden,
                    &format!("your token does not allow you to {verb} room {room:?}"),
                )
            })
        };
        let conn_id = *conn_id;
        match &request.op {
            Op::Join {
                room,
                name: new_name,
                since,
            } => {
                if !joined.contains(room) && joined.len() >= max_rooms {
                    return Some(
                        ServerMessage::Error {
                            code: ErrorCode::TooManyRooms,
                            message: &format!(
                                "a connection may be in at most {max_rooms} rooms; leave one first"
                            ),
                            id,
                        }
                        .to_json(),
                    );
                }
                if let Some(refusal) = forbidden(RoomAction::Join, room) {
                    return Some(refusal);
                }
                // On a hub that takes tokens, names are not chosen: a
                // token's `sub`, or `anon-<id>` without one, so that no one
                // can pass for a verified member.
                let takes_tokens = auth.tokens.is_some();
                let wanted = match new_name {
                    Some(new_name) if !takes_tokens => new_name.as_str(),
                    _ => name.as_str(),
                };
                if is_anonymous(wanted) && wanted != format!("anon-{conn_id}") {
                    return Some(
                        ServerMessage::Error {
                            code: ErrorCode::BadRequest,
                            message: "names anon-<digits> are the hub's own for connections without a name",
                            id,
                        }
                        .to_json(),
                    );
                }
                let new_name = new_name.as_ref().filter(|_| !takes_tokens);
                if engine.is_some() {
                    *deferred = Some(EngineOp::Join(EngineJoin {
                        room: room.clone(),
                        wanted: wanted.to_owned(),
                        new_name: new_name.cloned(),
                        unique: !takes_tokens,
                        since: since.clone(),
                        id: id.cloned(),
                    }));
                    return None;
                }
                let result = rooms.join(room, conn_id, wanted, !takes_tokens, out, since.as_ref());
                let answered = JoinAnswer {
                    room,
                    wanted: wanted.to_owned(),
                    new_name,
                    id,
                };
                Some(answered.into_reply(result, name, joined, replay))
            }
            Op::Leave { room } => match rooms.leave(room, conn_id) {
                Ok(()) => {
                    joined.retain(|r| r != room);
                    Some(ServerMessage::Left { room, id }.to_json())
                }
                Err(_) => Some(not_joined(room)),
            },
            Op::Publish { room, message, key } => {
                if let Some(refusal) = forbidden(RoomAction::Publish, room) {
                    return Some(refusal);
                }
                if engine.is_some() {
                    if !joined.contains(room) {
                        return Some(not_joined(room));
                    }
                    *deferred = Some(EngineOp::Publish {
                        room: room.clone(),
                        message: message.clone(),
                        key: key.clone(),
                        id: id.cloned(),
                    });
                    return None;
                }
                let sender = Sender::Member(conn_id);
                match rooms.publish_with(room, sender, message, key.as_deref()) {
                    // The sender gets its own message through the room, like
                    // everyone; a request with an `id` is also answered.
                    Ok(published) => {
                        if !published.duplicate {
                            metrics.fanned_out(arrived.elapsed());
                        }
                        id.map(|id| crate::protocol::published_json(room, &published, id))
                    }
                    Err(_) => Some(not_joined(room)),
                }
            }
            // Answered before the others, above.
            Op::Auth { .. } => None,
        }
    }
}

/// A `join` or `publish` that passed its checks, for the Redis engine.
#[derive(Debug)]
pub(crate) enum EngineOp {
    Join(EngineJoin),
    Publish {
        room: String,
        message: Value,
        key: Option<String>,
        id: Option<Value>,
    },
}

/// A `join` for the Redis engine, awaited by the session.
#[derive(Debug)]
pub(crate) struct EngineJoin {
    room: String,
    wanted: String,
    new_name: Option<String>,
    unique: bool,
    since: Option<Since>,
    id: Option<Value>,
}

/// How many times a join follows its room again when the room was let go
/// of between the follow and the join (its last member here left).
const JOIN_ATTEMPTS: usize = 3;

impl Member {
    /// Answers the requests in flight (queued on `ws`), then carries out
    /// `join`: a join waits for the publishes before it, so that its
    /// answer comes after theirs and it happens after them. Whether the
    /// answers could be queued; `join`'s answer and replay.
    async fn join_in_turn<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        ws: &mut WebSocket<S>,
        join: Box<EngineJoin>,
    ) -> (Result<(), Error>, Option<String>, Vec<PreparedMessage>) {
        let mut fed = Ok(());
        while let Some(side) = self.engine.as_mut().filter(|side| !side.is_idle()) {
            std::future::poll_fn(|cx| side.poll_answered(cx)).await;
            if fed.is_ok() {
                fed = feed_answered(ws, side);
            }
        }
        let (reply, replay) = self.answer_engine(*join).await;
        (fed, reply, replay)
    }

    /// Carries out `op` through the Redis engine; the direct answer, and
    /// in `replay` what a resuming join recovered.
    async fn answer_engine(&mut self, op: EngineJoin) -> (Option<String>, Vec<PreparedMessage>) {
        let mut replay = Vec::new();
        let reply = self.answer_engine_into(op, &mut replay).await;
        (reply, replay)
    }

    async fn answer_engine_into(
        &mut self,
        op: EngineJoin,
        replay: &mut Vec<PreparedMessage>,
    ) -> Option<String> {
        let engine = self
            .engine
            .as_ref()
            .map(|side| side.engine.clone())
            .expect("deferred only with an engine");
        let unavailable = |e: EngineError, id: Option<&Value>| {
            ServerMessage::Error {
                code: ErrorCode::Unavailable,
                message: &e.to_string(),
                id,
            }
            .to_json()
        };
        let EngineJoin {
            room,
            wanted,
            new_name,
            unique,
            since,
            id,
        } = op;
        let answered = JoinAnswer {
            room: &room,
            wanted: wanted.clone(),
            new_name: new_name.as_ref(),
            id: id.as_ref(),
        };
        // The room's presence on every node first: it holds the
        // names, and a name taken on another node refuses the join
        // before anything is followed.
        let rejoin = self.joined.contains(&room);
        // `anon-<connection id>` is unique on its node only: other
        // nodes number their connections too, so it is not held
        // against them.
        let unique_everywhere = unique && !is_anonymous(&wanted);
        let presence = match engine
            .presence_join(&room, self.conn_id, &wanted, unique_everywhere)
            .await
        {
            Ok(PresenceJoin::Entered {
                members,
                member_count,
            }) => (members, member_count),
            Ok(PresenceJoin::NameTaken) => {
                return Some(answered.into_reply(
                    Err(NameTaken),
                    &mut self.name,
                    &mut self.joined,
                    replay,
                ))
            }
            Err(e) => return Some(unavailable(e, id.as_ref())),
        };
        // Out of the presence again if the join fails (a member
        // renaming itself stays, under its old name, as it is here).
        let undo = |engine: &RedisEngine| {
            if !rejoin {
                engine.forget(&room, self.conn_id, &wanted);
            }
        };
        for _ in 0..JOIN_ATTEMPTS {
            if let Err(e) = engine.follow(&room).await {
                undo(&engine);
                return Some(unavailable(e, id.as_ref()));
            }
            let read = match &since {
                Some(since) => {
                    let max = self.rooms.history_limits().max_replay + 1;
                    match engine.read(&room, since.offset, max).await {
                        Ok(read) => Some(read),
                        Err(e) => {
                            undo(&engine);
                            return Some(unavailable(e, id.as_ref()));
                        }
                    }
                }
                None => None,
            };
            let since = since.as_ref().zip(read.as_ref());
            let result =
                self.rooms
                    .join_remote(&room, self.conn_id, &wanted, unique, &self.out, since);
            let result = match result {
                Err(JoinRefused::NotSynced) => continue,
                Err(JoinRefused::NameTaken) => {
                    undo(&engine);
                    Err(NameTaken)
                }
                // The members of every node, not only this one's.
                Ok(joined) => Ok(Joined {
                    members: presence.0.clone(),
                    member_count: presence.1,
                    ..joined
                }),
            };
            return Some(answered.into_reply(result, &mut self.name, &mut self.joined, replay));
        }
        undo(&engine);
        let e = EngineError("the room was let go of while joining; try again".into());
        Some(unavailable(e, id.as_ref()))
    }
}

/// A join carried out, to be answered.
struct JoinAnswer<'a> {
    room: &'a String,
    /// The name joined under (owned: it may be the member's current one,
    /// which the answer replaces).
    wanted: String,
    new_name: Option<&'a String>,
    id: Option<&'a Value>,
}

impl JoinAnswer<'_> {
    /// The `joined` answer (the member takes its new name and the room),
    /// or the `error` for a name taken; the replay goes to `replay`.
    fn into_reply(
        self,
        result: Result<Joined, NameTaken>,
        name: &mut String,
        joined: &mut RoomsJoined,
        replay: &mut Vec<PreparedMessage>,
    ) -> String {
        let Self {
            room,
            wanted,
            new_name,
            id,
        } = self;
        let mut result = match result {
            Ok(result) => result,
            Err(NameTaken) => {
                return ServerMessage::Error {
                    code: ErrorCode::NameTaken,
                    message: &format!(
                        "another member of room {room:?} is called {wanted:?}; pick another name"
                    ),
                    id,
                }
                .to_json()
            }
        };
        if let Some(n) = new_name {
            name.clone_from(n);
        }
        if !joined.contains(room) {
            joined.push(room.clone());
        }
        *replay = std::mem::take(&mut result.replay);
        let members = result.members.iter().map(String::as_str).collect();
        ServerMessage::Joined {
            room,
            name,
            members,
            member_count: result.member_count,
            offset: result.offset,
            seq: result.offset,
            epoch: &result.epoch,
            recovered: result.recovered,
            id,
        }
        .to_json()
    }
}

/// Whether `name` has the form of the hub's names for connections that gave
/// none, `anon-<digits>`.
fn is_anonymous(name: &str) -> bool {
    name.strip_prefix("anon-")
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `hub_session` fuzz target: a session future dropped
    /// before its end (a panic in its task, runtime shutdown) stayed a
    /// member of its rooms until the hub ended.
    #[tokio::test]
    async fn a_session_dropped_mid_flight_leaves_its_rooms() {
        use wshub::Role;

        let config = crate::HubConfig::default();
        let rooms = Arc::new(Rooms::new(config.presence_limit));
        let (server_io, client_io) = tokio::io::duplex(64 << 10);
        let ws = WebSocket::from_raw(server_io, Role::Server, config.websocket_for("/ws"), &[]);
        let (_shutdown_tx, shutdown) = watch::channel(false);
        let open = OpenConnection::new(Arc::new(crate::metrics::Metrics::new()));
        let limits = config.member_limits();
        let auth = MemberAuth::default();
        let mut session = Box::pin(run(
            ws,
            7,
            rooms.clone(),
            limits,
            shutdown,
            open,
            auth,
            None,
        ));
        let mut client = WebSocket::from_raw(client_io, Role::Client, Default::default(), &[]);
        for room in ["lobby", "games"] {
            let join = format!(r#"{{"op":"join","room":"{room}","name":"ada"}}"#);
            client.send(Message::text(join)).await.unwrap();
        }
        let mut joined = 0;
        while joined < 2 {
            tokio::select! {
                _ = &mut session => panic!("the session ended by itself"),
                message = client.recv() => {
                    let message = message.expect("open").expect("valid");
                    let text = String::from_utf8_lossy(message.as_bytes());
                    if text.contains(r#""type":"joined""#) {
                        joined += 1;
                    }
                }
            }
        }
        assert_eq!(rooms.room_count(), 2);
        assert_eq!(rooms.member_count("lobby"), 1);

        drop(session);

        assert_eq!(
            rooms.room_count(),
            0,
            "the dropped session's rooms are freed"
        );
        assert_eq!(rooms.member_count("lobby"), 0);
    }

    #[test]
    fn anonymous_names_are_anon_and_digits() {
        assert!(is_anonymous("anon-1") && is_anonymous("anon-0042"));
        assert!(!is_anonymous("anon-") && !is_anonymous("anon-x1") && !is_anonymous("anon"));
        assert!(!is_anonymous("anonymous-1") && !is_anonymous("Anon-1"));
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_the_rate_and_closes_sustained_abuse() {
        let start = Instant::now();
        let mut rate = RateLimit::new(10, 20, Duration::from_secs(5));
        for _ in 0..20 {
            assert_eq!(rate.admit(start), Admit::Yes, "a full bucket takes a burst");
        }
        assert_eq!(rate.admit(start), Admit::RateLimited);
        // 100 ms refill one token at 10 per second.
        let later = start + Duration::from_millis(100);
        assert_eq!(rate.admit(later), Admit::Yes);
        assert_eq!(rate.admit(later), Admit::RateLimited);
        // Still over the rate 5 s after the first refusal: abuse.
        let mut now = later;
        let mut last = Admit::Yes;
        for _ in 0..60 {
            now += Duration::from_millis(95);
            for _ in 0..3 {
                last = rate.admit(now);
            }
        }
        assert_eq!(last, Admit::Abuse);
    }

    #[test]
    fn a_client_that_lets_the_bucket_fill_is_forgiven() {
        let start = Instant::now();
        let mut rate = RateLimit::new(10, 20, Duration::from_secs(5));
        let mut now = start;
        for _ in 0..2 {
            for _ in 0..25 {
                rate.admit(now);
            }
            assert_eq!(rate.admit(now), Admit::RateLimited);
            // 2 s refill the 20 tokens: the refusals so far are forgotten.
            now += Duration::from_secs(4);
            assert_eq!(rate.admit(now), Admit::Yes);
        }
        for _ in 0..25 {
            assert_ne!(rate.admit(now), Admit::Abuse);
        }
    }
}
