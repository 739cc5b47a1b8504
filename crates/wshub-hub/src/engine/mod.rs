//! Where a hub keeps rooms' offsets and history beyond its own memory: the
//! Redis engine (docs/design/redis-engine.md), built in slices. This slice
//! is the room log in Redis: the atomic publish (offset, epoch, stream
//! entry, idempotency key, shard-channel publish) and the read a resuming
//! join needs. The node's subscriber and the hub's wiring come next.

// Not yet called by the hub: its tests drive it against a real
// redis-server (tests/redis_log.rs).
#![allow(dead_code)]

pub(crate) mod keys;
pub(crate) mod log;
