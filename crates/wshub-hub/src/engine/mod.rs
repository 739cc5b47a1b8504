//! Where a hub's rooms get their offsets and keep their history when it is
//! not this process: the Redis engine (docs/design/redis-engine.md). Rooms
//! ([`crate::rooms`]) still hold the local members and fan out to them;
//! the engine numbers and records every publish in Redis, and one
//! subscriber per node brings each message of a followed room back, in
//! order, to be fanned out here.

mod config;
mod connection;
pub(crate) mod keys;
pub(crate) mod log;
mod presence;
mod publisher;
mod subscriber;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{mpsc, oneshot};

use wshub::{Message, PreparedMessage};

pub use self::config::{RedisConfig, RedisTls, DEFAULT_PRESENCE_TTL};
use self::log::{LogError, LogPublish, LogRead, Logged, RedisLog};
use self::presence::Presence;
pub(crate) use self::publisher::PublishAnswer;
use self::publisher::PublishQueue;
use crate::protocol::{ServerMessage, Since};
use crate::rooms::{HistoryPage, Left, Published, Remote, RoomInfo, Rooms, MAX_LISTED_MEMBERS};

/// How long a join waits for the engine to follow its room.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the engine could not do what was asked; the request is answered
/// with an error (`unavailable`), nothing is half done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Redis engine is unavailable: {0}")]
pub(crate) struct EngineError(pub(crate) String);

impl From<LogError> for EngineError {
    fn from(e: LogError) -> Self {
        Self(e.to_string())
    }
}

/// A request to the subscriber.
#[derive(Debug)]
enum Control {
    /// Follow this room; answer once its epoch and offset are known.
    Follow(String, oneshot::Sender<Result<(), EngineError>>),
}

/// One hub node's Redis engine.
#[derive(Debug)]
pub(crate) struct RedisEngine {
    log: RedisLog,
    pub(crate) rooms: Arc<Rooms>,
    remote: Arc<Remote>,
    control: mpsc::UnboundedSender<Control>,
    /// The subscriber is connected.
    up: AtomicBool,
    /// This node's id, in its watchdog channels' names and its presence
    /// entries.
    node: u64,
    /// How to (re)connect the subscriber.
    target: connection::Target,
    presence: Presence,
    /// This node's publishes, on their way to Redis.
    publishes: PublishQueue,
}

impl RedisEngine {
    /// The engine for `rooms` on `config`'s server, and its subscriber's
    /// task, to be spawned. Connects lazily: nothing fails until used.
    pub(crate) fn start(
        config: &RedisConfig,
        rooms: Rooms,
    ) -> Result<(Arc<Self>, impl std::future::Future<Output = ()> + 'static), EngineError> {
        let target = connection::Target::new(config)?;
        let (released_tx, released) = mpsc::unbounded_channel();
        let (left_tx, left) = mpsc::unbounded_channel();
        let remote = Arc::new(Remote::new(released_tx, left_tx));
        let log = RedisLog::new(target.command_connection()?, *rooms.history_limits());
        let presence_limit = rooms.presence_limit();
        let rooms = Arc::new(rooms.with_remote(remote.clone()));
        let (control, requests) = mpsc::unbounded_channel();
        let (publishes, queued) = PublishQueue::new();
        let publisher = publisher::run(log.clone(), queued);
        let node_id = rand::random();
        let engine = Arc::new(Self {
            log,
            rooms,
            remote,
            control,
            up: AtomicBool::new(false),
            node: node_id,
            target,
            presence: Presence::new(node_id, config.presence_ttl, presence_limit),
            publishes,
        });
        let subscriber = subscriber::run(engine.clone(), requests, released);
        let presence = keep_presence(engine.clone(), left);
        let tasks = async move {
            tokio::join!(subscriber, presence, publisher);
        };
        Ok((engine, tasks))
    }

    /// Whether the subscriber is connected to Redis.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Returns once the subscriber follows `room` (at once if it does).
    pub(crate) async fn follow(&self, room: &str) -> Result<(), EngineError> {
        if self.remote.follows(room) {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.control
            .send(Control::Follow(room.to_owned(), reply))
            .map_err(|_| EngineError("the subscriber has stopped".into()))?;
        match tokio::time::timeout(FOLLOW_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EngineError("the subscriber has stopped".into())),
            Err(_) => Err(EngineError(
                "Redis did not confirm the subscription in time".into(),
            )),
        }
    }

