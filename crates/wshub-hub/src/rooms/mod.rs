//! Rooms and fan-out: every open member of a room gets each message, in
//! offset order, from one shared encoding; each room keeps a bounded history
//! of those encodings so that a member who reconnects can resume.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::task::AtomicWaker;
use serde_json::Value;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::time::Instant;
use wshub::{Message, PreparedMessage};

use crate::engine::log::LogRead;
use crate::metrics::Sharded;
use crate::protocol::{ServerMessage, Since};

mod remote;
pub(crate) use remote::{Delivery, Left, Remote};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Frames kept in an [`Inbox`]'s spare queue between drains; more are freed,
/// so a burst (a crowd joining) does not leave memory behind in every member.
const SPARE_FRAMES: usize = 4;

/// Frames queued for one member at which it counts as lagging in the hub's
/// [`Backlog`]: behind on CPU (its task has not run), or on its socket
/// (or half its queue, [`SendQueue::lag_frames`], if that is less).
/// A member that keeps up holds one or two. Deep enough that each member's
/// write carries many frames while a big room's fan-out runs: at 32,
/// `bench/compare`'s fan-out row (10,000 members, 64 B) fell from 3.3-4.1M
/// to 2.2-2.6M deliveries/s, one `send` for fewer frames; at 128 it is
/// 3.3-3.9M (2026-12-04, bench/README.md).
pub const LAG_FRAMES: usize = 128;

/// The bounds of one member's send queue: past either, the member is
/// disconnected as a slow consumer (1008; docs/protocol.md, "Slow
/// consumers").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendQueue {
    /// Frames queued. Each costs a pointer-sized slot beside its shared
    /// encoding, so this bounds the queue's own memory for tiny messages.
    pub frames: usize,
    /// Bytes of the frames queued, as written on the wire (uncompressed
    /// size). A frame shared by a room is counted in full by every member
    /// holding it.
    pub bytes: usize,
}

impl SendQueue {
    /// At most `frames` frames and `bytes` bytes (each at least 1).
    pub fn new(frames: usize, bytes: usize) -> Self {
        Self {
            frames: frames.max(1),
            bytes: bytes.max(1),
        }
    }

    /// Frames queued at which a member counts as lagging: [`LAG_FRAMES`],
    /// or half the queue if that is less, so that a member falling behind
    /// lags (and can pause the hub's readers) before its queue overflows
    /// and it is disconnected. With a queue of 128 frames or fewer a fixed
    /// 128 would never be reached and the back-pressure would never start.
    pub fn lag_frames(&self) -> usize {
        // At least 2: the first frame queued only wakes the member.
        LAG_FRAMES.min(self.frames / 2).max(2)
    }
}

#[derive(Debug, Default)]
struct QueueState {
    frames: VecDeque<PreparedMessage>,
    /// Bytes of `frames`.
    bytes: usize,
    /// The queue overflowed: the member is to be closed with 1008.
    kicked: bool,
    /// The [`Inbox`] is gone: drop deliveries.
    closed: bool,
    /// Counted in [`Backlog::lagging`]: at least [`SendQueue::lag_frames`]
    /// queued since the last drain.
    lagging: bool,
}

/// One member's queue: a short lock around a deque, no allocation while
/// empty. A tokio `mpsc` channel costs every member about 2.5 KiB up front
/// (cache-padded channel state and a first block of 32 slots); this costs
/// about 100 bytes, which is what lets a hub hold many idle members.
#[derive(Debug)]
struct Queue {
    state: Mutex<QueueState>,
    waker: AtomicWaker,
    limits: SendQueue,
    backlog: Arc<Backlog>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl QueueState {
    /// Empties the queue; `true` if it was counted as lagging, which the
    /// caller reports to the [`Backlog`] once the lock is released.
    fn clear(&mut self) -> bool {
        self.bytes = 0;
        std::mem::take(&mut self.lagging)
    }
}

/// How far behind the hub's members are, hub-wide, so publishers can be
/// paused while the hub catches up (docs/protocol.md, "Back-pressure").
///
/// A member counts as lagging while [`LAG_FRAMES`] or more frames wait in its
/// queue, whether its task has not run yet or its socket is full. Members
/// stop reading requests (publishes among them) while more than one member
/// in [`PAUSE_FRACTION`] lags, and at least [`PAUSE_MIN_LAGGING`] do: when a
/// room's fan-out outruns the members' tasks nearly all of them lag at once,
/// while a lone slow consumer does not hold up the hub. A member that stops
/// reading is not counted for long either: its write timeout closes it.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Members whose queue holds [`LAG_FRAMES`] or more.
    lagging: AtomicUsize,
    /// Live queues ([`Inbox`]es).
    members: AtomicUsize,
    /// Woken as lagging members catch up.
    eased: Notify,
}

/// Requests wait while more than `1 / PAUSE_FRACTION` of the hub's members
/// lag ...
pub const PAUSE_FRACTION: usize = 64;
/// ... and at least this many.
pub const PAUSE_MIN_LAGGING: usize = 4;

impl Backlog {
    /// Whether publishers should wait: too many members lag.
    pub fn is_high(&self) -> bool {
        let lagging = self.lagging.load(Ordering::Relaxed);
        lagging >= PAUSE_MIN_LAGGING
            && lagging * PAUSE_FRACTION > self.members.load(Ordering::Relaxed)
    }

    /// Members lagging now.
    pub fn lagging(&self) -> usize {
        self.lagging.load(Ordering::Relaxed)
    }

    fn caught_up(&self) {
        self.lagging.fetch_sub(1, Ordering::Relaxed);
        if !self.is_high() {
            self.eased.notify_waiters();
        }
    }

    /// `Ready` once the backlog is not high. `wait` keeps the registration
    /// between polls; it is allocated only while the backlog is high.
    pub(crate) fn poll_eased<'a>(
        &'a self,
        wait: &mut Option<Pin<Box<Notified<'a>>>>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        loop {
            if !self.is_high() {
                *wait = None;
                return Poll::Ready(());
            }
            let notified = wait.get_or_insert_with(|| Box::pin(self.eased.notified()));
            // Registered before the check above is repeated, so a
            // `notify_waiters` between the two is not missed.
            notified.as_mut().enable();
            if !self.is_high() {
                *wait = None;
                return Poll::Ready(());
            }
            if notified.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            *wait = None;
        }
    }
}

/// The sending end of one connection's bounded queue of encoded frames.
#[derive(Debug, Clone)]
pub struct Outbox {
    queue: Arc<Queue>,
}

/// The receiving end, owned by the connection's task.
#[derive(Debug)]
pub struct Inbox {
    queue: Receiver,
    /// The deque swapped in at each drain, so draining neither allocates nor
    /// holds the lock while frames are written out.
    spare: VecDeque<PreparedMessage>,
}

/// What an [`Inbox`] has for its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Frames are queued: [`Inbox::drain`] them.
    Frames,
    /// The queue overflowed: close the connection with 1008 (policy violation).
    Kicked,
}

