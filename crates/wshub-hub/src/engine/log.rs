//! A room's log in Redis (docs/design/redis-engine.md): one script
//! publishes a message atomically — next offset, epoch, stream entry,
//! idempotency key, shard-channel publish — and another reads a room's
//! epoch and last offset with the messages after a given one. Offsets are
//! given by Redis, so every node sees the same `(epoch, offset)`.

use std::time::Duration;

use futures_util::future::join_all;
use redis::cluster_routing::Slot;
use redis::Script;

use super::connection::EngineConnection;
use super::keys::RoomKeys;
use crate::rooms::HistoryLimits;

/// How long one command may take before it fails: a publish is then
/// answered with an error, never silently dropped.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the log could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LogError {
    /// Redis could not be reached, timed out, or refused the command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Where a publish landed, as the script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Logged {
    pub(crate) epoch: String,
    pub(crate) offset: u64,
    pub(crate) duplicate: bool,
}

/// One publish for [`RedisLog::publish_batch`]: the frame `prefix +
/// offset + middle + "epoch" ...` (see [`crate::protocol::message_parts`])
/// to `room`, with an optional idempotency `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogPublish {
    pub(crate) room: String,
    pub(crate) prefix: String,
    pub(crate) middle: String,
    pub(crate) key: Option<String>,
    /// The room's epoch if it has none (a new room, or one whose keys
    /// expired or were lost).
    pub(crate) new_epoch: String,
}

/// What [`RedisLog::read`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogRead {
    /// The room's epoch (given now if it had none).
    pub(crate) epoch: String,
    /// Its last offset.
    pub(crate) last: u64,
    /// The offset of `frames[0]`; 0 when `frames` is empty.
    pub(crate) first: u64,
    /// The `message` frames from `first` on, consecutive, as published.
    pub(crate) frames: Vec<String>,
}

/// The rooms' logs on one Redis server or a Redis Cluster.
#[derive(Clone)]
pub(crate) struct RedisLog {
    conn: EngineConnection,
    publish: Script,
    read: Script,
    history: HistoryLimits,
}

impl std::fmt::Debug for RedisLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLog")
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

impl RedisLog {
    /// Connects to `url` (`redis://[:password@]host:port[/db]`); the
    /// connection is re-established by itself after a failure.
    #[cfg(test)]
    pub(crate) async fn connect(url: &str, history: HistoryLimits) -> Result<Self, LogError> {
        let config = super::RedisConfig::new(url).expect("a Redis URL");
        let target = super::connection::Target::new(&config).expect("a Redis URL");
        let log = Self::new(target.command_connection().expect("a Redis URL"), history);
        // The first command connects.
        let _: () = redis::cmd("PING")
            .query_async(&mut log.conn.clone())
            .await?;
        Ok(log)
    }

    /// The log on `conn`'s Redis (which connects at its first command,
    /// and again after a failure).
    pub(crate) fn new(conn: EngineConnection, history: HistoryLimits) -> Self {
        Self {
            conn,
            publish: Script::new(concat!(
                include_str!("epoch.lua"),
                include_str!("publish.lua")
            )),
            read: Script::new(concat!(include_str!("epoch.lua"), include_str!("read.lua"))),
            history,
        }
    }

    fn ttl_ms(&self) -> u64 {
        self.history.ttl.as_millis().max(1) as u64
    }

    /// Publishes one message: [`RedisLog::publish_batch`] of one.
    #[cfg(test)]
    pub(crate) async fn publish(
        &self,
        room: &str,
        prefix: &str,
        middle: &str,
        key: Option<&str>,
        new_epoch: &str,
    ) -> Result<Logged, LogError> {
        let publish = LogPublish {
            room: room.to_owned(),
            prefix: prefix.to_owned(),
            middle: middle.to_owned(),
            key: key.map(str::to_owned),
            new_epoch: new_epoch.to_owned(),
        };
        let mut answers = self.publish_batch(&[publish]).await;
        answers.pop().expect("one answer per publish")
    }

    /// Which pipeline `room`'s publishes go in (see
    /// [`EngineConnection::pipeline_of`]).
    pub(crate) fn pipeline_of(&self, room: &str) -> Option<Slot> {
        self.conn.pipeline_of(&RoomKeys::new(room).channel)
    }

