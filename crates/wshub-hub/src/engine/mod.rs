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
mod subscriber;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use wshub::{Message, PreparedMessage};

pub use self::config::{RedisConfig, RedisTls};
use self::log::{LogError, LogRead, RedisLog};
use crate::protocol::Since;
use crate::rooms::{HistoryPage, Published, Remote, Rooms};

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
    /// This node's id, in its watchdog channels' names.
    node: u64,
    /// How to (re)connect the subscriber.
    target: connection::Target,
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
        let remote = Arc::new(Remote::new(released_tx));
        let log = RedisLog::new(target.command_connection()?, *rooms.history_limits());
        let rooms = Arc::new(rooms.with_remote(remote.clone()));
        let (control, requests) = mpsc::unbounded_channel();
        let engine = Arc::new(Self {
            log,
            rooms,
            remote,
            control,
            up: AtomicBool::new(false),
            node: rand::random(),
            target,
        });
        let task = subscriber::run(engine.clone(), requests, released);
        Ok((engine, task))
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
        let value = crate::protocol::encode_value(message);
        let ts = crate::rooms::now_ms();
        let (prefix, middle) = crate::protocol::message_parts(room, from, from_id, ts, &value);
        let epoch = self.rooms.next_epoch();
        let logged = self
            .log
            .publish(room, &prefix, &middle, key, &epoch)
            .await?;
        Ok(Published {
            epoch: logged.epoch.into(),
            offset: logged.offset,
            duplicate: logged.duplicate,
        })
    }
}