impl Outbox {
    /// Queues `frame` without waiting. A full queue (past its frames or its
    /// bytes) kicks the member instead of slowing the sender or growing
    /// memory; a closed one is ignored (the member is on its way out).
    pub fn deliver(&self, frame: &PreparedMessage) {
        let queue = &*self.queue;
        let len = frame.frame().len();
        let mut state = queue.lock();
        if state.closed || state.kicked {
            return;
        }
        let mut lagged = false;
        if state.frames.len() >= queue.limits.frames
            || state.bytes.saturating_add(len) > queue.limits.bytes
        {
            state.kicked = true;
            state.frames = VecDeque::new();
            lagged = state.clear();
        } else {
            state.frames.push_back(frame.clone());
            state.bytes += len;
            let queued = state.frames.len();
            if queued > 1 {
                // Not the first: the connection was woken already.
                if queued >= queue.limits.lag_frames() && !state.lagging {
                    state.lagging = true;
                    queue.backlog.lagging.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        }
        drop(state);
        if lagged {
            queue.backlog.caught_up();
        }
        queue.waker.wake();
    }
}

/// Registers `cx`'s waker with `queue`; `Ready` with what is there.
fn poll_signal(queue: &Queue, cx: &mut Context<'_>) -> Poll<Signal> {
    queue.waker.register(cx.waker());
    let state = queue.lock();
    if state.kicked {
        Poll::Ready(Signal::Kicked)
    } else if !state.frames.is_empty() {
        Poll::Ready(Signal::Frames)
    } else {
        Poll::Pending
    }
}

impl Inbox {
    /// [`Inbox::signal`] as a poll, for a session that waits on several
    /// things at once.
    pub(crate) fn poll_signal(&self, cx: &mut Context<'_>) -> Poll<Signal> {
        poll_signal(&self.queue, cx)
    }

    /// Waits until frames are queued or the member was kicked (kicked first).
    pub async fn signal(&self) -> Signal {
        std::future::poll_fn(|cx| self.poll_signal(cx)).await
    }

    /// Waits until the member is kicked, ignoring queued frames.
    pub async fn kicked(&self) {
        std::future::poll_fn(|cx| match self.poll_signal(cx) {
            Poll::Ready(Signal::Kicked) => Poll::Ready(()),
            _ => Poll::Pending,
        })
        .await;
    }

    /// Hands every queued frame to `write`, in order, stopping at its first
    /// error. The lock is held only to swap the queue out.
    pub fn drain<E>(
        &mut self,
        mut write: impl FnMut(&PreparedMessage) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.spare.capacity() > SPARE_FRAMES {
            self.spare = VecDeque::new();
        }
        let lagged = {
            let mut state = self.queue.lock();
            std::mem::swap(&mut state.frames, &mut self.spare);
            state.clear()
        };
        if lagged {
            self.queue.backlog.caught_up();
        }
        let result = self.spare.iter().try_for_each(&mut write);
        self.spare.clear();
        result
    }

    /// Takes the oldest queued frame, if any.
    pub fn try_recv(&mut self) -> Option<PreparedMessage> {
        let mut state = self.queue.lock();
        let frame = state.frames.pop_front()?;
        state.bytes -= frame.frame().len();
        let lagged = state.lagging && state.frames.len() < self.queue.limits.lag_frames();
        if lagged {
            state.lagging = false;
        }
        drop(state);
        if lagged {
            self.queue.backlog.caught_up();
        }
        Some(frame)
    }

    /// Bytes queued.
    pub fn queued_bytes(&self) -> usize {
        self.queue.lock().bytes
    }
}

/// The receiving end's hold on its queue, in an [`Inbox`] or a
/// [`ParkedInbox`]: dropped, it closes the queue (deliveries are dropped
/// from then on) and leaves the [`Backlog`]'s count of members.
#[derive(Debug)]
struct Receiver(Arc<Queue>);

impl std::ops::Deref for Receiver {
    type Target = Queue;

    fn deref(&self) -> &Queue {
        &self.0
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.lock();
        state.closed = true;
        state.frames = VecDeque::new();
        let lagged = state.clear();
        drop(state);
        if lagged {
            self.backlog.caught_up();
        }
        self.backlog.members.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The receiving end of a parked member's queue: the queue alone, its
/// buffers given back ([`Inbox::park`]).
#[derive(Debug)]
pub(crate) struct ParkedInbox(Receiver);

impl Inbox {
    /// This end for a member about to be parked: the buffers a drained
    /// queue keeps (the capacity of its busiest moment, up to the send
    /// queue's limit in frames) given back, and only the queue kept.
    pub(crate) fn park(self) -> ParkedInbox {
        let Inbox { queue, spare } = self;
        drop(spare);
        {
            let mut state = queue.lock();
            if state.frames.is_empty() {
                state.frames = VecDeque::new();
            }
        }
        ParkedInbox(queue)
    }
}

impl ParkedInbox {
    /// [`Inbox::poll_signal`]: registers `cx`'s waker for deliveries and
    /// the kick.
    pub(crate) fn poll_signal(&self, cx: &mut Context<'_>) -> Poll<Signal> {
        poll_signal(&self.0, cx)
    }

    /// The receiving end again, for the resumed member's session.
    pub(crate) fn resume(self) -> Inbox {
        Inbox {
            queue: self.0,
            spare: VecDeque::new(),
        }
    }
}

#[derive(Debug)]
struct Member {
    /// Shared with the room's `names` key: one allocation per member.
    name: Arc<str>,
    outbox: Outbox,
}

#[derive(Debug)]
struct Room {
    /// Names this life of the room: see [`Joined::epoch`].
    epoch: Arc<str>,
    /// The offset of the room's last message, 0 before the first.
    offset: u64,
    /// Its last messages, up to that offset.
    history: History,
    members: HashMap<u64, Member>,
    /// Every member's display name, unique in the room, and whose it is.
    names: HashMap<Arc<str>, u64>,
    /// It is (being) taken out of the map, without members or history: a
    /// join that finds it looks the room up again.
    closed: bool,
    /// It has an entry in [`Rooms::idle`], to be freed once its history
    /// expires (one at most, however often its last member leaves).
    idle: bool,
    /// With a [`Remote`] engine: `epoch` and `offset` have been set from
    /// the engine's (they are this hub's own until then, and the room takes
    /// no members).
    synced: bool,
}

/// One room behind a lock of its own, so a fan-out to a big room holds up
/// only that room.
type SharedRoom = Arc<Mutex<Room>>;

fn lock_room(room: &Mutex<Room>) -> MutexGuard<'_, Room> {
    room.lock().unwrap_or_else(|p| p.into_inner())
}

impl Room {
    fn new(epoch: Arc<str>) -> Self {
        Self {
            epoch,
            offset: 0,
            history: History::default(),
            members: HashMap::new(),
            names: HashMap::new(),
            closed: false,
            idle: false,
            synced: false,
        }
    }

    /// Queues `json` for every member but `except`, encoded once; counts
    /// the deliveries in `stats`, and returns the encoding. The caller holds
    /// this room's lock: the deliveries of one room's messages happen in
    /// their order.
    fn fan_out(&self, json: String, except: Option<u64>, stats: &FanoutStats) -> PreparedMessage {
        let frame = PreparedMessage::new(&Message::text(json));
        let mut delivered = 0u64;
        for (id, member) in &self.members {
            if Some(*id) != except {
                member.outbox.deliver(&frame);
                delivered += 1;
            }
        }
        stats.deliveries.add(delivered);
        stats.bytes.add(delivered * frame.frame().len() as u64);
        frame
    }

    /// What a member joining with `since` gets, as [`Joined::recovered`]
    /// and [`Joined::replay`] say. The caller holds this room's lock and
    /// has made the member a member under it, so the messages replayed end
    /// at the offset the member's live delivery starts after.
    fn recover(
        &mut self,
        since: &Since,
        now: Instant,
        limits: &HistoryLimits,
    ) -> (bool, Vec<PreparedMessage>) {
        self.history.expire(now, limits.ttl);
        if *since.epoch != *self.epoch {
            return (false, Vec::new());
        }
        match self
            .history
            .after(since.offset, self.offset, limits.max_replay)
        {
            Some(missed) => (true, missed.cloned().collect()),
            None => (false, Vec::new()),
        }
    }
}

/// How much of each room's past the hub keeps so that members can resume
/// (docs/protocol.md, "History and resume").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Messages kept per room, the oldest dropped first; 0 keeps none.
    /// Default: 1000.
    pub size: usize,
    /// How long a message is kept; zero keeps none. Default: 10 minutes.
    pub ttl: Duration,
    /// Most messages replayed to one `join`: a member that missed more is
    /// answered `recovered: false`. Default: 300.
    pub max_replay: usize,
    /// Most bytes of messages kept per room (each counted as its frame, as
    /// sent uncompressed), the oldest dropped first; at least the newest
    /// message is kept whatever its size; 0 keeps none. Default: 4 MiB.
    pub bytes: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            size: 1000,
            ttl: Duration::from_secs(600),
            max_replay: 300,
            bytes: 4 << 20,
        }
    }
}

/// Longest [`HistoryLimits::ttl`] a hub keeps to: a year.
pub const MAX_HISTORY_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

impl HistoryLimits {
    /// No history at all: `size`, `ttl` or `bytes` is zero.
    pub fn is_off(&self) -> bool {
        self.size == 0 || self.ttl.is_zero() || self.bytes == 0
    }
}

/// A room's last messages, oldest first, as their shared encodings (the
/// frames the fan-out queued, not encoded again), each with the time it
/// was published. Their offsets are consecutive from `first` and end at
/// the room's last offset, so they are not stored one by one.
#[derive(Debug, Default)]
struct History {
    kept: VecDeque<Kept>,
    /// The offset of `kept`'s first message (meaningless while empty).
    first: u64,
    /// The bytes of `kept`'s frames.
    bytes: usize,
    /// The idempotency keys of the kept messages that had one.
    keys: IdempotencyKeys,
}

/// The idempotency keys of a room's kept messages (docs/protocol.md,
/// "Publishing"): a publish whose key one of them has is a duplicate. A key
/// is forgotten with its message, so keys are de-duplicated within the
/// history window, and cost nothing for publishes without one.
#[derive(Debug, Default)]
struct IdempotencyKeys {
    /// Offset by key.
    offsets: HashMap<Box<str>, u64>,
    /// The same keys in offset order, to forget them oldest first.
    order: VecDeque<(u64, Box<str>)>,
}

impl IdempotencyKeys {
    fn insert(&mut self, key: &str, offset: u64) {
        self.offsets.insert(key.into(), offset);
        self.order.push_back((offset, key.into()));
    }

    /// Forgets the keys of messages before offset `first`.
    fn forget_before(&mut self, first: u64) {
        while self.order.front().is_some_and(|(o, _)| *o < first) {
            if let Some((_, key)) = self.order.pop_front() {
                self.offsets.remove(&key);
            }
        }
        if self.order.is_empty() && self.offsets.capacity() > 0 {
            *self = Self::default();
        }
    }
}

#[derive(Debug)]
struct Kept {
    at: Instant,
    frame: PreparedMessage,
}