    /// Publishes `batch`, in order: each message gets its room's next
    /// offset, is kept in the room's stream (at most the history size, for
    /// the history ttl) and published on the room's shard channel, by the
    /// publish script, atomically. A publish whose idempotency key was used
    /// within the ttl publishes nothing and is answered the first
    /// publish's offset.
    ///
    /// One round trip: the whole batch is one pipeline of `EVALSHA`s (one
    /// per cluster slot, sent side by side, on a Redis Cluster). Answers
    /// come in the batch's order; a pipeline that fails (no connection, a
    /// timeout) fails each of its publishes with that error. If Redis lost
    /// its script cache (a restart, `SCRIPT FLUSH`, a failover), the
    /// script is loaded and the publishes that got `NOSCRIPT` are sent
    /// again, in order.
    pub(crate) async fn publish_batch(
        &self,
        batch: &[LogPublish],
    ) -> Vec<Result<Logged, LogError>> {
        let mut groups: Vec<(Option<Slot>, Vec<usize>)> = Vec::new();
        for (i, publish) in batch.iter().enumerate() {
            let group = self.pipeline_of(&publish.room);
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, members)) => members.push(i),
                None => groups.push((group, vec![i])),
            }
        }
        let sent = groups
            .iter()
            .map(|(_, members)| self.publish_pipeline(batch, members));
        let mut answers: Vec<Option<Result<Logged, LogError>>> = vec![None; batch.len()];
        for ((_, members), results) in groups.iter().zip(join_all(sent).await) {
            for (&i, result) in members.iter().zip(results) {
                answers[i] = Some(result);
            }
        }
        answers
            .into_iter()
            .map(|a| a.expect("every publish is in one group"))
            .collect()
    }

    /// The publishes at `members` of `batch`, as one pipeline.
    async fn publish_pipeline(
        &self,
        batch: &[LogPublish],
        members: &[usize],
    ) -> Vec<Result<Logged, LogError>> {
        let mut answers = self.send_publishes(batch, members).await;
        let no_script: Vec<usize> = (0..members.len())
            .filter(|&i| {
                matches!(&answers[i], Err(LogError::Redis(e))
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
            })
            .collect();
        if no_script.is_empty() {
            return answers;
        }
        let loaded = self
            .publish
            .prepare_invoke()
            .load_async(&mut self.conn.clone())
            .await;
        let again: Vec<usize> = no_script.iter().map(|&i| members[i]).collect();
        let retried = match loaded {
            Ok(_) => self.send_publishes(batch, &again).await,
            Err(e) => vec![Err(LogError::Redis(e)); again.len()],
        };
        for (i, answer) in no_script.into_iter().zip(retried) {
            answers[i] = answer;
        }
        answers
    }

    /// Sends the publishes at `members` of `batch` as one pipeline of
    /// `EVALSHA`s; one answer per publish.
    async fn send_publishes(
        &self,
        batch: &[LogPublish],
        members: &[usize],
    ) -> Vec<Result<Logged, LogError>> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for &i in members {
            let publish = &batch[i];
            let keys = RoomKeys::new(&publish.room);
            let key_name = publish.key.as_deref().map(|k| keys.idempotency(k));
            pipe.cmd("EVALSHA")
                .arg(self.publish.get_hash())
                .arg(3)
                .arg(&keys.meta)
                .arg(&keys.log)
                .arg(key_name.as_deref().unwrap_or(&keys.meta))
                .arg(&publish.new_epoch)
                .arg(self.history.size.max(1))
                .arg(self.ttl_ms())
                .arg(&publish.prefix)
                .arg(&publish.middle)
                .arg(&keys.channel)
                .arg(if key_name.is_some() { "1" } else { "0" });
        }
        let answered: redis::RedisResult<Vec<redis::RedisResult<(String, u64, u8)>>> =
            pipe.query_async(&mut self.conn.clone()).await;
        match answered {
            Ok(answers) if answers.len() == members.len() => answers
                .into_iter()
                .map(|answer| {
                    let (epoch, offset, duplicate) = answer?;
                    Ok(Logged {
                        epoch,
                        offset,
                        duplicate: duplicate == 1,
                    })
                })
                .collect(),
            Ok(answers) => {
                let e = redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "a pipeline answered",
                    format!("{} answers to {} publishes", answers.len(), members.len()),
                ));
                vec![Err(LogError::Redis(e)); members.len()]
            }
            Err(e) => vec![Err(LogError::Redis(e)); members.len()],
        }
    }

    /// Runs a script of the engine's other parts (presence) on the log's
    /// connection, under the same timeouts.
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, LogError> {
        Ok(invocation.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Publishes `payload` on the shard channel `channel`.
    pub(crate) async fn spublish(&self, channel: &str, payload: &str) -> Result<(), LogError> {
        let _: i64 = redis::cmd("SPUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// `room`'s epoch and last offset (giving it `new_epoch` if it has
    /// none), and with `after`, up to `max` of its messages after that
    /// offset, as far as the stream still has them.
    pub(crate) async fn read(
        &self,
        room: &str,
        after: Option<u64>,
        max: usize,
        new_epoch: &str,
    ) -> Result<LogRead, LogError> {
        let keys = RoomKeys::new(room);
        let from = after.map(|a| (a + 1).to_string()).unwrap_or_default();
        let (epoch, last, frames, first): (String, u64, Vec<String>, u64) = self
            .read
            .key(&keys.meta)
            .key(&keys.log)
            .arg(new_epoch)
            .arg(self.ttl_ms())
            .arg(from)
            .arg(max.max(1))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(LogRead {
            epoch,
            last,
            first,
            frames,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Against a real `redis-server` (Debian's package; `.ci/run` installs
    //! it), started on a free port for each test.

    use super::*;
    use crate::protocol::{encode_value, message_json, message_parts};
    use serde_json::{json, Value};

    use wshub_testkit::RedisServer as Server;

    fn limits(size: usize) -> HistoryLimits {
        HistoryLimits {
            size,
            ..HistoryLimits::default()
        }
    }

    /// The parts of a message from `ann` (connection 7) holding `value`.
    fn parts(room: &str, value: &Value) -> (String, String) {
        message_parts(room, "ann", 7, 1000, &encode_value(value))
    }

    async fn publish(log: &RedisLog, room: &str, value: Value, key: Option<&str>) -> Logged {
        let (prefix, middle) = parts(room, &value);
        log.publish(room, &prefix, &middle, key, "e1")
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn offsets_come_from_redis_in_order_and_the_frames_are_the_hubs() {
        let server = Server::start(wshub_testkit::Options::default());
        let log = RedisLog::connect(&server.url(), limits(100)).await.unwrap();
        // A second node on the same Redis shares the room's numbering.
        let other = RedisLog::connect(&server.url(), limits(100)).await.unwrap();
        for n in 1..=3u64 {
            let node = if n == 2 { &other } else { &log };
            let logged = publish(node, "a{b}", json!(n), None).await;
            assert_eq!(
                logged,
                Logged {
                    epoch: "e1".into(),
                    offset: n,
                    duplicate: false
                }
            );
        }
        let read = other.read("a{b}", Some(1), 10, "unused").await.unwrap();
        assert_eq!((read.epoch.as_str(), read.last, read.first), ("e1", 3, 2));
        let expected: Vec<String> = (2..=3u64)
            .map(|n| message_json("a{b}", "ann", 7, n, "e1", 1000, &encode_value(&json!(n))))
            .collect();
        assert_eq!(read.frames, expected);
        let head = log.read("a{b}", None, 10, "unused").await.unwrap();
        assert_eq!((head.last, head.frames.len()), (3, 0));
        // A room never published to gets its epoch on first read.
        let fresh = log.read("new", Some(0), 10, "e9").await.unwrap();
        assert_eq!(
            (fresh.epoch.as_str(), fresh.last, fresh.first),
            ("e9", 0, 0)
        );
    }

    #[tokio::test]
    async fn an_idempotency_key_publishes_once() {
        let server = Server::start(wshub_testkit::Options::default());
        let log = RedisLog::connect(&server.url(), limits(100)).await.unwrap();
        let first = publish(&log, "r", json!("x"), Some("k")).await;
        let again = publish(&log, "r", json!("x"), Some("k")).await;
        assert_eq!((again.offset, again.duplicate), (first.offset, true));
        assert_eq!(publish(&log, "r", json!("y"), None).await.offset, 2);
        let elsewhere = publish(&log, "other", json!("x"), Some("k")).await;
        assert!(!elsewhere.duplicate, "keys are per room");
    }

    #[tokio::test]
    async fn a_room_whose_keys_were_lost_starts_a_new_epoch_from_offset_1() {
        let server = Server::start(wshub_testkit::Options::default());
        let log = RedisLog::connect(&server.url(), limits(100)).await.unwrap();
        for n in 1..=3 {
            publish(&log, "r", json!(n), None).await;
        }
        // The meta hash evicted alone: its stream must not keep the old
        // offsets above the new ones.
        let mut conn = log.conn.clone();
        let _: () = redis::cmd("DEL")
            .arg(RoomKeys::new("r").meta)
            .query_async(&mut conn)
            .await
            .unwrap();
        let (prefix, middle) = parts("r", &json!("new life"));
        let logged = log
            .publish("r", &prefix, &middle, None, "e2")
            .await
            .unwrap();
        assert_eq!((logged.epoch.as_str(), logged.offset), ("e2", 1));
        let read = log.read("r", Some(0), 10, "unused").await.unwrap();
        assert_eq!((read.first, read.frames.len()), (1, 1));
        assert!(read.frames[0].contains("new life"));
    }

    #[tokio::test]
    async fn the_stream_is_trimmed_near_the_history_size() {
        let server = Server::start(wshub_testkit::Options::default());
        let log = RedisLog::connect(&server.url(), limits(10)).await.unwrap();
        for n in 1..=1000 {
            publish(&log, "r", json!(n), None).await;
        }
        let read = log.read("r", Some(0), 2000, "unused").await.unwrap();
        // MAXLEN ~ trims whole stream nodes (100 entries by default).
        assert!(read.first > 800, "first kept offset {}", read.first);
        assert_eq!(read.first + read.frames.len() as u64 - 1, 1000);
    }

    #[tokio::test]
    async fn the_script_publishes_on_the_rooms_shard_channel() {
        let server = Server::start(wshub_testkit::Options::default());
        let log = RedisLog::connect(&server.url(), limits(100)).await.unwrap();
        let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
        let client = redis::Client::open(format!("{}/?protocol=resp3", server.url())).unwrap();
        let config = redis::AsyncConnectionConfig::new().set_push_sender(tx);
        let mut sub = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap();
        let channel = RoomKeys::new("r").channel;
        let _: () = redis::cmd("SSUBSCRIBE")
            .arg(&channel)
            .exec_async(&mut sub)
            .await
            .unwrap();
        let logged = publish(&log, "r", json!("live"), None).await;
        loop {
            let push = tokio::time::timeout(Duration::from_secs(5), pushes.recv())
                .await
                .unwrap()
                .unwrap();
            if push.kind != redis::PushKind::SMessage {
                continue;
            }
            let (got_channel, frame): (String, String) =
                redis::from_redis_value(redis::Value::Array(push.data)).unwrap();
            assert_eq!(got_channel, channel);
            let frame: Value = serde_json::from_str(&frame).unwrap();
            assert_eq!(
                (&frame["offset"], &frame["message"]),
                (&json!(logged.offset), &json!("live"))
            );
            break;
        }
    }

    #[tokio::test]
    async fn a_publish_while_redis_is_down_fails_within_the_timeout() {
        let mut server = Server::start(wshub_testkit::Options::default());
        let log = RedisLog::connect(&server.url(), limits(100)).await.unwrap();
        publish(&log, "r", json!(1), None).await;
        server.kill9();
        let (prefix, middle) = parts("r", &json!(2));
        let started = std::time::Instant::now();
        let failed = log.publish("r", &prefix, &middle, None, "e1").await;
        assert!(failed.is_err(), "{failed:?}");
        assert!(
            started.elapsed() < COMMAND_TIMEOUT * 3,
            "{:?}",
            started.elapsed()
        );
    }
}
