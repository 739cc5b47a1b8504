//! Rooms whose offsets another engine gives (the Redis engine;
//! docs/design/redis-engine.md): a room takes members once the engine
//! follows it, and its messages arrive through [`Rooms::deliver`], in the
//! engine's order, each fanned out here to the local members.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::UnboundedSender;
use wshub::{Message, PreparedMessage};

use super::{
    lock_room, History, HistoryLimits, JoinRefused, Joined, Outbox, Room, Rooms, SharedRoom,
};
use crate::engine::log::LogRead;
use crate::protocol::Since;

/// What the engine follows, shared by it and the rooms.
#[derive(Debug)]
pub(crate) struct Remote {
    /// Rooms the engine follows (subscribed to), with the epoch and last
    /// offset it read when it started to: where a new local room starts.
    /// Lock order: a room's lock, then this; this, then the rooms' map.
    follows: Mutex<HashMap<String, (Arc<str>, u64)>>,
    /// Rooms whose last local member left: the engine may stop following
    /// them.
    released: UnboundedSender<String>,
    /// Members who left a room here: the engine takes them out of the
    /// room's presence on every node.
    left: UnboundedSender<Left>,
}

/// A member who left a room ([`Remote::new`]'s `left`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Left {
    pub(crate) room: String,
    /// Its connection id.
    pub(crate) id: u64,
    /// The name it had in the room.
    pub(crate) name: String,
}

impl Remote {
    pub(crate) fn new(released: UnboundedSender<String>, left: UnboundedSender<Left>) -> Self {
        Self {
            follows: Mutex::default(),
            released,
            left,
        }
    }

