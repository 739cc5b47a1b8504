//! Who is in a room on every node (docs/design/redis-engine.md,
//! "Presence"): an entry per member in Redis, renewed by its node every
//! third of the presence ttl, so the entries of a node that died expire;
//! join and leave notices go to the other nodes on the room's shard
//! channel, marked with the node they come from (a node has told its own
//! members already).

use std::time::Duration;

use redis::Script;

use super::keys::RoomKeys;
use super::log::{LogError, RedisLog};

/// Most members one `refresh` call renews: a crowd in one room is renewed
/// in several calls, none holding Redis for long.
const REFRESH_BATCH: usize = 1_000;

/// The first byte of a presence notice on a room's channel (a message's is
/// `{`): `P`, the sending node's id (16 hex digits), then the notice's JSON
/// as members get it.
const NOTICE_MARK: char = 'P';

/// A node's id in its presence fields and notices: 16 hex digits.
const NODE_ID_LEN: usize = 16;

/// What a presence script did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// `join`: another member of the room holds the name (nothing changed).
    pub(crate) taken: bool,
    /// `join`: the member had no entry (not a rename); `leave`: it had one.
    pub(crate) changed: bool,
    /// Members in the room, on every node.
    pub(crate) count: usize,
    /// `join`, `list`: up to 100 of their names, unsorted; `refresh`: the
    /// names of this node's members it put back (lost by Redis, or expired
    /// while this node could not renew them): the caller announces them.
    pub(crate) listed: Vec<String>,
    /// Members of nodes that stopped renewing them, removed now: the
    /// caller announces their leaving.
    pub(crate) expired: Vec<String>,
}

/// A node's presence in Redis.
#[derive(Debug)]
pub(crate) struct Presence {
    script: Script,
    /// This node's id, 16 hex digits.
    node: String,
    /// How long an entry outlives its last renewal.
    ttl: Duration,
    /// Above this many members a room goes quiet about presence.
    limit: usize,
}

impl Presence {
    pub(crate) fn new(node: u64, ttl: Duration, limit: usize) -> Self {
        Self {
            script: Script::new(include_str!("presence.lua")),
            node: format!("{node:016x}"),
            ttl,
            limit,
        }
    }

    /// How often the node renews its entries.
    pub(crate) fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// The most members a room may have for notices to be sent.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Connection `id`'s field: `<node>:<id>`.
    fn field(&self, id: u64) -> String {
        format!("{}:{id}", self.node)
    }

    /// `notice` (a `presence` frame's JSON) as published on a channel.
    fn marked(&self, notice: &str) -> String {
        format!("{NOTICE_MARK}{}{notice}", self.node)
    }

