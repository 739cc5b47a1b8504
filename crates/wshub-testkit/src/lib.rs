//! What wshub's tests start and stop, for the Redis engine above all: real
//! `redis-server` processes, Redis Clusters, and a TCP relay that can stall.
//! A dev-dependency only; plain std threads and sockets, no async runtime, so
//! it serves tokio tests and synchronous ones alike.
//!
//! - [`RedisServer`]: one `redis-server` (Debian's package, which `.ci/run`
//!   installs) on a free port of 127.0.0.1, in a temporary directory, killed
//!   with SIGKILL when dropped; [`RedisServer::kill9`],
//!   [`RedisServer::restart`] (with [`Options::appendonly`], acknowledged
//!   writes come back), [`RedisServer::restart_empty`], and
//!   [`RedisServer::command`] for setup and assertions.
//! - [`RedisCluster`]: N master nodes, every slot assigned,
//!   `cluster_state:ok` on each before it returns.
//! - [`Relay`]: a TCP proxy to put in front of one connection, to
//!   [`Relay::stall`] it (open, silent) or [`Relay::cut`] it.
//!
//! ```no_run
//! use wshub_testkit::{Options, Relay, RedisServer, Reply};
//!
//! let mut redis = RedisServer::start(Options { appendonly: true, ..Options::default() });
//! assert_eq!(redis.command(&["SET", "k", "v"]), Reply::Simple("OK".into()));
//! redis.kill9();
//! redis.restart();
//! assert_eq!(redis.command(&["GET", "k"]), Reply::Bulk(Some(b"v".to_vec())));
//!
//! // A subscriber that connects to `relay.addr()` instead of `redis.addr()`
//! // starves while the relay is stalled; everything else still talks to Redis.
//! let relay = Relay::start(redis.addr());
//! relay.stall();
//! relay.resume();
//! ```
#![forbid(unsafe_code)]

mod cluster;
mod redis;
mod relay;
mod resp;

pub use cluster::RedisCluster;
pub use redis::{Options, RedisServer};
pub use relay::Relay;
pub use resp::{ParseError, Reply};
