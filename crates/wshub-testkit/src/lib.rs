//! What wshub's tests start and stop, for the Redis engine above all: real
//! `redis-server` processes and Redis Clusters.
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
//!
//! ```no_run
//! use wshub_testkit::{Options, RedisServer, Reply};
//!
//! let mut redis = RedisServer::start(Options { appendonly: true, ..Options::default() });
//! assert_eq!(redis.command(&["SET", "k", "v"]), Reply::Simple("OK".into()));
//! redis.kill9();
//! redis.restart();
//! assert_eq!(redis.command(&["GET", "k"]), Reply::Bulk(Some(b"v".to_vec())));
//! ```
#![forbid(unsafe_code)]

mod cluster;
mod redis;
mod resp;

pub use cluster::RedisCluster;
pub use redis::{Options, RedisServer};
pub use resp::{ParseError, Reply};