    /// The presence notice in a channel's `payload`, unless it is not one
    /// (`None`) or this node sent it (`Some(None)`: its members were told).
    pub(crate) fn notice_of<'a>(&self, payload: &'a str) -> Option<Option<&'a str>> {
        let rest = payload.strip_prefix(NOTICE_MARK)?;
        let node = rest.get(..NODE_ID_LEN)?;
        let notice = rest.get(NODE_ID_LEN..)?;
        Some((node != self.node).then_some(notice))
    }

    fn call(&self, room: &str, op: &str) -> (redis::ScriptInvocation<'_>, RoomKeys) {
        let keys = RoomKeys::new(room);
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(&keys.presence)
            .key(&keys.names)
            .key(&keys.expiry)
            .arg(op)
            .arg(self.ttl.as_millis().max(1) as u64)
            .arg(&keys.channel);
        (invocation, keys)
    }

    async fn run(
        &self,
        log: &RedisLog,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<Answer, LogError> {
        let (status, count, listed, expired): (u8, usize, Vec<String>, Vec<String>) =
            log.invoke(invocation).await?;
        Ok(Answer {
            taken: status == 0,
            changed: status == 2,
            count,
            listed,
            expired,
        })
    }

    /// Enters connection `id` into `room` as `name` (held by no other
    /// member, if `unique`), and publishes `notice` to the other nodes if
    /// the entry is new and the room small enough.
    pub(crate) async fn join(
        &self,
        log: &RedisLog,
        room: &str,
        id: u64,
        name: &str,
        unique: bool,
        notice: &str,
    ) -> Result<Answer, LogError> {
        let (mut invocation, _) = self.call(room, "join");
        invocation
            .arg(self.field(id))
            .arg(name)
            .arg(if unique { "1" } else { "0" })
            .arg(self.limit)
            .arg(self.marked(notice));
        self.run(log, &invocation).await
    }

    /// Removes connection `id` from `room`, and publishes `notice` to the
    /// other nodes if it was there and the room is small enough.
    pub(crate) async fn leave(
        &self,
        log: &RedisLog,
        room: &str,
        id: u64,
        notice: &str,
    ) -> Result<Answer, LogError> {
        let (mut invocation, _) = self.call(room, "leave");
        invocation
            .arg(self.field(id))
            .arg(self.limit)
            .arg(self.marked(notice));
        self.run(log, &invocation).await
    }

    /// Renews (or puts back) the entries of this node's `members` of
    /// `room`: (connection id, name, unique); removes those of dead nodes.
    pub(crate) async fn refresh(
        &self,
        log: &RedisLog,
        room: &str,
        members: &[(u64, String, bool)],
    ) -> Result<Answer, LogError> {
        let mut answer: Option<Answer> = None;
        // An empty room is still looked at, for its dead nodes' entries.
        let batches = members.chunks(REFRESH_BATCH);
        let batches: Vec<_> = if members.is_empty() {
            vec![members]
        } else {
            batches.collect()
        };
        for batch in batches {
            let (mut invocation, _) = self.call(room, "refresh");
            for (id, name, unique) in batch {
                invocation
                    .arg(self.field(*id))
                    .arg(name)
                    .arg(if *unique { "1" } else { "0" });
            }
            let done = self.run(log, &invocation).await?;
            match &mut answer {
                None => answer = Some(done),
                Some(answer) => {
                    answer.count = done.count;
                    answer.listed.extend(done.listed);
                    answer.expired.extend(done.expired);
                }
            }
        }
        Ok(answer.expect("at least one batch"))
    }

    /// Publishes `notice` to the other nodes' members of `room`.
    pub(crate) async fn announce(
        &self,
        log: &RedisLog,
        room: &str,
        notice: &str,
    ) -> Result<(), LogError> {
        log.spublish(&RoomKeys::new(room).channel, &self.marked(notice))
            .await
    }

    /// `room`'s member count and up to 100 names.
    pub(crate) async fn list(&self, log: &RedisLog, room: &str) -> Result<Answer, LogError> {
        let (invocation, _) = self.call(room, "list");
        self.run(log, &invocation).await
    }
}

#[cfg(test)]
mod tests {
    //! Against a real `redis-server`, started on a free port for each test.

    use super::*;
    use crate::rooms::HistoryLimits;

    use wshub_testkit::RedisServer as Server;

    async fn log(server: &Server) -> RedisLog {
        RedisLog::connect(&server.url(), HistoryLimits::default())
            .await
            .unwrap()
    }

    fn sorted(mut names: Vec<String>) -> Vec<String> {
        names.sort();
        names
    }

    #[tokio::test]
    async fn members_of_two_nodes_are_one_room_a_name_is_held_on_its_node_and_taken_over_from_another(
    ) {
        let server = Server::start(wshub_testkit::Options::default());
        let log = log(&server).await;
        let a = Presence::new(1, Duration::from_secs(30), 100);
        let b = Presence::new(2, Duration::from_secs(30), 100);
        let joined = a.join(&log, "r", 7, "ann", true, "{}").await.unwrap();
        assert!(joined.changed && !joined.taken);
        assert_eq!((joined.count, joined.listed), (1, vec!["ann".to_owned()]));
        // Connection 7 of the other node is another member.
        let joined = b.join(&log, "r", 7, "bob", true, "{}").await.unwrap();
        assert_eq!(joined.count, 2);
        assert_eq!(sorted(joined.listed), ["ann", "bob"]);
        // On its own node a name is held.
        let taken = a.join(&log, "r", 8, "ann", true, "{}").await.unwrap();
        assert!(taken.taken);
        assert_eq!(taken.count, 2, "nothing changed");
        // From another node, it is taken over (its holder's node may have
        // died): the old entry goes, the name stays listed once.
        let over = b.join(&log, "r", 8, "ann", true, "{}").await.unwrap();
        assert!(!over.taken && over.changed);
        assert_eq!(
            (over.count, sorted(over.listed)),
            (2, vec!["ann".to_owned(), "bob".to_owned()])
        );
        let gone = a.leave(&log, "r", 7, "{}").await.unwrap();
        assert!(!gone.changed, "the old entry went with the takeover");
        // Names from tokens are not unique: a user on two connections.
        let twice = b.join(&log, "r", 9, "ann", false, "{}").await.unwrap();
        assert!(!twice.taken);
        assert_eq!(twice.count, 3);
        // A rename frees the old name.
        let renamed = b.join(&log, "r", 8, "anna", true, "{}").await.unwrap();
        assert!(!renamed.changed && !renamed.taken);
        let reuse = b.join(&log, "r", 10, "ann", true, "{}").await.unwrap();
        assert!(!reuse.taken, "ann was let go of by the rename");
        assert_eq!(
            sorted(a.list(&log, "r").await.unwrap().listed),
            ["ann", "ann", "anna", "bob"]
        );
    }