    /// The room's log after `after`, at most `max` messages.
    pub(crate) async fn read(
        &self,
        room: &str,
        after: u64,
        max: usize,
    ) -> Result<LogRead, EngineError> {
        let epoch = self.rooms.next_epoch();
        Ok(self.log.read(room, Some(after), max, &epoch).await?)
    }

    /// The room's epoch and last offset.
    pub(crate) async fn head(&self, room: &str) -> Result<LogRead, EngineError> {
        let epoch = self.rooms.next_epoch();
        Ok(self.log.read(room, None, 1, &epoch).await?)
    }

    /// [`crate::Hub::history`]: with `since`, every message after it (at
    /// most `max`) or none; without, the last `max`.
    pub(crate) async fn history(
        &self,
        room: &str,
        since: Option<&Since>,
        max: usize,
    ) -> Result<HistoryPage, EngineError> {
        let frames = |frames: Vec<String>| -> Vec<PreparedMessage> {
            frames
                .into_iter()
                .map(|f| PreparedMessage::new(&Message::text(f)))
                .collect()
        };
        match since {
            Some(since) => {
                let read = self.read(room, since.offset, max + 1).await?;
                let missed = read.last.checked_sub(since.offset);
                let recovered = read.epoch == since.epoch
                    && missed.is_some_and(|m| m <= max as u64)
                    && (missed == Some(0)
                        || (read.first == since.offset + 1
                            && read.frames.len() as u64 >= missed.unwrap_or(0)));
                let mut messages = Vec::new();
                if recovered {
                    let mut kept = read.frames;
                    kept.truncate(missed.unwrap_or(0) as usize);
                    messages = frames(kept);
                }
                Ok(HistoryPage {
                    epoch: Some(read.epoch),
                    offset: read.last,
                    recovered: Some(recovered),
                    messages,
                })
            }
            None => {
                let head = self.head(room).await?;
                let read = self
                    .read(room, head.last.saturating_sub(max as u64), max)
                    .await?;
                Ok(HistoryPage {
                    epoch: Some(read.epoch),
                    offset: read.last,
                    recovered: None,
                    messages: frames(read.frames),
                })
            }
        }
    }

    /// Publishes `message` from `from` (connection `from_id`, 0 for the
    /// API) to `room`: acknowledged once Redis has it in the room's log.
    pub(crate) async fn publish(
        &self,
        room: &str,
        from: &str,
        from_id: u64,
        message: &Value,
        key: Option<&str>,
    ) -> Result<Published, EngineError> {
        published(
            self.queue_publish(room, from, from_id, message, key)
                .await
                .ok(),
        )
    }

    /// Queues the publish of `message` from `from` to `room` behind this
    /// node's publishes so far (its place in the room is fixed now) and
    /// returns where its answer comes, for [`published`]: a session keeps
    /// several in flight, in order.
    pub(crate) fn queue_publish(
        &self,
        room: &str,
        from: &str,
        from_id: u64,
        message: &Value,
        key: Option<&str>,
    ) -> PublishAnswer {
        let value = crate::protocol::encode_value(message);
        let ts = crate::rooms::now_ms();
        let (prefix, middle) = crate::protocol::message_parts(room, from, from_id, ts, &value);
        self.publishes.push(LogPublish {
            room: room.to_owned(),
            prefix,
            middle,
            key: key.map(str::to_owned),
            new_epoch: self.rooms.next_epoch(),
        })
    }
}

/// What a queued publish's answer says, once it came (`None`: the queue
/// stopped before answering, as when the hub shuts down).
pub(crate) fn published(
    answer: Option<Result<Logged, LogError>>,
) -> Result<Published, EngineError> {
    let logged = answer.ok_or_else(|| EngineError("the publish queue has stopped".into()))??;
    Ok(Published {
        epoch: logged.epoch.into(),
        offset: logged.offset,
        duplicate: logged.duplicate,
    })
}

/// A `presence` frame's JSON.
fn presence_notice(room: &str, event: &str, name: &str) -> String {
    ServerMessage::Presence {
        room,
        event,
        name,
        ts: crate::rooms::now_ms(),
    }
    .to_json()
}

/// Whether a join went into the room's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PresenceJoin {
    /// In, with the room's members on every node.
    Entered {
        /// Up to [`MAX_LISTED_MEMBERS`] names, sorted.
        members: Vec<String>,
        member_count: usize,
    },
    /// A member on some node holds the name.
    NameTaken,
}

