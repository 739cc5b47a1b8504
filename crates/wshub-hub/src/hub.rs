//! [`Hub`]: one hub's rooms, for Rust code that embeds it to publish into
//! and read from, and the server that puts them on a listener.

use std::future::Future;
use std::io;
use std::sync::Arc;

use serde_json::Value;
use tokio::net::TcpListener;

use crate::engine::RedisEngine;
use crate::metrics::Metrics;
use crate::protocol::{self, Since};
use crate::rooms::{HistoryPage, Published, RoomInfo, Rooms, Sender};
use crate::HubConfig;

/// A hub: its rooms and settings. Clones share the rooms, so a backend can
/// keep one to [`publish`](Hub::publish) while another serves them:
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use wshub_hub::{Hub, HubConfig, PublishOptions};
///
/// let hub = Hub::new(HubConfig::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let server = tokio::spawn({
///     let hub = hub.clone();
///     async move { hub.serve(listener, std::future::pending()).await }
/// });
/// let published = hub
///     .publish("lobby", &serde_json::json!("deploy finished"), &PublishOptions::new())
///     .await?;
/// println!("offset {} in epoch {}", published.offset, published.epoch);
/// # drop(server); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Hub {
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) config: Arc<HubConfig>,
    /// With [`HubConfig::redis`].
    pub(crate) engine: Option<Arc<RedisEngine>>,
}

/// How [`Hub::publish`] publishes; [`PublishOptions::new`] is a message
/// from `api` with no idempotency key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOptions {
    from: Option<String>,
    idempotency_key: Option<String>,
}

impl PublishOptions {
    /// A message from `api`, without an idempotency key.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `from` the members see: a display name of 1–32 bytes under the
    /// rules of `join` (docs/protocol.md). Default: `api`. The `from_id`
    /// of a message published here is always 0, which no connection has.
    pub fn from(mut self, name: impl Into<String>) -> Self {
        self.from = Some(name.into());
        self
    }

    /// An idempotency key of 1–64 bytes: a publish whose key a message in
    /// the room's history has is not published again (see
    /// [`Published::duplicate`]).
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// Why [`Hub::publish`] published nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The room name is empty, over 64 bytes, or has control characters.
    #[error("{}", protocol::ROOM_RULE)]
    InvalidRoom,
    /// [`PublishOptions::from`] breaks the display-name rules.
    #[error("from: {}", protocol::NAME_RULE)]
    InvalidFrom,
    /// [`PublishOptions::idempotency_key`] is empty, over 64 bytes, or has
    /// control characters.
    #[error("idempotency_key: {}", protocol::KEY_RULE)]
    InvalidKey,
    /// The Redis engine could not record the message (Redis unreachable,
    /// or not answering within 2 s): nothing was published; try again.
    #[error("{0}")]
    Unavailable(String),
}

impl Hub {
    /// A hub with `config`, serving nothing yet: rooms can be published to
    /// and read before [`Hub::serve`] runs.
    ///
    /// With [`HubConfig::redis`], it starts the node's Redis subscriber on
    /// the current tokio runtime (so it must be called within one); it
    /// connects in the background and again after every loss, and until it
    /// is connected joins and publishes are answered `unavailable`.
    pub fn new(config: HubConfig) -> Self {
        let rooms = Rooms::new(config.presence_limit).with_history(config.history());
        let (rooms, engine) = match &config.redis {
            None => (Arc::new(rooms), None),
            Some(redis) => {
                let (engine, subscriber) = RedisEngine::start(redis, rooms)
                    .expect("RedisConfig::new and ::cluster checked the URLs and certificates");
                tokio::spawn(subscriber);
                (engine.rooms.clone(), Some(engine))
            }
        };
        let metrics = Arc::new(Metrics::new());
        metrics.watch_rooms(&rooms);
        Self {
            rooms,
            metrics,
            config: Arc::new(config),
            engine,
        }
    }

    /// Publishes `message` (any JSON value) to `room` as the HTTP API's
    /// `POST /api/publish` does: every member gets a `message` with the
    /// room's next offset, and the room's history keeps it, even if the
    /// room has no members now (it is kept while its history lasts, so
    /// members who resume get it). With the history off
    /// ([`HubConfig::history_size`] 0), a room without members gets the
    /// message for nobody and is not kept.
    ///
    /// Async because an engine shared by several nodes answers over the
    /// network; this in-memory one answers at once.
    ///
    /// # Errors
    /// A [`PublishError`] for a room name, `from` or key that breaks the
    /// protocol's rules; nothing is published then.
    pub async fn publish(
        &self,
        room: &str,
        message: &Value,
        options: &PublishOptions,
    ) -> Result<Published, PublishError> {
        if !protocol::valid_room(room) {
            return Err(PublishError::InvalidRoom);
        }
        let from = options.from.as_deref().unwrap_or("api");
        if !protocol::valid_name(from) {
            return Err(PublishError::InvalidFrom);
        }
        let key = options.idempotency_key.as_deref();
        if key.is_some_and(|k| !protocol::valid_key(k)) {
            return Err(PublishError::InvalidKey);
        }
        if let Some(engine) = &self.engine {
            return engine
                .publish(room, from, 0, message, key)
                .await
                .map_err(|e| PublishError::Unavailable(e.to_string()));
        }
        let started = std::time::Instant::now();
        let sender = Sender::Api { name: from };
        let published = self
            .rooms
            .publish_with(room, sender, message, key)
            .expect("an API publish needs no membership");
        if !published.duplicate {
            self.metrics.fanned_out(started.elapsed());
        }
        Ok(published)
    }

    /// Who is in `room` and where its offsets are (a room the hub does not
    /// hold has no members, offset 0 and no epoch). With the Redis engine,
    /// the members are those of every node, and the epoch and offset
    /// Redis's.
    ///
    /// # Errors
    /// [`PublishError::Unavailable`] if the Redis engine cannot answer.
    pub async fn room(&self, room: &str) -> Result<RoomInfo, PublishError> {
        match &self.engine {
            None => Ok(self.rooms.info(room)),
            Some(engine) => engine
                .room_info(room)
                .await
                .map_err(|e| PublishError::Unavailable(e.to_string())),
        }
    }

    /// What `room`'s history holds: with `since`, every message after it,
    /// or none with `recovered: Some(false)` (the rule of a resuming
    /// `join`, docs/protocol.md "History and resume"); without, its last
    /// `limit` messages, at most [`HubConfig::history_max_replay`].
    ///
    /// # Errors
    /// [`PublishError::Unavailable`] if the Redis engine cannot answer.
    pub async fn history(
        &self,
        room: &str,
        since: Option<&Since>,
        limit: usize,
    ) -> Result<HistoryPage, PublishError> {
        match &self.engine {
            None => Ok(self.rooms.history(room, since, limit)),
            Some(engine) => engine
                .history(room, since, limit.min(self.config.history_max_replay))
                .await
                .map_err(|e| PublishError::Unavailable(e.to_string())),
        }
    }

    /// Whether this hub can take joins and publishes: with the Redis
    /// engine, whether its subscriber is connected.
    pub fn is_ready(&self) -> bool {
        self.engine.as_ref().is_none_or(|e| e.is_up())
    }

    /// Serves this hub on `listener` until `shutdown` completes: see
    /// [`serve`](crate::serve), which is `Hub::new(config).serve(..)`.
    ///
    /// # Errors
    /// Only if the listener itself fails.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        crate::server::serve_hub(self, listener, shutdown).await
    }
}