    #[tokio::test]
    async fn a_dead_nodes_entries_expire_and_are_reported_once() {
        let server = Server::start(wshub_testkit::Options::default());
        let log = log(&server).await;
        let ttl = Duration::from_millis(300);
        let dead = Presence::new(1, ttl, 100);
        let alive = Presence::new(2, ttl, 100);
        dead.join(&log, "r", 1, "ghost", true, "{}").await.unwrap();
        alive.join(&log, "r", 1, "ann", true, "{}").await.unwrap();
        for _ in 0..4 {
            tokio::time::sleep(ttl / 3).await;
            let renewed = alive
                .refresh(&log, "r", &[(1, "ann".to_owned(), true)])
                .await
                .unwrap();
            if !renewed.expired.is_empty() {
                assert_eq!(renewed.expired, ["ghost"]);
                assert_eq!(renewed.count, 1);
                break;
            }
        }
        let list = alive.list(&log, "r").await.unwrap();
        assert_eq!((list.count, list.listed), (1, vec!["ann".to_owned()]));
        assert!(list.expired.is_empty(), "reported once");
        // The name of a dead member is free again.
        let joined = alive.join(&log, "r", 2, "ghost", true, "{}").await.unwrap();
        assert!(!joined.taken);
    }

    #[tokio::test]
    async fn a_refresh_puts_back_what_a_restart_lost_and_big_rooms_are_listed_in_part() {
        let server = Server::start(wshub_testkit::Options::default());
        let log = log(&server).await;
        let node = Presence::new(1, Duration::from_secs(30), 100);
        let members: Vec<(u64, String, bool)> =
            (0..2_500).map(|i| (i, format!("m{i}"), true)).collect();
        let renewed = node.refresh(&log, "r", &members).await.unwrap();
        assert_eq!((renewed.count, renewed.listed.len()), (2_500, 2_500));
        let again = node.refresh(&log, "r", &members).await.unwrap();
        assert!(again.listed.is_empty(), "renewed, none put back");
        let list = node.list(&log, "r").await.unwrap();
        assert_eq!((list.count, list.listed.len()), (2_500, 100));
        let taken = node
            .join(&log, "r", 9_999, "m42", true, "{}")
            .await
            .unwrap();
        assert!(taken.taken, "refreshed unique names are held");
    }

    #[tokio::test]
    async fn notices_go_on_the_channel_marked_with_their_node_and_only_for_small_rooms() {
        let server = Server::start(wshub_testkit::Options::default());
        let log = log(&server).await;
        let a = Presence::new(0xa, Duration::from_secs(30), 2);
        let b = Presence::new(0xb, Duration::from_secs(30), 2);
        let client = redis::Client::open(format!("{}?protocol=resp3", server.url())).unwrap();
        let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
        let config = redis::AsyncConnectionConfig::new().set_push_sender(tx);
        let mut sub = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap();
        let channel = RoomKeys::new("r").channel;
        redis::cmd("SSUBSCRIBE")
            .arg(&channel)
            .exec_async(&mut sub)
            .await
            .unwrap();
        let mut notices = Vec::new();
        for (id, name) in [(1, "x"), (2, "y"), (3, "z")] {
            a.join(&log, "r", id, name, true, &format!("join {name}"))
                .await
                .unwrap();
        }
        a.leave(&log, "r", 3, "leave z").await.unwrap();
        a.leave(&log, "r", 2, "leave y").await.unwrap();
        a.join(&log, "r", 1, "x", true, "not fresh").await.unwrap();
        // A marker on the node's own channel: everything before it is in.
        log.spublish(&channel, "end").await.unwrap();
        loop {
            let push = pushes.recv().await.unwrap();
            if push.kind != redis::PushKind::SMessage {
                continue;
            }
            let (_, payload): (String, String) =
                redis::from_redis_value(redis::Value::Array(push.data)).unwrap();
            if payload == "end" {
                break;
            }
            assert_eq!(a.notice_of(&payload), Some(None), "a's own: skipped by a");
            notices.push(b.notice_of(&payload).unwrap().unwrap().to_owned());
        }
        // The third join makes 3 members, over the limit of 2; the first
        // leave leaves 2, not under it.
        assert_eq!(notices, ["join x", "join y", "leave y"]);
        assert_eq!(b.notice_of("{\"type\":\"message\"}"), None);
    }
}