impl RedisEngine {
    /// Enters connection `id` into `room`'s presence as `name` (unique in
    /// the room on every node, if `unique`); the other nodes' members are
    /// told, this node's are told by the local join.
    pub(crate) async fn presence_join(
        &self,
        room: &str,
        id: u64,
        name: &str,
        unique: bool,
    ) -> Result<PresenceJoin, EngineError> {
        let notice = presence_notice(room, "join", name);
        let answer = self
            .presence
            .join(&self.log, room, id, name, unique, &notice)
            .await?;
        self.announce_expired(room, &answer.expired, answer.count)
            .await;
        if answer.taken {
            return Ok(PresenceJoin::NameTaken);
        }
        let mut members = answer.listed;
        members.sort();
        members.truncate(MAX_LISTED_MEMBERS);
        Ok(PresenceJoin::Entered {
            members,
            member_count: answer.count,
        })
    }

    /// Takes connection `id`, entered as `name`, out of `room`'s presence
    /// again (its join failed after [`RedisEngine::presence_join`]).
    pub(crate) fn forget(&self, room: &str, id: u64, name: &str) {
        self.remote.leave(room, id, name);
    }

    /// `room`'s members on every node, and its epoch and last offset.
    pub(crate) async fn room_info(&self, room: &str) -> Result<RoomInfo, EngineError> {
        let head = self.head(room).await?;
        let answer = self.presence.list(&self.log, room).await?;
        self.announce_expired(room, &answer.expired, answer.count)
            .await;
        let mut members = answer.listed;
        members.sort();
        Ok(RoomInfo {
            members,
            member_count: answer.count,
            epoch: Some(head.epoch),
            offset: head.last,
        })
    }

    /// Tells every node's members of `room` that the members `expired`
    /// (of a node that stopped renewing them) left, if the room, now of
    /// `count` members, is small enough for notices.
    async fn announce_expired(&self, room: &str, expired: &[String], count: usize) {
        for name in expired {
            tracing::info!(
                room,
                name,
                "Redis engine: a member of a node that stopped renewing its presence left"
            );
        }
        if count < self.presence.limit() {
            self.announce(room, "leave", expired).await;
        }
    }

    /// Tells every node's members of `room` that `names` joined or left
    /// (`event`).
    async fn announce(&self, room: &str, event: &str, names: &[String]) {
        for name in names {
            let notice = presence_notice(room, event, name);
            self.rooms.notify(room, notice.clone(), None);
            if let Err(e) = self.presence.announce(&self.log, room, &notice).await {
                tracing::debug!(room, error = %e, "Redis engine: cannot announce presence");
            }
        }
    }

    /// A presence notice from another node on `room`'s channel, to this
    /// node's members; `false` if `payload` is no presence notice.
    pub(crate) fn on_notice(&self, room: &str, payload: &str) -> bool {
        match self.presence.notice_of(payload) {
            None => false,
            Some(None) => true,
            Some(Some(notice)) => {
                self.rooms.notify(room, notice.to_owned(), None);
                true
            }
        }
    }

    /// Takes a member who left `room` here out of its presence.
    async fn presence_leave(&self, left: Left) {
        let notice = presence_notice(&left.room, "leave", &left.name);
        match self
            .presence
            .leave(&self.log, &left.room, left.id, &notice)
            .await
        {
            Ok(answer) => {
                self.announce_expired(&left.room, &answer.expired, answer.count)
                    .await;
            }
            // The entry expires with the ttl.
            Err(e) => {
                tracing::debug!(room = left.room, error = %e, "Redis engine: cannot leave a room's presence")
            }
        }
    }

    /// Renews this node's presence entries in every room held here.
    async fn renew_presence(&self) {
        for room in self.rooms.synced_rooms() {
            let members = self.rooms.local_members(&room);
            match self.presence.refresh(&self.log, &room, &members).await {
                Ok(answer) => {
                    self.announce_expired(&room, &answer.expired, answer.count)
                        .await;
                    if answer.count <= self.presence.limit() {
                        // Back after the others were told they left.
                        self.announce(&room, "join", &answer.listed).await;
                    }
                }
                Err(e) => {
                    tracing::debug!(room, error = %e, "Redis engine: cannot renew presence");
                    return;
                }
            }
        }
    }
}

/// The node's presence task: takes members who left out of their rooms'
/// presence, in the order they left, and renews the node's entries every
/// third of the presence ttl.
async fn keep_presence(engine: Arc<RedisEngine>, mut left: UnboundedReceiver<Left>) {
    let mut renew = tokio::time::interval(engine.presence.renew_every());
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            gone = left.recv() => match gone {
                None => return,
                Some(gone) => engine.presence_leave(gone).await,
            },
            _ = renew.tick() => engine.renew_presence().await,
        }
    }
}