    /// Connection `id`, called `name`, is no longer in `room` here.
    pub(crate) fn leave(&self, room: &str, id: u64, name: &str) {
        let _ = self.left.send(Left {
            room: room.to_owned(),
            id,
            name: name.to_owned(),
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<str>, u64)>> {
        self.follows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the engine follows `room`.
    pub(crate) fn follows(&self, room: &str) -> bool {
        self.lock().contains_key(room)
    }

    /// The engine follows `room` from `epoch` and `last`.
    pub(crate) fn followed(&self, room: &str, epoch: &str, last: u64) {
        self.lock().insert(room.to_owned(), (epoch.into(), last));
    }

    /// Follows nothing: after the subscriber reconnects, no room counts as
    /// followed until Redis confirms its subscription again (and its head
    /// is read again), so a join in between waits for that rather than
    /// answer with what the node knew before.
    pub(crate) fn forget_all(&self) {
        self.lock().clear();
    }

    /// Stops following `room` unless `rooms` holds it again; returns whether
    /// it stopped. Under the lock a join checks, so a join either sees the
    /// room followed and is seen here as holding it, or sees it not
    /// followed and follows it again.
    pub(crate) fn unfollow(&self, room: &str, rooms: &Rooms) -> bool {
        let mut follows = self.lock();
        if rooms.lock().contains_key(room) {
            return false;
        }
        follows.remove(room).is_some()
    }

    fn base(&self, room: &str) -> Option<(Arc<str>, u64)> {
        self.lock().get(room).cloned()
    }

    pub(super) fn release(&self, room: &str) {
        let _ = self.released.send(room.to_owned());
    }
}

/// What [`Rooms::deliver`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Fanned out to the room's local members.
    Delivered,
    /// At or below the room's offset: already delivered, dropped.
    Duplicate,
    /// Above the next offset: the messages after `after` are missing and
    /// must be delivered first.
    Gap { after: u64 },
    /// No local member is in the room.
    NotHere,
}

impl Rooms {
    /// These rooms, with offsets given by the engine behind `remote`.
    pub(crate) fn with_remote(mut self, remote: Arc<Remote>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Joins as [`Rooms::join`], in a room the engine follows, whose
    /// epoch and offsets are the engine's; with `since`, the replay is
    /// built from `read` (the engine's log after `since`) and this node's
    /// recent deliveries.
    ///
    /// # Errors
    /// [`JoinRefused::NotSynced`] if the engine does not follow the room
    /// (follow it, then join again); [`JoinRefused::NameTaken`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn join_remote(
        &self,
        room: &str,
        id: u64,
        name: &str,
        unique: bool,
        outbox: &Outbox,
        since: Option<(&Since, &LogRead)>,
    ) -> Result<Joined, JoinRefused> {
        let remote = self.remote.as_ref().expect("rooms with a remote engine");
        let now = tokio::time::Instant::now();
        self.in_open_room(room, |shared, mut r| {
            if !r.synced || !remote.follows(room) {
                match remote.base(room) {
                    Some((epoch, last)) if !r.synced => {
                        r.epoch = epoch;
                        r.offset = last;
                        r.synced = true;
                    }
                    Some(_) => {}
                    None => {
                        if r.members.is_empty() {
                            r.closed = true;
                            drop(r);
                            self.remove(room, shared);
                        }
                        return Err(JoinRefused::NotSynced);
                    }
                }
            }
            let since = since.map(|(since, read)| (since, Some(read)));
            self.join_open(&mut r, room, id, name, unique, outbox, since, now)
                .map_err(|_| JoinRefused::NameTaken)
        })
    }

    /// Delivers the engine's message `frame` (of `epoch`, at `offset`) to
    /// the local members of `room`, in order: a message at or below the
    /// room's offset is a duplicate; one past the next is a gap unless
    /// `skip_gap` (the missing ones are lost: the engine no longer has
    /// them). A new `epoch` is a new life of the room: its offsets start
    /// again.
    pub(crate) fn deliver(
        &self,
        room: &str,
        epoch: &str,
        offset: u64,
        frame: String,
        skip_gap: bool,
    ) -> Delivery {
        let Some(shared) = self.room(room) else {
            return Delivery::NotHere;
        };
        let mut r = lock_room(&shared);
        if r.closed || !r.synced {
            return Delivery::NotHere;
        }
        r.enter_epoch(epoch);
        if offset <= r.offset {
            return Delivery::Duplicate;
        }
        if offset > r.offset + 1 {
            if !skip_gap {
                return Delivery::Gap { after: r.offset };
            }
            // The recent deliveries are no longer consecutive.
            r.history = History::default();
        }
        r.offset = offset;
        let frame = r.fan_out(frame, None, &self.stats);
        if !self.history.is_off() {
            let now = tokio::time::Instant::now();
            let pushed_out = r.history.append(frame, offset, None, now, &self.history);
            drop(r);
            drop(pushed_out);
        }
        Delivery::Delivered
    }

    /// Sends `notice` (a `presence` frame from another node) to `room`'s
    /// local members but `except`.
    pub(crate) fn notify(&self, room: &str, notice: String, except: Option<u64>) {
        let Some(shared) = self.room(room) else {
            return;
        };
        let r = lock_room(&shared);
        if !r.closed {
            r.fan_out(notice, except, &self.stats);
        }
    }

    /// `room`'s local members: connection id, name, and whether the name
    /// is held as unique in the room.
    pub(crate) fn local_members(&self, room: &str) -> Vec<(u64, String, bool)> {
        let Some(shared) = self.room(room) else {
            return Vec::new();
        };
        let r = lock_room(&shared);
        r.members
            .iter()
            .map(|(id, m)| (*id, m.name.to_string(), r.names.get(&m.name) == Some(id)))
            .collect()
    }

    /// The most members a room may have for presence notices to be sent.
    pub(crate) fn presence_limit(&self) -> usize {
        self.presence_limit
    }

    /// `room`'s life in the engine is `epoch` (Redis lost the room and
    /// began it again): if it is not the one here, the local room starts
    /// it, before any of its messages arrive, so that a join answers with
    /// it rather than the lost one.
    pub(crate) fn enter_epoch(&self, room: &str, epoch: &str) {
        if let Some(shared) = self.room(room) {
            let mut r = lock_room(&shared);
            if !r.closed && r.synced {
                r.enter_epoch(epoch);
            }
        }
    }

    /// The rooms held here whose messages the engine delivers: those to
    /// subscribe to again after the subscriber reconnects.
    pub(crate) fn synced_rooms(&self) -> Vec<String> {
        let rooms: Vec<(String, SharedRoom)> = self
            .lock()
            .iter()
            .map(|(name, shared)| (name.clone(), shared.clone()))
            .collect();
        rooms
            .into_iter()
            .filter(|(_, shared)| {
                let r = lock_room(shared);
                !r.closed && r.synced
            })
            .map(|(name, _)| name)
            .collect()
    }

    /// Where `room` is here: its epoch and delivered offset, if a local
    /// member is in it.
    pub(crate) fn delivered(&self, room: &str) -> Option<(String, u64)> {
        let shared = self.room(room)?;
        let r = lock_room(&shared);
        (!r.closed && r.synced).then(|| (r.epoch.to_string(), r.offset))
    }
}

impl Room {
    /// A new `epoch`, if it is not this room's: offsets start again, and
    /// the recent deliveries, of the old life, are dropped.
    fn enter_epoch(&mut self, epoch: &str) {
        if *self.epoch != *epoch {
            self.epoch = epoch.into();
            self.offset = 0;
            self.history = History::default();
        }
    }

    /// [`Room::recover`] for a room of a remote engine: the messages after
    /// `since` up to the room's offset, from `read` (the engine's log from
    /// `since`'s next offset) and, past what the read reached, from the
    /// room's recent deliveries; all of them or none.
    pub(super) fn recover_remote(
        &mut self,
        since: &Since,
        read: &LogRead,
        limits: &HistoryLimits,
    ) -> (bool, Vec<PreparedMessage>) {
        let delivered = self.offset;
        let none = (false, Vec::new());
        if *since.epoch != *self.epoch || read.epoch != *self.epoch || since.offset > delivered {
            return none;
        }
        let missed = delivered - since.offset;
        if missed > limits.max_replay as u64 {
            return none;
        }
        if !read.frames.is_empty() && read.first != since.offset + 1 {
            // The log was trimmed past `since`.
            return none;
        }
        let read_end = since.offset + read.frames.len() as u64;
        let from_read = read_end.min(delivered) - since.offset;
        let mut replay: Vec<PreparedMessage> = read.frames[..from_read as usize]
            .iter()
            .map(|frame| PreparedMessage::new(&Message::text(frame.clone())))
            .collect();
        if delivered > read_end {
            match self.history.after(read_end, delivered, usize::MAX) {
                Some(rest) => replay.extend(rest.cloned()),
                None => return none,
            }
        }
        (true, replay)
    }
}
