//! Where a room lives in Redis: its keys and its shard channel, each with
//! the room's hash tag `{R}`, so that all of a room is on one Redis Cluster
//! slot and its scripts are single-slot (docs/design/redis-engine.md).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

/// Bytes of a room name escaped in its keys: `%` (the escape itself), the
/// braces that delimit a hash tag, and control characters.
const IN_TAG: &AsciiSet = &CONTROLS.add(b'%').add(b'{').add(b'}');

/// Prefix of every key and channel.
const PREFIX: &str = "wshub:{";

/// A room's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoomKeys {
    /// `wshub:{R}:meta`, a hash: `epoch`, `offset`.
    pub(crate) meta: String,
    /// `wshub:{R}:log`, a stream: entry `<offset>-1`, field `m` the frame.
    pub(crate) log: String,
    /// `wshub:{R}`, the shard channel of its live messages and presence
    /// notices.
    pub(crate) channel: String,
    /// `wshub:{R}:presence`, a hash: `<node>:<connection id>` -> name.
    pub(crate) presence: String,
    /// `wshub:{R}:presence:names`, a hash: a unique name -> its holder's
    /// presence field.
    pub(crate) names: String,
    /// `wshub:{R}:presence:expiry`, a sorted set: presence field -> when
    /// it expires (Redis server time, ms).
    pub(crate) expiry: String,
}

impl RoomKeys {
    pub(crate) fn new(room: &str) -> Self {
        let channel = format!("{PREFIX}{}}}", utf8_percent_encode(room, IN_TAG));
        Self {
            meta: format!("{channel}:meta"),
            log: format!("{channel}:log"),
            presence: format!("{channel}:presence"),
            names: format!("{channel}:presence:names"),
            expiry: format!("{channel}:presence:expiry"),
            channel,
        }
    }

    /// `wshub:{R}:key:<key>`: an idempotency key's offset. The key needs no
    /// escaping: the hash tag is the first `{…}`, the room's.
    pub(crate) fn idempotency(&self, key: &str) -> String {
        format!("{}:key:{key}", self.channel)
    }

    /// The room whose channel is `channel`, if it is one.
    pub(crate) fn room_of(channel: &str) -> Option<String> {
        let encoded = channel.strip_prefix(PREFIX)?.strip_suffix('}')?;
        if encoded.contains(['{', '}']) {
            return None;
        }
        percent_decode_str(encoded)
            .decode_utf8()
            .ok()
            .map(|room| room.into_owned())
    }
}

/// A node's own shard channel, `wshub:node:{<id>}`: its subscriber's
/// watchdog publishes to it and expects the echo. Not a room's (theirs
/// start `wshub:{`).
pub(crate) fn node_channel(id: u64) -> String {
    format!("wshub:node:{{{id:016x}}}")
}

/// Candidate `k` of a node's watchdog channels on a Redis Cluster,
/// `wshub:node:{<id>-<k>}`: the subscriber takes, for each master, one
/// whose slot that master owns.
pub(crate) fn node_channel_in_slot(id: u64, k: u32) -> String {
    format!("wshub:node:{{{id:016x}-{k}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_room_has_its_tag_and_braces_cannot_move_it() {
        for room in [
            "lobby",
            "a}b",
            "{x}",
            "50%",
            "a/b c",
            "caf\u{e9}",
            "tab\there",
        ] {
            let keys = RoomKeys::new(room);
            let tag = &keys.channel[PREFIX.len() - 1..];
            for key in [
                &keys.meta,
                &keys.log,
                &keys.presence,
                &keys.names,
                &keys.expiry,
                &keys.idempotency("k}{"),
            ] {
                assert!(key.starts_with(&keys.channel), "{key}");
                // Redis hashes the bytes between the first { and the next }.
                let open = key.find('{').unwrap();
                let close = open + key[open..].find('}').unwrap();
                assert_eq!(&key[open..=close], tag, "{room:?} -> {key}");
            }
            assert_eq!(RoomKeys::room_of(&keys.channel).as_deref(), Some(room));
        }
        assert_ne!(RoomKeys::new("a}b").channel, RoomKeys::new("a").channel);
        assert_eq!(RoomKeys::room_of("wshub:{a}:meta"), None);
        assert_eq!(RoomKeys::room_of("other"), None);
        assert_eq!(RoomKeys::room_of(&node_channel(7)), None);
        assert_eq!(RoomKeys::room_of(&node_channel_in_slot(7, 3)), None);
    }
}
