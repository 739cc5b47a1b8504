//! The node's publish queue (docs/design/redis-engine.md, "Publishing"):
//! every publish of this node, from `/ws` sessions and the publish API,
//! is queued here in the order it was made and sent by one task, which
//! takes whatever has queued up while the previous batch was out and sends
//! it as one pipeline ([`RedisLog::publish_batch`]). A client publishing
//! back to back then has many publishes in one Redis round trip instead of
//! one each, and Redis publishes them on the room's channel back to back,
//! so every node's fan-out writes them to each member together.
//!
//! Each publisher awaits only its own answer, on a channel of its own; a
//! session keeps several in flight and answers them in request order
//! (`member.rs`).

use redis::cluster_routing::Slot;
use tokio::sync::{mpsc, oneshot};

use super::log::{LogError, LogPublish, Logged, RedisLog};

/// Publishes sent as one pipeline at most: a bound on a batch's size, not
/// on the queue (each session bounds what it has in flight).
const MAX_BATCH: usize = 512;

/// A publish waiting in the queue, and where its answer goes.
#[derive(Debug)]
pub(crate) struct Queued {
    publish: LogPublish,
    answer: oneshot::Sender<Result<Logged, LogError>>,
}

/// Where a queued publish's answer comes: once Redis has it in the room's
/// log, or with the error it failed with.
pub(crate) type PublishAnswer = oneshot::Receiver<Result<Logged, LogError>>;

/// The sending side of the queue: one per node, shared.
#[derive(Debug)]
pub(crate) struct PublishQueue {
    queue: mpsc::UnboundedSender<Queued>,
}

impl PublishQueue {
    /// The queue and its receiving side, for [`run`].
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<Queued>) {
        let (queue, queued) = mpsc::unbounded_channel();
        (Self { queue }, queued)
    }

    /// Queues `publish`: its place among this node's publishes (and so in
    /// its room, after everything queued before it) is fixed now.
    pub(crate) fn push(&self, publish: LogPublish) -> PublishAnswer {
        let (answer, answered) = oneshot::channel();
        // The task ends only when every sender is gone: a failed send
        // drops `answer`, and the receiver then says the queue stopped.
        let _ = self.queue.send(Queued { publish, answer });
        answered
    }
}