impl History {
    /// Appends the room's next message, dropping those older than
    /// `limits.ttl`; returns the oldest if it is pushed out past
    /// `limits.size`, for the caller to free once it has let go of the
    /// room's lock. O(1) amortised; it allocates only while the deque grows
    /// to its bound.
    /// `offset` is the message's, one more than the last one's; `key` its
    /// idempotency key, if it has one.
    fn append(
        &mut self,
        frame: PreparedMessage,
        offset: u64,
        key: Option<&str>,
        now: Instant,
        limits: &HistoryLimits,
    ) -> Option<Kept> {
        if limits.is_off() {
            return None;
        }
        self.drop_older(now, limits.ttl);
        let out = if self.kept.len() >= limits.size {
            self.pop_oldest()
        } else {
            None
        };
        if self.kept.is_empty() {
            self.first = offset;
        }
        self.bytes += frame.frame().len();
        self.kept.push_back(Kept { at: now, frame });
        // Over the byte budget: rare (big messages), so these are freed
        // under the room's lock.
        while self.bytes > limits.bytes && self.kept.len() > 1 {
            self.pop_oldest();
        }
        if let Some(key) = key {
            self.keys.insert(key, offset);
        }
        self.keys.forget_before(self.first);
        out
    }

    /// Takes the oldest message out, keeping `first` and `bytes` true.
    fn pop_oldest(&mut self) -> Option<Kept> {
        let kept = self.kept.pop_front()?;
        self.first += 1;
        self.bytes -= kept.frame.frame().len();
        Some(kept)
    }

    /// The offset of the kept message whose idempotency key is `key`.
    fn offset_of(&self, key: &str) -> Option<u64> {
        self.keys.offsets.get(key).copied()
    }

    /// Drops the messages older than `ttl`, and frees the deque once empty
    /// (a quiet room holds no memory for it).
    fn expire(&mut self, now: Instant, ttl: Duration) {
        self.drop_older(now, ttl);
        if self.kept.is_empty() {
            self.kept = VecDeque::new();
        }
    }

    fn drop_older(&mut self, now: Instant, ttl: Duration) {
        let before = self.first;
        while self
            .kept
            .front()
            .is_some_and(|k| now.saturating_duration_since(k.at) >= ttl)
        {
            self.pop_oldest();
        }
        if self.first != before {
            self.keys.forget_before(self.first);
        }
    }

    /// When the newest message expires, the history with it; `None` if
    /// empty.
    fn expires_at(&self, ttl: Duration) -> Option<Instant> {
        self.kept.back().map(|k| k.at + ttl)
    }

    /// The last `n` messages kept (all, if fewer), oldest first.
    fn last(&self, n: usize) -> impl Iterator<Item = &PreparedMessage> {
        let first = self.kept.len().saturating_sub(n);
        self.kept.range(first..).map(|k| &k.frame)
    }

    /// The messages after `offset`, in order, where `last` is the room's
    /// last offset: `None` unless every one of them is still kept and they
    /// are at most `max_replay`. This is the resume window of
    /// docs/protocol.md, in one place: `oldest - 1 <= offset <= last` (with
    /// nothing kept, `offset == last`) and `last - offset <= max_replay`.
    fn after(
        &self,
        offset: u64,
        last: u64,
        max_replay: usize,
    ) -> Option<impl Iterator<Item = &PreparedMessage>> {
        let missed = last.checked_sub(offset)?;
        if missed > self.kept.len() as u64 || missed > max_replay as u64 {
            return None;
        }
        let first = self.kept.len() - missed as usize;
        Some(self.kept.range(first..).map(|k| &k.frame))
    }
}

/// Most member names listed in a `joined` answer.
pub const MAX_LISTED_MEMBERS: usize = 100;

/// What a join settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// Display names of up to [`MAX_LISTED_MEMBERS`] members, sorted, the
    /// joiner included when the room is that small.
    pub members: Vec<String>,
    /// Number of members, the joiner included.
    pub member_count: usize,
    /// The room's last offset (0 before its first message): the joiner's
    /// live delivery starts after it.
    pub offset: u64,
    /// The room's epoch: which life of the room `offset` counts in. A room
    /// is kept while it has members or history; freed, and used again, it
    /// starts a new epoch with offsets from 1, so `(epoch, offset)` never
    /// names two messages while the hub runs. Opaque: this hub's random
    /// instance tag and the room's creation count, `5f3a9c2e9d41b7a0-1k`.
    pub epoch: String,
    /// Whether the join's `since` was recovered: `None` without one.
    pub recovered: Option<bool>,
    /// With `recovered: Some(true)`, every message after `since`'s offset up
    /// to [`Joined::offset`], in order, to be sent right after the answer
    /// and before anything queued for the member: empty otherwise.
    pub replay: Vec<PreparedMessage>,
}

/// Up to [`MAX_LISTED_MEMBERS`] of a room's member names, sorted: a bounded
/// list, so that a join into a big room does not cost O(n log n).
fn listed_members(r: &Room) -> Vec<String> {
    let mut members: Vec<String> = r
        .members
        .values()
        .take(MAX_LISTED_MEMBERS)
        .map(|m| m.name.to_string())
        .collect();
    members.sort();
    members
}

/// Who publishes a message ([`Rooms::publish_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender<'a> {
    /// A member of the room, by connection id: its `message`s carry its
    /// display name and `from_id`.
    Member(u64),
    /// A backend, through the HTTP API or a [`Hub`](crate::Hub) handle,
    /// under a display name of its choice; `from_id` is 0, which no
    /// connection has.
    Api {
        /// The `from` of its messages.
        name: &'a str,
    },
}

/// Where a publish landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The room's epoch.
    pub epoch: Arc<str>,
    /// The message's offset in it.
    pub offset: u64,
    /// The publish carried an idempotency key that a message in the room's
    /// history has: nothing was published, and `offset` is that message's.
    pub duplicate: bool,
}

/// What [`Rooms::info`] tells of a room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomInfo {
    /// Up to [`MAX_LISTED_MEMBERS`] member names, sorted.
    pub members: Vec<String>,
    /// Number of members.
    pub member_count: usize,
    /// The room's epoch; `None` if the hub holds no such room (no members,
    /// no history).
    pub epoch: Option<String>,
    /// The room's last offset, 0 before its first message.
    pub offset: u64,
}

/// What [`Rooms::history`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// The room's epoch; `None` if the hub holds no such room.
    pub epoch: Option<String>,
    /// The room's last offset.
    pub offset: u64,
    /// With `since`: whether every message after it is in `messages`.
    pub recovered: Option<bool>,
    /// The messages, oldest first, each the `message` frame members got
    /// ([`PreparedMessage::payload`] is its JSON text).
    pub messages: Vec<PreparedMessage>,
}

/// `join` under a display name another member of the room has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameTaken;

/// Why [`Rooms::join_remote`] did not join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinRefused {
    /// As [`NameTaken`].
    NameTaken,
    /// The engine no longer follows the room (its last member here left in
    /// between): sync it again, then join.
    NotSynced,
}

/// `publish` or `leave` for a room the connection is not in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotJoined;

/// Every room of one hub. A room without members is kept while it has
/// history ([`HistoryLimits`]), so its offsets go on; once it has neither
/// it is dropped, and its offsets start again from 1, in a new epoch
/// ([`Joined::epoch`]), when it is next used. A room whose last member left
/// is freed when its history expires: at the next join or leave after that
/// (up to [`SWEEP_BATCH`] such rooms each time), or by
/// [`Rooms::sweep_idle_rooms`] within [`SWEEP_INTERVAL`], which a served
/// hub runs.
///
/// Two levels of locks, each a std `Mutex` (no `.await` happens under any,
/// and a fan-out only queues frames without waiting): the map of rooms,
/// held only to find, add or remove a room, and one lock per room, held for
/// its fan-out. So a publish to a room of 10,000 members holds up that
/// room, not the others, and the map lock is never held while a room's is
/// taken. The published value is encoded before any lock is taken.
#[derive(Debug)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, SharedRoom>>,
    presence_limit: usize,
    /// Shared by every member's queue.
    backlog: Arc<Backlog>,
    /// This hub's random tag, the first part of every epoch.
    instance: u64,
    /// Rooms created so far, the second part.
    created: AtomicU64,
    /// What the fan-outs delivered, for the metrics.
    stats: FanoutStats,
    history: HistoryLimits,
    /// Rooms without members but with history, by when it expires (and a
    /// count, to tell apart rooms expiring at the same instant). A lock of
    /// its own, never held with another.
    idle: Mutex<BTreeMap<(Instant, u64), (String, SharedRoom)>>,
    idled: AtomicU64,
    /// The engine that gives offsets, when it is not this hub
    /// ([`Rooms::with_remote`]).
    remote: Option<Arc<Remote>>,
}

/// Most idle rooms one join or leave looks at (and frees, if their history
/// expired): each call creates at most one room, so the sweep keeps up,
/// and no call pays for a crowd of rooms expiring at once.
pub const SWEEP_BATCH: usize = 16;

/// How often [`Rooms::sweep_idle_rooms`] looks for expired rooms.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Fan-out counts, added once per fan-out.
#[derive(Debug, Default)]
struct FanoutStats {
    deliveries: Sharded,
    bytes: Sharded,
}

/// What [`Rooms::stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomStats {
    /// Frames queued for members so far (one per member per message or
    /// presence notice).
    pub deliveries: u64,
    /// Their bytes, as framed uncompressed.
    pub bytes: u64,
    /// Rooms held now: with members, or with history only.
    pub rooms: usize,
    /// Memberships now (a connection in three rooms counts three times).
    pub members: usize,
}

impl Default for Rooms {
    fn default() -> Self {
        Self::new(DEFAULT_PRESENCE_LIMIT)
    }
}