/// Sends the queued publishes, batch after batch, until every
/// [`PublishQueue`] is dropped.
///
/// A batch that fails without an answer from Redis (no connection, a
/// timeout) also fails what queued up behind it for the same server or
/// cluster slot, at once: those would wait as long to fail again, and a
/// publish is answered within the command timeout whether it went through
/// or not.
pub(crate) async fn run(log: RedisLog, mut queued: mpsc::UnboundedReceiver<Queued>) {
    let mut batch: Vec<Queued> = Vec::new();
    loop {
        if batch.is_empty() && queued.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        while batch.len() < MAX_BATCH {
            match queued.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let publishes: Vec<LogPublish> = batch.iter().map(|q| q.publish.clone()).collect();
        let answers = log.publish_batch(&publishes).await;
        let mut unreachable: Vec<(Option<Slot>, LogError)> = Vec::new();
        for (queued, answer) in batch.drain(..).zip(answers) {
            if let Err(e @ LogError::Redis(error)) = &answer {
                let group = log.pipeline_of(&queued.publish.room);
                if !matches!(error.kind(), redis::ErrorKind::Server(_))
                    && !unreachable.iter().any(|(g, _)| *g == group)
                {
                    unreachable.push((group, e.clone()));
                }
            }
            let _ = queued.answer.send(answer);
        }
        if unreachable.is_empty() {
            continue;
        }
        // The next batch starts with what is queued for the others.
        while let Ok(next) = queued.try_recv() {
            let group = log.pipeline_of(&next.publish.room);
            match unreachable.iter().find(|(g, _)| *g == group) {
                Some((_, e)) => {
                    let _ = next.answer.send(Err(e.clone()));
                }
                None => batch.push(next),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against a real `redis-server`, started on a free port for each test.

    use super::*;
    use crate::protocol::{encode_value, message_parts};
    use crate::rooms::HistoryLimits;
    use serde_json::json;
    use wshub_testkit::RedisServer;

    fn publish(room: &str, n: u64) -> LogPublish {
        let (prefix, middle) = message_parts(room, "t", 1, 0, &encode_value(&json!(n)));
        LogPublish {
            room: room.to_owned(),
            prefix,
            middle,
            key: None,
            new_epoch: "e1".to_owned(),
        }
    }

    fn limits() -> HistoryLimits {
        HistoryLimits::default()
    }

    fn start_redis() -> RedisServer {
        RedisServer::start(wshub_testkit::Options::default())
    }

    #[tokio::test]
    async fn queued_publishes_get_offsets_in_queue_order() {
        let server = start_redis();
        let log = RedisLog::connect(&server.url(), limits()).await.unwrap();
        let (queue, queued) = PublishQueue::new();
        // Everything is queued before the task runs: it goes out in
        // batches, answered in order.
        let answers: Vec<(&str, PublishAnswer)> = (0..1200u64)
            .map(|n| {
                let room = ["a", "b", "c"][(n % 3) as usize];
                (room, queue.push(publish(room, n)))
            })
            .collect();
        let task = tokio::spawn(run(log, queued));
        let mut next = std::collections::HashMap::new();
        for (room, answer) in answers {
            let logged = answer.await.unwrap().unwrap();
            let expected = next.entry(room).or_insert(1u64);
            assert_eq!(logged.offset, *expected, "room {room}");
            assert_eq!(logged.epoch, "e1");
            *expected += 1;
        }
        drop(queue);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn on_a_cluster_each_slot_gets_its_pipeline() {
        let cluster = wshub_testkit::RedisCluster::start(3);
        let config = crate::engine::RedisConfig::cluster(cluster.urls()).unwrap();
        let target = crate::engine::connection::Target::new(&config).unwrap();
        let log = RedisLog::new(target.command_connection().unwrap(), limits());
        let (queue, queued) = PublishQueue::new();
        // Rooms on different slots (and so, most likely, masters).
        let rooms: Vec<String> = (0..8).map(|n| format!("room-{n}")).collect();
        let answers: Vec<(&String, PublishAnswer)> = (0..400u64)
            .map(|n| {
                let room = &rooms[(n % 8) as usize];
                (room, queue.push(publish(room, n)))
            })
            .collect();
        tokio::spawn(run(log, queued));
        let mut next = std::collections::HashMap::new();
        for (room, answer) in answers {
            let logged = answer.await.unwrap().unwrap();
            let expected = next.entry(room).or_insert(1u64);
            assert_eq!(logged.offset, *expected, "room {room}");
            *expected += 1;
        }
    }

    #[tokio::test]
    async fn the_script_is_loaded_again_when_redis_forgot_it() {
        let server = start_redis();
        let log = RedisLog::connect(&server.url(), limits()).await.unwrap();
        let (queue, queued) = PublishQueue::new();
        tokio::spawn(run(log.clone(), queued));
        assert_eq!(
            queue.push(publish("r", 0)).await.unwrap().unwrap().offset,
            1
        );
        let client = redis::Client::open(server.url()).unwrap();
        let mut direct = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut direct)
            .await
            .unwrap();
        let answers: Vec<PublishAnswer> = (1..5).map(|n| queue.push(publish("r", n))).collect();
        for (answer, offset) in answers.into_iter().zip(2..) {
            assert_eq!(answer.await.unwrap().unwrap().offset, offset);
        }
    }

    #[tokio::test]
    async fn without_redis_every_queued_publish_fails_within_the_timeout() {
        let server = start_redis();
        let url = server.url();
        drop(server);
        let config = crate::engine::RedisConfig::new(&url).unwrap();
        let target = crate::engine::connection::Target::new(&config).unwrap();
        let log = RedisLog::new(target.command_connection().unwrap(), limits());
        let (queue, queued) = PublishQueue::new();
        tokio::spawn(run(log, queued));
        let started = std::time::Instant::now();
        let answers: Vec<PublishAnswer> = (0..50).map(|n| queue.push(publish("r", n))).collect();
        for answer in answers {
            assert!(answer.await.unwrap().is_err());
        }
        let waited = started.elapsed();
        assert!(
            waited < super::super::log::COMMAND_TIMEOUT * 2,
            "answered after {waited:?}"
        );
    }
}