/// Default for [`Rooms::new`]'s `presence_limit`.
pub const DEFAULT_PRESENCE_LIMIT: usize = MAX_LISTED_MEMBERS;

impl Rooms {
    /// Rooms that send join and leave notices while a room has at most
    /// `presence_limit` members. Above it a join or leave would cost a
    /// message to every member, and a crowd joining at once would cost the
    /// square of its size, so big rooms go quiet about presence.
    /// History: [`HistoryLimits::default`].
    pub fn new(presence_limit: usize) -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            presence_limit,
            backlog: Arc::default(),
            instance: rand::random(),
            created: AtomicU64::new(0),
            stats: FanoutStats::default(),
            history: HistoryLimits::default(),
            idle: Mutex::default(),
            idled: AtomicU64::new(0),
            remote: None,
        }
    }

    /// These rooms, keeping `history` (its ttl capped at
    /// [`MAX_HISTORY_TTL`]).
    pub fn with_history(mut self, history: HistoryLimits) -> Self {
        self.history = HistoryLimits {
            ttl: history.ttl.min(MAX_HISTORY_TTL),
            ..history
        };
        self
    }

    /// A new room's epoch: the hub's random tag (64 bits, so that a
    /// restarted hub's epochs are not an earlier run's) and the room's
    /// creation count, in base 36.
    fn new_room(&self) -> SharedRoom {
        Arc::new(Mutex::new(Room::new(self.next_epoch().into())))
    }

    /// A new epoch, unique to this hub's run (see [`Rooms::new_room`]).
    pub(crate) fn next_epoch(&self) -> String {
        let mut n = self.created.fetch_add(1, Ordering::Relaxed) + 1;
        let mut count = Vec::new();
        while n > 0 {
            count.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
            n /= 36;
        }
        count.reverse();
        let count = String::from_utf8(count).expect("ASCII digits");
        format!("{:016x}-{count}", self.instance)
    }

    /// A member's send queue, bounded by `limits`, counted in this hub's
    /// [`Backlog`].
    pub fn outbox(&self, limits: SendQueue) -> (Outbox, Inbox) {
        self.backlog.members.fetch_add(1, Ordering::Relaxed);
        let queue = Arc::new(Queue {
            state: Mutex::default(),
            waker: AtomicWaker::new(),
            limits,
            backlog: self.backlog.clone(),
        });
        (
            Outbox {
                queue: queue.clone(),
            },
            Inbox {
                queue: Receiver(queue),
                spare: VecDeque::new(),
            },
        )
    }

    /// What each room keeps of its past.
    pub(crate) fn history_limits(&self) -> &HistoryLimits {
        &self.history
    }

    /// How far behind this hub's members are.
    pub fn backlog(&self) -> &Arc<Backlog> {
        &self.backlog
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, SharedRoom>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The room called `room`, if it is held.
    fn room(&self, room: &str) -> Option<SharedRoom> {
        self.lock().get(room).cloned()
    }

    /// Takes `shared` (no longer used: `closed` is set) out of the map,
    /// unless a new room took its place already.
    fn remove(&self, room: &str, shared: &SharedRoom) {
        let mut rooms = self.lock();
        if rooms.get(room).is_some_and(|s| Arc::ptr_eq(s, shared)) {
            rooms.remove(room);
        }
    }

    fn lock_idle(&self) -> MutexGuard<'_, BTreeMap<(Instant, u64), (String, SharedRoom)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Frees `room` at `at` if it has no members then.
    fn schedule(&self, at: Instant, room: String, shared: SharedRoom) {
        let n = self.idled.fetch_add(1, Ordering::Relaxed);
        self.lock_idle().insert((at, n), (room, shared));
    }

    /// `room`, locked in `r`, has no members: it is freed now if it has no
    /// history, else scheduled to be freed when its history expires (once).
    fn settle_empty(
        &self,
        room: &str,
        shared: &SharedRoom,
        mut r: MutexGuard<'_, Room>,
        now: Instant,
    ) {
        if let Some(remote) = &self.remote {
            // The engine keeps the history: nothing to keep here.
            r.closed = true;
            drop(r);
            self.remove(room, shared);
            remote.release(room);
            return;
        }
        r.history.expire(now, self.history.ttl);
        match r.history.expires_at(self.history.ttl) {
            None => {
                r.closed = true;
                drop(r);
                self.remove(room, shared);
            }
            Some(at) if !r.idle => {
                r.idle = true;
                drop(r);
                self.schedule(at, room.to_owned(), shared.clone());
            }
            Some(_) => drop(r),
        }
    }

    /// Frees the rooms without members whose history has expired, every
    /// [`SWEEP_INTERVAL`], [`SWEEP_BATCH`] at a time: without it, such a
    /// room would wait for the next join or leave anywhere in the hub. Runs
    /// until the task is dropped.
    pub async fn sweep_idle_rooms(&self) {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // A batch at a time, yielding between batches: a crowd of rooms
            // expiring together does not hold a worker.
            while self.sweep(Instant::now()) == SWEEP_BATCH {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Frees up to [`SWEEP_BATCH`] rooms without members whose history has
    /// expired by `now`; one that gained members since it was scheduled is
    /// left alone (it is scheduled again when its last member leaves).
    /// Returns how many due rooms it looked at.
    fn sweep(&self, now: Instant) -> usize {
        for looked in 0..SWEEP_BATCH {
            let due = {
                let mut idle = self.lock_idle();
                match idle.first_key_value() {
                    Some((&(at, _), _)) if at <= now => idle.pop_first(),
                    _ => None,
                }
            };
            let Some((_, (room, shared))) = due else {
                return looked;
            };
            let mut r = lock_room(&shared);
            r.idle = false;
            if r.closed || !r.members.is_empty() {
                continue;
            }
            r.history.expire(now, self.history.ttl);
            match r.history.expires_at(self.history.ttl) {
                Some(at) => {
                    r.idle = true;
                    drop(r);
                    self.schedule(at, room, shared);
                }
                None => {
                    r.closed = true;
                    drop(r);
                    self.remove(&room, &shared);
                }
            }
        }
        SWEEP_BATCH
    }

    /// Adds connection `id` to `room` as `name` and tells the other members.
    /// Joining again only updates the name. With `unique`, no two members
    /// of a room share a name; without it (names that come from verified
    /// tokens, where one user may join from two connections, or that hold
    /// the connection id) names are not compared. With `since`, the
    /// messages the member missed are in [`Joined::replay`] if the room
    /// still has them all ([`Joined::recovered`]).
    ///
    /// # Errors
    /// [`NameTaken`] if `unique` and another member of the room is called
    /// `name`; nothing changes then.
    pub fn join(
        &self,
        room: &str,
        id: u64,
        name: &str,
        unique: bool,
        outbox: &Outbox,
        since: Option<&Since>,
    ) -> Result<Joined, NameTaken> {
        let now = Instant::now();
        self.sweep(now);
        self.in_open_room(room, |_, mut r| {
            let since = since.map(|since| (since, None));
            self.join_open(&mut r, room, id, name, unique, outbox, since, now)
        })
    }

    /// Calls `f` with `room`, created if it is not held, and locked.
    fn in_open_room<R>(
        &self,
        room: &str,
        f: impl FnOnce(&SharedRoom, MutexGuard<'_, Room>) -> R,
    ) -> R {
        loop {
            let shared = {
                let mut rooms = self.lock();
                match rooms.get(room) {
                    Some(shared) => shared.clone(),
                    None => rooms
                        .entry(room.to_owned())
                        .or_insert_with(|| self.new_room())
                        .clone(),
                }
            };
            let r = lock_room(&shared);
            if r.closed {
                // Emptied since the lookup: its last member takes it out of
                // the map, if it has not yet; a new one takes its place.
                drop(r);
                self.remove(room, &shared);
                continue;
            }
            return f(&shared, r);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn join_open(
        &self,
        r: &mut Room,
        room: &str,
        id: u64,
        name: &str,
        unique: bool,
        outbox: &Outbox,
        since: Option<(&Since, Option<&LogRead>)>,
        now: Instant,
    ) -> Result<Joined, NameTaken> {
        if unique && r.names.get(name).is_some_and(|holder| *holder != id) {
            return Err(NameTaken);
        }
        let name: Arc<str> = Arc::from(name);
        let member = Member {
            name: name.clone(),
            outbox: outbox.clone(),
        };
        let fresh = match r.members.insert(id, member) {
            None => true,
            Some(old) => {
                r.names.remove(&old.name);
                false
            }
        };
        if unique {
            r.names.insert(name.clone(), id);
        }
        let name = &*name;
        if fresh && r.members.len() <= self.presence_limit {
            let notice = ServerMessage::Presence {
                room,
                event: "join",
                name,
                ts: now_ms(),
            };
            r.fan_out(notice.to_json(), Some(id), &self.stats);
        }
        let members = listed_members(r);
        // Under the lock that orders the room's fan-out, and with the
        // member in the room already: the replay ends where its live
        // delivery starts, with no gap and no overlap.
        let (recovered, replay) = match since {
            Some((since, None)) => {
                let (recovered, replay) = r.recover(since, now, &self.history);
                (Some(recovered), replay)
            }
            Some((since, Some(read))) => {
                let (recovered, replay) = r.recover_remote(since, read, &self.history);
                (Some(recovered), replay)
            }
            None => (None, Vec::new()),
        };
        Ok(Joined {
            members,
            member_count: r.members.len(),
            offset: r.offset,
            epoch: r.epoch.to_string(),
            recovered,
            replay,
        })
    }

    /// Removes connection `id` from `room` and tells the other members. The
    /// last member to leave frees the room, or, if it has history, schedules
    /// it to be freed when that expires.
    ///
    /// # Errors
    /// [`NotJoined`] if it was not a member.
    pub fn leave(&self, room: &str, id: u64) -> Result<(), NotJoined> {
        let shared = self.room(room).ok_or(NotJoined)?;
        let mut r = lock_room(&shared);
        let member = r.members.remove(&id).ok_or(NotJoined)?;
        if r.names.get(&member.name) == Some(&id) {
            r.names.remove(&member.name);
        }
        if let Some(remote) = &self.remote {
            remote.leave(room, id, &member.name);
        }
        if r.members.is_empty() {
            let now = Instant::now();
            self.settle_empty(room, &shared, r, now);
            self.sweep(now);
        } else if r.members.len() < self.presence_limit {
            let notice = ServerMessage::Presence {
                room,
                event: "leave",
                name: &member.name,
                ts: now_ms(),
            };
            r.fan_out(notice.to_json(), None, &self.stats);
        }
        Ok(())
    }

    /// Delivers `message` from member `id` to every member of `room`, the
    /// sender included, under the room's next offset, encoded once, and
    /// keeps that encoding in the room's history. Returns the offset.
    ///
    /// # Errors
    /// [`NotJoined`] if `id` is not a member of `room`.
    pub fn publish(&self, room: &str, id: u64, message: &Value) -> Result<u64, NotJoined> {
        self.publish_with(room, Sender::Member(id), message, None)
            .map(|published| published.offset)
    }

    /// Delivers `message` from `sender` to every member of `room` under the
    /// room's next offset, encoded once, and keeps that encoding in the
    /// room's history. A [`Sender::Api`] needs no membership: a room with
    /// no members is created for it (and kept while its history lasts, so
    /// the message waits there for members who resume).
    ///
    /// With an idempotency `key` that a message still in the room's history
    /// has, nothing is published: the answer is that message's offset, with
    /// [`Published::duplicate`]. Keys are kept only with their messages, so
    /// with the history off they de-duplicate nothing.
    ///
    /// # Errors
    /// [`NotJoined`] if a [`Sender::Member`] is not a member of `room`.
    pub fn publish_with(
        &self,
        room: &str,
        sender: Sender<'_>,
        message: &Value,
        key: Option<&str>,
    ) -> Result<Published, NotJoined> {
        // The client's value, of any size, is encoded before the room is
        // locked; under the lock only the envelope is written around it.
        let message = crate::protocol::encode_value(message);
        match sender {
            Sender::Member(_) => {
                let shared = self.room(room).ok_or(NotJoined)?;
                self.publish_locked(lock_room(&shared), room, sender, &message, key)
            }
            Sender::Api { .. } => self.in_open_room(room, |shared, r| {
                let published = self.publish_locked(r, room, sender, &message, key);
                let r = lock_room(shared);
                if r.members.is_empty() && !r.closed {
                    self.settle_empty(room, shared, r, Instant::now());
                }
                published
            }),
        }
    }

    /// [`Rooms::publish_with`] under the room's lock, which it lets go of.
    fn publish_locked(
        &self,
        mut r: MutexGuard<'_, Room>,
        room: &str,
        sender: Sender<'_>,
        message: &str,
        key: Option<&str>,
    ) -> Result<Published, NotJoined> {
        let now = Instant::now();
        if let Some(key) = key {
            // Only members learn whether a key was used.
            if let Sender::Member(id) = sender {
                if !r.members.contains_key(&id) {
                    return Err(NotJoined);
                }
            }
            // Keys go with their messages: one that expired is no duplicate.
            r.history.drop_older(now, self.history.ttl);
            if let Some(offset) = r.history.offset_of(key) {
                return Ok(Published {
                    epoch: r.epoch.clone(),
                    offset,
                    duplicate: true,
                });
            }
        }
        let (from, from_id) = match sender {
            Sender::Member(id) => (&*r.members.get(&id).ok_or(NotJoined)?.name, id),
            Sender::Api { name } => (name, 0),
        };
        // Offsets are taken under the room's lock, so every member's queue
        // (and the history) receives a room's messages in offset order.
        let offset = r.offset + 1;
        let json =
            crate::protocol::message_json(room, from, from_id, offset, &r.epoch, now_ms(), message);
        r.offset = offset;
        let frame = r.fan_out(json, None, &self.stats);
        let epoch = r.epoch.clone();
        if !self.history.is_off() {
            let pushed_out = r.history.append(frame, offset, key, now, &self.history);
            // Its last reference, likely: freed outside the lock.
            drop(r);
            drop(pushed_out);
        }
        Ok(Published {
            epoch,
            offset,
            duplicate: false,
        })
    }

    /// Who is in `room` and where its offsets are.
    pub fn info(&self, room: &str) -> RoomInfo {
        let Some(shared) = self.room(room) else {
            return RoomInfo::default();
        };
        let r = lock_room(&shared);
        if r.closed {
            return RoomInfo::default();
        }
        RoomInfo {
            members: listed_members(&r),
            member_count: r.members.len(),
            epoch: Some(r.epoch.to_string()),
            offset: r.offset,
        }
    }

    /// What `room`'s history holds: with `since`, every message after it,
    /// on the rule of a resuming `join` ([`Joined::recovered`]: all of
    /// them, up to [`HistoryLimits::max_replay`], or none); without, its
    /// last `limit` messages (at most [`HistoryLimits::max_replay`]).
    pub fn history(&self, room: &str, since: Option<&Since>, limit: usize) -> HistoryPage {
        let Some(shared) = self.room(room) else {
            return HistoryPage {
                recovered: since.map(|_| false),
                ..HistoryPage::default()
            };
        };
        let mut r = lock_room(&shared);
        if r.closed {
            return HistoryPage {
                recovered: since.map(|_| false),
                ..HistoryPage::default()
            };
        }
        let now = Instant::now();
        let (recovered, messages) = match since {
            Some(since) => {
                let (recovered, messages) = r.recover(since, now, &self.history);
                (Some(recovered), messages)
            }
            None => {
                r.history.expire(now, self.history.ttl);
                let n = limit.min(self.history.max_replay);
                (None, r.history.last(n).cloned().collect())
            }
        };
        HistoryPage {
            epoch: Some(r.epoch.to_string()),
            offset: r.offset,
            recovered,
            messages,
        }
    }

    /// Number of members of `room`.
    pub fn member_count(&self, room: &str) -> usize {
        self.room(room).map_or(0, |r| lock_room(&r).members.len())
    }

    /// Number of rooms held: with members, or with history only.
    pub fn room_count(&self) -> usize {
        self.lock().len()
    }

    /// Deliveries so far, and rooms and memberships now. Takes each room's
    /// lock in turn (not the map's while doing so): for a metrics scrape,
    /// not a hot path.
    pub fn stats(&self) -> RoomStats {
        let rooms: Vec<SharedRoom> = self.lock().values().cloned().collect();
        let members = rooms.iter().map(|r| lock_room(r).members.len()).sum();
        RoomStats {
            deliveries: self.stats.deliveries.get(),
            bytes: self.stats.bytes.get(),
            rooms: rooms.len(),
            members,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A queue of `n` frames, bytes unbounded.
    fn frames(n: usize) -> SendQueue {
        SendQueue::new(n, usize::MAX)
    }

    fn text(frame: &PreparedMessage) -> Value {
        // Unmasked frames with a 7- or 16-bit length.
        let bytes = frame.frame();
        let start = if bytes[1] & 0x7f == 126 { 4 } else { 2 };
        serde_json::from_slice(&bytes[start..]).unwrap()
    }

    /// No history: [`HistoryLimits`] with size 0.
    fn without_history() -> Rooms {
        Rooms::default().with_history(HistoryLimits {
            size: 0,
            ..HistoryLimits::default()
        })
    }

    /// A history of `size` messages kept for `ttl_secs`, replaying up to
    /// `max_replay`.
    fn with_history(size: usize, ttl_secs: u64, max_replay: usize) -> Rooms {
        Rooms::default().with_history(HistoryLimits {
            size,
            ttl: Duration::from_secs(ttl_secs),
            max_replay,
            ..HistoryLimits::default()
        })
    }

    /// The offsets of `frames`, room messages.
    fn offsets(frames: &[PreparedMessage]) -> Vec<u64> {
        frames
            .iter()
            .map(|f| text(f)["offset"].as_u64().unwrap())
            .collect()
    }

    fn since(epoch: &str, offset: u64) -> Since {
        Since {
            epoch: epoch.to_owned(),
            offset,
        }
    }

    /// A member lags at half a short queue, before that queue overflows:
    /// with a fixed 128 a `--send-queue 64` hub kicked members without ever
    /// pausing its publishers (the overload test failed so under load).
    #[test]
    fn a_member_lags_before_its_queue_overflows_whatever_its_length() {
        assert_eq!(frames(1024).lag_frames(), LAG_FRAMES);
        assert_eq!(frames(64).lag_frames(), 32);
        assert_eq!(frames(1).lag_frames(), 2);
        for n in [4, 5, 64, 255, 256, 1024, 4096] {
            let rooms = Rooms::default();
            let (out, mut inbox) = rooms.outbox(frames(n));
            let frame = PreparedMessage::new(&Message::text("m"));
            for _ in 0..frames(n).lag_frames() {
                assert_eq!(rooms.backlog().lagging(), 0, "queue of {n}");
                out.deliver(&frame);
            }
            assert_eq!(rooms.backlog().lagging(), 1, "queue of {n}");
            assert!(inbox.try_recv().is_some());
            assert_eq!(rooms.backlog().lagging(), 0, "queue of {n}: caught up");
        }
    }

    /// `text(frame)` now reads the frame through the public accessor.
    #[test]
    fn payload_is_the_message_json() {
        let frame = PreparedMessage::new(&Message::text("x".repeat(300)));
        assert_eq!(frame.payload(), "x".repeat(300).as_bytes());
    }

    const API: Sender<'static> = Sender::Api { name: "api" };

    #[test]
    fn an_idempotency_key_is_forgotten_with_its_message() {
        let rooms = with_history(3, 600, 3);
        let first = rooms.publish_with("r", API, &json!(1), Some("k")).unwrap();
        assert_eq!((first.offset, first.duplicate), (1, false));
        let again = rooms.publish_with("r", API, &json!(1), Some("k")).unwrap();
        assert_eq!(
            (again.offset, again.duplicate, &again.epoch),
            (1, true, &first.epoch)
        );
        // Two more fill the history of 3; the keyed message is still there.
        for n in 2..=3 {
            rooms.publish_with("r", API, &json!(n), None).unwrap();
        }
        let kept = rooms.publish_with("r", API, &json!(1), Some("k")).unwrap();
        assert!(kept.duplicate);
        // A fourth pushes it out: its key goes with it.
        rooms.publish_with("r", API, &json!(4), None).unwrap();
        let fresh = rooms.publish_with("r", API, &json!(1), Some("k")).unwrap();
        assert_eq!((fresh.offset, fresh.duplicate), (5, false));
    }

    #[tokio::test(start_paused = true)]
    async fn keys_expire_with_their_messages_and_without_history_nothing_is_deduplicated() {
        let rooms = with_history(10, 60, 10);
        rooms.publish_with("r", API, &json!(1), Some("k")).unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
        let later = rooms.publish_with("r", API, &json!(1), Some("k")).unwrap();
        assert!(!later.duplicate, "the keyed message expired");

        let rooms = without_history();
        let a = rooms.publish_with("r", API, &json!(1), Some("k")).unwrap();
        let b = rooms.publish_with("r", API, &json!(1), Some("k")).unwrap();
        assert!(!a.duplicate && !b.duplicate);
        // Nobody to deliver to and nothing to keep: no room is held.
        assert_eq!(rooms.room_count(), 0);
        assert_ne!(a.epoch, b.epoch);
    }

    #[test]
    fn an_api_publish_to_a_room_without_members_keeps_it_for_its_history() {
        let rooms = with_history(10, 600, 10);
        let published = rooms.publish_with("news", API, &json!("x"), None).unwrap();
        assert_eq!(rooms.room_count(), 1);
        let info = rooms.info("news");
        assert_eq!(
            (info.member_count, info.offset, info.epoch.as_deref()),
            (0, 1, Some(&*published.epoch))
        );
        let page = rooms.history("news", None, 10);
        assert_eq!(offsets(&page.messages), vec![1]);
        assert_eq!(text(&page.messages[0])["from_id"], 0);
        // A member's publish still needs membership.
        assert_eq!(rooms.publish("news", 1, &json!("y")), Err(NotJoined));
        assert_eq!(rooms.info("elsewhere"), RoomInfo::default());
    }

    #[test]
    fn a_room_keeps_at_most_its_byte_budget_and_always_the_newest_message() {
        let rooms = Rooms::default().with_history(HistoryLimits {
            bytes: 1000,
            ..HistoryLimits::default()
        });
        // Each message is a frame of a few hundred bytes.
        let message = json!("x".repeat(200));
        for _ in 1..=10 {
            rooms.publish_with("r", API, &message, None).unwrap();
        }
        let kept = rooms.history("r", None, 100).messages;
        let bytes: usize = kept.iter().map(|m| m.frame().len()).sum();
        assert!(bytes <= 1000, "{bytes} bytes kept");
        assert_eq!(
            offsets(&kept),
            (11 - kept.len() as u64..=10).collect::<Vec<_>>()
        );
        assert!(kept.len() >= 2, "{} kept", kept.len());
        // One message over the budget alone is still kept.
        rooms
            .publish_with("r", API, &json!("y".repeat(5000)), None)
            .unwrap();
        assert_eq!(offsets(&rooms.history("r", None, 100).messages), vec![11]);
        // A resume from before the kept window is not recovered.
        let epoch = rooms.info("r").epoch.unwrap();
        let page = rooms.history("r", Some(&since(&epoch, 9)), 100);
        assert_eq!(page.recovered, Some(false));
        let page = rooms.history("r", Some(&since(&epoch, 10)), 100);
        assert_eq!(
            (page.recovered, offsets(&page.messages)),
            (Some(true), vec![11])
        );
    }

    #[test]
    fn history_without_since_is_the_last_messages_up_to_max_replay() {
        let rooms = with_history(10, 600, 3);
        for n in 1..=6 {
            rooms.publish_with("r", API, &json!(n), None).unwrap();
        }
        assert_eq!(offsets(&rooms.history("r", None, 2).messages), vec![5, 6]);
        assert_eq!(
            offsets(&rooms.history("r", None, 100).messages),
            vec![4, 5, 6]
        );
        let epoch = rooms.info("r").epoch.unwrap();
        let page = rooms.history("r", Some(&since(&epoch, 4)), 100);
        assert_eq!(
            (page.recovered, offsets(&page.messages)),
            (Some(true), vec![5, 6])
        );
        let page = rooms.history("r", Some(&since(&epoch, 2)), 100);
        assert_eq!(
            (page.recovered, page.messages.len()),
            (Some(false), 0),
            "over max-replay"
        );
        let page = rooms.history("gone", Some(&since(&epoch, 2)), 100);
        assert_eq!((page.recovered, page.epoch), (Some(false), None));
    }

    #[test]
    fn a_room_used_again_after_it_emptied_counts_in_a_new_epoch() {
        let rooms = without_history();
        let (a, mut a_in) = rooms.outbox(frames(8));
        let first = rooms.join("lobby", 1, "alice", true, &a, None).unwrap();
        assert_eq!(first.offset, 0);
        assert_eq!(rooms.publish("lobby", 1, &json!("one")), Ok(1));
        assert_eq!(rooms.publish("lobby", 1, &json!("two")), Ok(2));
        let m = text(&a_in.try_recv().unwrap());
        assert_eq!(m["epoch"], first.epoch.as_str(), "messages carry the epoch");
        assert_eq!((&m["seq"], &m["offset"]), (&json!(1), &json!(1)));
        rooms.leave("lobby", 1).unwrap();
        assert_eq!(rooms.room_count(), 0, "the empty room is freed");

        // Used again: offsets start over, so a client that remembered
        // offset 2 would take the new 1 and 2 for messages it had; the
        // epoch tells it they are not.
        let again = rooms.join("lobby", 1, "alice", true, &a, None).unwrap();
        assert_eq!(again.offset, 0);
        assert_ne!(again.epoch, first.epoch);
        assert_eq!(rooms.publish("lobby", 1, &json!("three")), Ok(1));
        let m = loop {
            let m = text(&a_in.try_recv().unwrap());
            if m["message"] == "three" {
                break m;
            }
        };
        assert_eq!(
            (m["offset"].as_u64(), m["epoch"].as_str()),
            (Some(1), Some(again.epoch.as_str()))
        );

        // Another hub's epochs differ from this one's (a random tag).
        let other = Rooms::default();
        let (b, _b_in) = other.outbox(frames(8));
        let elsewhere = other.join("lobby", 1, "alice", true, &b, None).unwrap();
        assert_ne!(elsewhere.epoch, first.epoch);
    }

    #[tokio::test(start_paused = true)]
    async fn a_room_with_history_outlives_its_members_until_the_history_expires() {
        let rooms = with_history(100, 60, 50);
        let (a, _a_in) = rooms.outbox(frames(64));
        let first = rooms.join("lobby", 1, "alice", true, &a, None).unwrap();
        for n in 1..=3 {
            assert_eq!(rooms.publish("lobby", 1, &json!(n)), Ok(n));
        }
        rooms.leave("lobby", 1).unwrap();
        assert_eq!(rooms.room_count(), 1, "kept for its history");
        assert_eq!(rooms.member_count("lobby"), 0);

        // Back within the ttl: same epoch, offsets go on, and what was
        // missed is there.
        tokio::time::advance(Duration::from_secs(30)).await;
        let back = rooms
            .join("lobby", 1, "alice", true, &a, Some(&since(&first.epoch, 1)))
            .unwrap();
        assert_eq!(
            (back.epoch.as_str(), back.offset),
            (first.epoch.as_str(), 3)
        );
        assert_eq!(back.recovered, Some(true));
        assert_eq!(offsets(&back.replay), [2, 3]);
        assert_eq!(rooms.publish("lobby", 1, &json!(4)), Ok(4));
        rooms.leave("lobby", 1).unwrap();

        // Its last message, offset 4, was published at 30 s: the room
        // lasts until 90 s, and is freed by the first join or leave after.
        tokio::time::advance(Duration::from_secs(59)).await;
        let (b, _b_in) = rooms.outbox(frames(64));
        rooms.join("elsewhere", 2, "bob", true, &b, None).unwrap();
        assert_eq!(rooms.room_count(), 2, "not yet expired");
        tokio::time::advance(Duration::from_secs(1)).await;
        rooms.leave("elsewhere", 2).unwrap();
        assert_eq!(rooms.room_count(), 0, "expired, and freed");
        assert!(rooms.lock_idle().is_empty(), "nothing left scheduled");

        // Used again: a new life, and the old epoch recovers nothing.
        let fresh = rooms
            .join("lobby", 1, "alice", true, &a, Some(&since(&first.epoch, 4)))
            .unwrap();
        assert_ne!(fresh.epoch, first.epoch);
        assert_eq!((fresh.offset, fresh.recovered), (0, Some(false)));
        assert!(fresh.replay.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_room_rejoined_before_its_sweep_is_not_freed_under_its_members() {
        let rooms = with_history(100, 60, 50);
        let (a, _a_in) = rooms.outbox(frames(64));
        rooms.join("lobby", 1, "alice", true, &a, None).unwrap();
        rooms.publish("lobby", 1, &json!("x")).unwrap();
        rooms.leave("lobby", 1).unwrap();
        let epoch = rooms
            .join("lobby", 1, "alice", true, &a, None)
            .unwrap()
            .epoch;
        tokio::time::advance(Duration::from_secs(120)).await;
        let (b, _b_in) = rooms.outbox(frames(64));
        rooms.join("other", 2, "bob", true, &b, None).unwrap();
        assert_eq!(rooms.member_count("lobby"), 1, "its member is still in it");
        assert_eq!(rooms.publish("lobby", 1, &json!("y")), Ok(2));
        // Its history expired meanwhile; leaving now frees it at once.
        tokio::time::advance(Duration::from_secs(120)).await;
        rooms.leave("lobby", 1).unwrap();
        assert_eq!(rooms.member_count("lobby"), 0);
        let again = rooms.join("lobby", 1, "alice", true, &a, None).unwrap();
        assert_ne!(again.epoch, epoch);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_rooms_are_freed_a_bounded_batch_at_a_time() {
        let rooms = with_history(10, 60, 10);
        let (a, _a_in) = rooms.outbox(frames(8));
        for n in 0..100 {
            let room = format!("r{n}");
            rooms.join(&room, 1, "a", true, &a, None).unwrap();
            rooms.publish(&room, 1, &json!(n)).unwrap();
            rooms.leave(&room, 1).unwrap();
        }
        assert_eq!(rooms.room_count(), 100);
        tokio::time::advance(Duration::from_secs(61)).await;
        rooms.join("busy", 1, "a", true, &a, None).unwrap();
        assert_eq!(rooms.room_count(), 101 - SWEEP_BATCH);
        for _ in 0..10 {
            rooms.join("busy", 1, "a", true, &a, None).unwrap();
        }
        assert_eq!(rooms.room_count(), 1, "only the room with a member");
    }

    #[test]
    fn resume_replays_what_was_missed_only_if_all_of_it_is_still_kept() {
        let rooms = with_history(10, 600, 5);
        let (a, _a_in) = rooms.outbox(frames(64));
        let (b, _b_in) = rooms.outbox(frames(64));
        let epoch = rooms.join("r", 1, "a", true, &a, None).unwrap().epoch;
        for n in 1..=12 {
            rooms.publish("r", 1, &json!(n)).unwrap();
        }
        // Kept: offsets 3..=12 (size 10); at most 5 replayed.
        let resume = |offset: u64, epoch: &str| {
            let joined = rooms
                .join("r", 2, "b", true, &b, Some(&since(epoch, offset)))
                .unwrap();
            rooms.leave("r", 2).unwrap();
            (joined.recovered, offsets(&joined.replay))
        };
        assert_eq!(resume(12, &epoch), (Some(true), vec![]), "missed nothing");
        assert_eq!(resume(10, &epoch), (Some(true), vec![11, 12]));
        assert_eq!(resume(7, &epoch), (Some(true), vec![8, 9, 10, 11, 12]));
        assert_eq!(resume(6, &epoch), (Some(false), vec![]), "over max-replay");
        assert_eq!(
            resume(13, &epoch),
            (Some(false), vec![]),
            "ahead of the room"
        );
        assert_eq!(resume(12, "another-1"), (Some(false), vec![]), "epoch");
        let without = rooms.join("r", 2, "b", true, &b, None).unwrap();
        assert_eq!((without.recovered, without.replay.len()), (None, 0));
        rooms.leave("r", 2).unwrap();

        // Out of the window by size: offset 2 is the oldest gone, so a
        // client that has it resumes from 3; one that has only 1 does not.
        let rooms = with_history(10, 600, 100);
        let (a, _a_in) = rooms.outbox(frames(64));
        let epoch = rooms.join("r", 1, "a", true, &a, None).unwrap().epoch;
        for n in 1..=12 {
            rooms.publish("r", 1, &json!(n)).unwrap();
        }
        let (b, _b_in) = rooms.outbox(frames(64));
        let joined = rooms.join("r", 2, "b", true, &b, Some(&since(&epoch, 2)));
        assert_eq!(
            offsets(&joined.unwrap().replay),
            (3..=12).collect::<Vec<_>>()
        );
        rooms.leave("r", 2).unwrap();
        let joined = rooms.join("r", 2, "b", true, &b, Some(&since(&epoch, 1)));
        assert_eq!(joined.unwrap().recovered, Some(false));
    }

    #[tokio::test(start_paused = true)]
    async fn resume_misses_what_expired() {
        let rooms = with_history(100, 60, 100);
        let (a, _a_in) = rooms.outbox(frames(64));
        let epoch = rooms.join("r", 1, "a", true, &a, None).unwrap().epoch;
        rooms.publish("r", 1, &json!(1)).unwrap();
        tokio::time::advance(Duration::from_secs(40)).await;
        rooms.publish("r", 1, &json!(2)).unwrap();
        tokio::time::advance(Duration::from_secs(30)).await;
        // Offset 1 (70 s old) is gone, 2 (30 s) is kept.
        let (b, _b_in) = rooms.outbox(frames(64));
        let old = rooms.join("r", 2, "b", true, &b, Some(&since(&epoch, 0)));
        assert_eq!(old.unwrap().recovered, Some(false));
        let recent = rooms.join("r", 2, "b", true, &b, Some(&since(&epoch, 1)));
        assert_eq!(offsets(&recent.unwrap().replay), [2]);
    }

    #[test]
    fn without_history_only_a_client_that_missed_nothing_recovers() {
        let rooms = without_history();
        let (a, _a_in) = rooms.outbox(frames(64));
        let (b, _b_in) = rooms.outbox(frames(64));
        let epoch = rooms.join("r", 1, "a", true, &a, None).unwrap().epoch;
        rooms.publish("r", 1, &json!(1)).unwrap();
        let up_to_date = rooms.join("r", 2, "b", true, &b, Some(&since(&epoch, 1)));
        assert_eq!(up_to_date.unwrap().recovered, Some(true));
        rooms.leave("r", 2).unwrap();
        let behind = rooms.join("r", 2, "b", true, &b, Some(&since(&epoch, 0)));
        assert_eq!(behind.unwrap().recovered, Some(false));
    }

    #[test]
    fn history_keeps_the_frame_the_members_got_not_a_copy() {
        let rooms = Rooms::default();
        let (a, mut a_in) = rooms.outbox(frames(8));
        let epoch = rooms.join("r", 1, "a", true, &a, None).unwrap().epoch;
        rooms.publish("r", 1, &json!("hi")).unwrap();
        let live = a_in.try_recv().unwrap();
        let (b, _b_in) = rooms.outbox(frames(8));
        let joined = rooms.join("r", 2, "b", true, &b, Some(&since(&epoch, 0)));
        let replayed = &joined.unwrap().replay[0];
        assert_eq!(live.frame().as_ptr(), replayed.frame().as_ptr());
    }

    #[test]
    fn publish_reaches_every_member_in_sequence_from_one_encoding() {
        let rooms = Rooms::default();
        let (a, mut a_in) = rooms.outbox(frames(8));
        let (b, mut b_in) = rooms.outbox(frames(8));
        rooms.join("lobby", 1, "alice", true, &a, None).unwrap();
        let joined = rooms.join("lobby", 2, "bob", true, &b, None).unwrap();
        assert_eq!(joined.members, ["alice", "bob"]);
        let presence = text(&a_in.try_recv().unwrap());
        assert_eq!(presence["type"], "presence");
        assert_eq!(presence["name"], "bob");

        assert_eq!(rooms.publish("lobby", 1, &json!("hi")), Ok(1));
        assert_eq!(rooms.publish("lobby", 2, &json!("yo")), Ok(2));
        let a1 = a_in.try_recv().unwrap();
        let b1 = b_in.try_recv().unwrap();
        assert_eq!(
            a1.frame().as_ptr(),
            b1.frame().as_ptr(),
            "one shared encoding"
        );
        assert_eq!(text(&a1)["seq"], 1);
        assert_eq!(text(&a1)["from"], "alice");
        assert_eq!(text(&b_in.try_recv().unwrap())["seq"], 2);
    }

    #[test]
    fn only_members_publish_or_leave() {
        let rooms = Rooms::default();
        let (a, _a_in) = rooms.outbox(frames(8));
        assert_eq!(rooms.publish("x", 1, &json!(1)), Err(NotJoined));
        rooms.join("x", 1, "a", true, &a, None).unwrap();
        assert_eq!(rooms.publish("x", 2, &json!(1)), Err(NotJoined));
        assert_eq!(rooms.leave("x", 2), Err(NotJoined));
        assert_eq!(rooms.leave("x", 1), Ok(()));
        assert_eq!(rooms.member_count("x"), 0);
    }

    #[test]
    fn big_rooms_list_a_bounded_sample_and_stay_quiet_about_presence() {
        let rooms = Rooms::new(3);
        let mut inboxes = Vec::new();
        for id in 0..150u64 {
            let (o, i) = rooms.outbox(frames(256));
            let joined = rooms
                .join("big", id, &format!("m{id:03}"), true, &o, None)
                .unwrap();
            assert_eq!(joined.member_count, id as usize + 1);
            assert!(joined.members.len() <= MAX_LISTED_MEMBERS);
            inboxes.push(i);
        }
        // Member 0 heard of joins 1 and 2 (room sizes 2 and 3), then nothing.
        let mut heard = 0;
        while inboxes[0].try_recv().is_some() {
            heard += 1;
        }
        assert_eq!(heard, 2);
    }

    #[test]
    fn a_fan_out_holding_a_big_room_does_not_hold_up_another_room() {
        let rooms = Arc::new(Rooms::default());
        let mut inboxes = Vec::new();
        for id in 0..10_000u64 {
            let (o, i) = rooms.outbox(frames(4));
            rooms
                .join("big", id, &format!("m{id}"), true, &o, None)
                .unwrap();
            inboxes.push(i);
        }
        let (o, _small_in) = rooms.outbox(frames(64));
        rooms.join("small", 10_000, "a", true, &o, None).unwrap();
        // As if a fan-out to the 10,000 were under way, for as long as it
        // takes: the big room's lock is held.
        let big = rooms.room("big").unwrap();
        let held = lock_room(&big);
        let (done, finished) = std::sync::mpsc::channel();
        let other = rooms.clone();
        std::thread::spawn(move || {
            let _ = done.send(other.publish("small", 10_000, &json!("hi")));
        });
        // A generous bound: the publish takes microseconds when it does not
        // wait for the big room, and never returns while it does.
        let published = finished.recv_timeout(std::time::Duration::from_secs(10));
        drop(held);
        assert_eq!(published, Ok(Ok(1)));
    }

    #[test]
    fn the_last_member_to_leave_frees_the_room_even_under_churn() {
        let rooms = without_history();
        let (o, _i) = rooms.outbox(frames(64));
        for room in 0..10_000 {
            let room = format!("room-{room}");
            rooms.join(&room, 1, "a", true, &o, None).unwrap();
            rooms.join(&room, 2, "b", true, &o, None).unwrap();
            rooms.leave(&room, 1).unwrap();
            rooms.leave(&room, 2).unwrap();
        }
        assert_eq!(rooms.room_count(), 0);

        // Joins racing the leave of a room's last member: none is lost in
        // a room already taken out of the map.
        let rooms = Arc::new(rooms);
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let rooms = rooms.clone();
                let o = o.clone();
                std::thread::spawn(move || {
                    for n in 0..2_500u64 {
                        let room = format!("shared-{}", n % 8);
                        rooms
                            .join(&room, t, &format!("x{t}"), true, &o, None)
                            .unwrap();
                        assert_eq!(rooms.publish(&room, t, &json!(n)).map(|_| ()), Ok(()));
                        rooms.leave(&room, t).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(rooms.room_count(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_kicks_the_member_without_blocking_the_room() {
        let rooms = Rooms::default();
        let (slow, slow_in) = rooms.outbox(frames(2));
        let (fast, mut fast_in) = rooms.outbox(frames(64));
        rooms.join("r", 1, "slow", true, &slow, None).unwrap();
        rooms.join("r", 2, "fast", true, &fast, None).unwrap();
        for _ in 0..10 {
            rooms.publish("r", 2, &json!("m")).unwrap();
        }
        // The kick is stored, so this resolves at once.
        tokio::time::timeout(std::time::Duration::from_secs(1), slow_in.kicked())
            .await
            .expect("slow member kicked");
        assert_eq!(slow_in.signal().await, Signal::Kicked);
        let mut got = 0;
        while fast_in.try_recv().is_some() {
            got += 1;
        }
        assert_eq!(got, 10, "every message reaches the fast member");
    }

    #[tokio::test]
    async fn the_queue_is_bounded_in_bytes_as_well_as_frames() {
        let rooms = Rooms::default();
        let frame = PreparedMessage::new(&Message::text("x".repeat(100)));
        let len = frame.frame().len();
        let (out, mut inbox) = rooms.outbox(SendQueue::new(1000, 3 * len));
        for _ in 0..3 {
            out.deliver(&frame);
        }
        assert_eq!(inbox.queued_bytes(), 3 * len);
        assert!(inbox.try_recv().is_some());
        assert_eq!(
            inbox.queued_bytes(),
            2 * len,
            "taking a frame frees its bytes"
        );
        out.deliver(&frame);
        assert_eq!(
            inbox.signal().await,
            Signal::Frames,
            "at the limit, not past it"
        );
        out.deliver(&frame);
        assert_eq!(inbox.signal().await, Signal::Kicked);
        assert_eq!(
            inbox.queued_bytes(),
            0,
            "a kicked member's frames are freed"
        );
    }

    #[tokio::test]
    async fn a_delivery_wakes_the_waiting_member_and_drain_keeps_order() {
        let rooms = Rooms::default();
        let (out, mut inbox) = rooms.outbox(frames(16));
        let waiting = tokio::spawn(async move {
            assert_eq!(inbox.signal().await, Signal::Frames);
            let mut got = Vec::new();
            inbox
                .drain(|f| {
                    got.push(text(f));
                    Ok::<(), ()>(())
                })
                .unwrap();
            (inbox, got)
        });
        tokio::task::yield_now().await;
        for n in 0..3 {
            out.deliver(&PreparedMessage::new(&Message::text(format!("{n}"))));
        }
        let (mut inbox, got) = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .unwrap();
        // Woken by the first delivery; the other two may land in this drain
        // or stay queued, but never out of order.
        let mut all: Vec<Value> = got;
        while let Some(f) = inbox.try_recv() {
            all.push(text(&f));
        }
        assert_eq!(all, [json!(0), json!(1), json!(2)]);
    }

    #[test]
    fn drain_stops_at_the_first_error_and_a_gone_inbox_drops_deliveries() {
        let rooms = Rooms::default();
        let (out, mut inbox) = rooms.outbox(frames(64));
        for n in 0..40 {
            out.deliver(&PreparedMessage::new(&Message::text(format!("{n}"))));
        }
        let mut written = 0;
        let result = inbox.drain(|_| {
            written += 1;
            if written == 5 {
                Err("socket gone")
            } else {
                Ok(())
            }
        });
        assert_eq!((result, written), (Err("socket gone"), 5));
        // A burst's deque is not kept as the spare (it is swapped back into
        // the queue once, then freed).
        inbox.drain(|_| Ok::<(), ()>(())).unwrap();
        inbox.drain(|_| Ok::<(), ()>(())).unwrap();
        assert!(inbox.spare.capacity() <= SPARE_FRAMES);

        let queue = inbox.queue.0.clone();
        drop(inbox);
        out.deliver(&PreparedMessage::new(&Message::text("late")));
        assert!(queue.lock().frames.is_empty(), "nobody will read it");
    }

    #[test]
    fn a_parked_inbox_gives_its_buffers_back_and_keeps_what_is_delivered() {
        use std::task::Wake;

        struct Count(std::sync::atomic::AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }

        let rooms = Rooms::default();
        let (out, mut inbox) = rooms.outbox(SendQueue::new(1024, 1 << 20));
        for n in 0..100 {
            out.deliver(&PreparedMessage::new(&Message::text(format!("m{n}"))));
        }
        inbox.drain(|_| Ok::<(), ()>(())).unwrap();
        let parked = inbox.park();
        assert_eq!(parked.0.lock().frames.capacity(), 0);
        let count = Arc::new(Count(Default::default()));
        let waker = std::task::Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(parked.poll_signal(&mut cx).is_pending());
        out.deliver(&PreparedMessage::new(&Message::text("while parked")));
        assert_eq!(
            count.0.load(Ordering::Relaxed),
            1,
            "the parker's waker woken"
        );
        let mut inbox = parked.resume();
        let mut got = Vec::new();
        inbox
            .drain(|frame| {
                got.push(frame.clone());
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(rooms.backlog().members.load(Ordering::Relaxed), 1);
        drop(inbox);
        assert_eq!(rooms.backlog().members.load(Ordering::Relaxed), 0);
    }
}
