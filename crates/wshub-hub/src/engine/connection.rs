//! The engine's connections to Redis, a single server's or a Redis
//! Cluster's behind one type each, so the code that runs scripts and
//! commands does not care which (docs/design/redis-engine.md, "Redis
//! Cluster").
//!
//! - [`EngineConnection`]: the command side (scripts, `SPUBLISH`), a
//!   [`ConnectionLike`] + `Clone`, so `Script::invoke_async` and
//!   `query_async` take it as they take any redis-rs connection. Every
//!   script names keys of one slot (the room's hash tag), so on a cluster
//!   redis-rs routes it to the slot's master and follows `MOVED`.
//! - [`SubscriberConnection`]: the subscriber's RESP3 connection with its
//!   push channel; on a cluster redis-rs keeps one connection per master
//!   and sends each `SSUBSCRIBE` to the master of the channel's slot.

use std::collections::HashMap;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, PushInfo, RedisFuture, Value};
use tokio::sync::mpsc::UnboundedSender;

use super::keys;
use super::log::COMMAND_TIMEOUT;
use super::{EngineError, RedisConfig};

/// Hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// Where the engine's Redis is: how to open its connections.
// One per engine, never moved in a hot path: the variants' sizes don't matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(crate) enum Target {
    /// One server; the subscriber's client may reach it another way
    /// ([`RedisConfig::subscriber_url`]).
    Server {
        client: redis::Client,
        subscriber: redis::Client,
    },
    /// A Redis Cluster, found from its seed nodes.
    Cluster {
        client: ClusterClient,
        subscriber: ClusterClient,
    },
}

impl Target {
    /// The clients for `config` (nothing is connected yet).
    ///
    /// # Errors
    /// If a URL does not parse, or the TLS files are not PEM.
    pub(crate) fn new(config: &RedisConfig) -> Result<Self, EngineError> {
        let tls = config.tls_certificates();
        let open = |url: &str| -> Result<redis::Client, EngineError> {
            match &tls {
                Some(certs) if url.starts_with("rediss://") => {
                    redis::Client::build_with_tls(url, certs.clone())
                }
                _ => redis::Client::open(url),
            }
            .map_err(|e| EngineError(e.to_string()))
        };
        if config.cluster_seeds.is_empty() {
            let subscriber_url = config.subscriber_url.as_deref().unwrap_or(&config.url);
            // The subscriber's pushes need RESP3.
            let separator = if subscriber_url.contains('?') {
                '&'
            } else {
                '?'
            };
            Ok(Self::Server {
                client: open(&config.url)?,
                subscriber: open(&format!("{subscriber_url}{separator}protocol=resp3"))?,
            })
        } else {
            let builder = || {
                let mut builder = ClusterClientBuilder::new(config.cluster_seeds.iter().cloned())
                    .connection_timeout(COMMAND_TIMEOUT)
                    .response_timeout(COMMAND_TIMEOUT)
                    // Retries, redirections and reconnections included: a
                    // publish fails within the timeout, as on one server.
                    .overall_response_timeout(Some(COMMAND_TIMEOUT));
                if let Some(certs) = &tls {
                    builder = builder.certs(certs.clone());
                }
                builder
            };
            let built = |b: ClusterClientBuilder| b.build().map_err(|e| EngineError(e.to_string()));
            Ok(Self::Cluster {
                client: built(builder())?,
                subscriber: built(builder().use_protocol(redis::ProtocolVersion::RESP3))?,
            })
        }
    }

    /// The command connection, connecting at its first command (and again
    /// after a failure).
    pub(crate) fn command_connection(&self) -> Result<EngineConnection, EngineError> {
        match self {
            Self::Server { client, .. } => {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(COMMAND_TIMEOUT))
                    .set_connection_timeout(Some(COMMAND_TIMEOUT))
                    // One retry: the command waiting on a (re)connection
                    // gets its error (a refused port, a certificate that
                    // does not verify) at once; the next command tries
                    // again.
                    .set_number_of_retries(1);
                let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map_err(|e| EngineError(e.to_string()))?;
                Ok(EngineConnection::Server(conn))
            }
            Self::Cluster { client, .. } => Ok(EngineConnection::Cluster(
                client.get_pending_async_connection_with_config(ClusterConfig::new()),
            )),
        }
    }

    /// A new subscriber connection whose pushes (messages, subscription
    /// confirmations, disconnections) go to `pushes`.
    ///
    /// # Errors
    /// If Redis (a cluster's seed nodes) cannot be reached in time.
    pub(crate) async fn subscriber_connection(
        &self,
        pushes: UnboundedSender<PushInfo>,
    ) -> redis::RedisResult<SubscriberConnection> {
        match self {
            Self::Server { subscriber, .. } => {
                let config = AsyncConnectionConfig::new()
                    .set_push_sender(pushes)
                    .set_response_timeout(Some(COMMAND_TIMEOUT))
                    .set_connection_timeout(Some(COMMAND_TIMEOUT));
                let conn = subscriber
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(SubscriberConnection::Server(conn))
            }
            Self::Cluster { subscriber, .. } => {
                let config = ClusterConfig::new()
                    .set_push_sender(pushes)
                    .set_connection_timeout(COMMAND_TIMEOUT)
                    .set_response_timeout(COMMAND_TIMEOUT);
                let conn = subscriber.get_async_connection_with_config(config).await?;
                Ok(SubscriberConnection::Cluster(conn))
            }
        }
    }
}

/// The engine's command connection: scripts and `SPUBLISH`, to one server
/// or routed by slot through a cluster. Both kinds reconnect by
/// themselves and time out after [`COMMAND_TIMEOUT`].
#[derive(Clone)]
pub(crate) enum EngineConnection {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl EngineConnection {
    /// Which pipeline a command on `key` may share: one for all of a
    /// single server's commands; on a cluster, the key's hash slot, as
    /// redis-rs sends a pipeline to one slot's master only.
    pub(crate) fn pipeline_of(&self, key: &str) -> Option<Slot> {
        match self {
            Self::Server(_) => None,
            Self::Cluster(_) => Some(Slot::for_key(key)),
        }
    }
}

impl ConnectionLike for EngineConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            // The manager's own timeouts are per attempt: the command is
            // bounded as a whole too, as the cluster's
            // `overall_response_timeout` does.
            Self::Server(conn) => Box::pin(async move {
                tokio::time::timeout(COMMAND_TIMEOUT, conn.req_packed_command(cmd))
                    .await
                    .unwrap_or_else(|_| Err(no_answer()))
            }),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Server(conn) => Box::pin(async move {
                tokio::time::timeout(
                    COMMAND_TIMEOUT,
                    conn.req_packed_commands(pipeline, offset, count),
                )
                .await
                .unwrap_or_else(|_| Err(no_answer()))
            }),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// A command that got no answer within [`COMMAND_TIMEOUT`], connecting
/// included.
fn no_answer() -> redis::RedisError {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer from Redis within {COMMAND_TIMEOUT:?}"),
    )
    .into()
}

/// The subscriber's connection: one to a server, or redis-rs' cluster
/// connection (one per master, each `SSUBSCRIBE` sent to the master of
/// the channel's slot, resubscribed after redis-rs reconnects a node).
pub(crate) enum SubscriberConnection {
    Server(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl SubscriberConnection {
    /// `SSUBSCRIBE channel`; the confirmation comes as a push.
    pub(crate) async fn ssubscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Self::Server(conn) => redis::cmd("SSUBSCRIBE").arg(channel).exec_async(conn).await,
            Self::Cluster(conn) => conn.ssubscribe(channel).await,
        }
    }

    /// `SUNSUBSCRIBE channel` on a cluster; returns whether the channel
    /// was unsubscribed. On one server nothing is sent and the channel
    /// stays subscribed (`false`): redis-rs 1.8 does not take a raw
    /// `SUNSUBSCRIBE`'s confirmation (a push) for its answer (redis-rs
    /// issue #2533), so the command would time out and cost the connection
    /// and 2 s of every room's deliveries. Messages of a room not held
    /// here are dropped on arrival.
    pub(crate) async fn sunsubscribe(&mut self, channel: &str) -> redis::RedisResult<bool> {
        match self {
            Self::Server(_) => Ok(false),
            Self::Cluster(conn) => conn.sunsubscribe(channel).await.map(|()| true),
        }
    }

    /// The shard channels the watchdog of node `node_id` publishes to so
    /// that every connection this subscriber holds is watched: on one
    /// server its one channel; on a cluster one per master, each with a
    /// hash tag of a slot that master owns (from `CLUSTER SLOTS`).
    ///
    /// # Errors
    /// If `CLUSTER SLOTS` fails or its answer is not understood.
    pub(crate) async fn watchdog_channels(
        &mut self,
        node_id: u64,
    ) -> redis::RedisResult<Vec<String>> {
        match self {
            Self::Server(_) => Ok(vec![keys::node_channel(node_id)]),
            Self::Cluster(conn) => {
                let slots: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
                let masters = masters_by_slot(&slots).ok_or_else(|| {
                    redis::RedisError::from((
                        redis::ErrorKind::Parse,
                        "CLUSTER SLOTS answered something else than slot ranges",
                    ))
                })?;
                Ok(channels_per_master(node_id, &masters))
            }
        }
    }
}

/// The platform's root certificates as one PEM bundle (those it cannot
/// read are left out, as rustls-native-certs reports them).
pub(crate) fn platform_roots_pem() -> Vec<u8> {
    use base64::Engine as _;
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "Redis engine: a platform root certificate cannot be read");
    }
    let mut pem = String::new();
    for cert in found.certs {
        let body = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem.into_bytes()
}

/// The certificates in `pem`.
///
/// # Errors
/// If one does not parse, or there is none.
pub(crate) fn parse_certificates(pem: &[u8]) -> Result<usize, String> {
    use rustls_pki_types::pem::PemObject as _;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file ({e})"))?;
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    Ok(certs.len())
}

/// Checks that `pem` holds a private key.
///
/// # Errors
/// If it does not, or it does not parse.
pub(crate) fn parse_private_key(pem: &[u8]) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject as _;
    rustls_pki_types::PrivateKeyDer::from_pem_slice(pem)
        .map(drop)
        .map_err(|e| format!("no PEM private key (PKCS#8, PKCS#1 or SEC1) in it ({e})"))
}

/// Each slot's master (`host:port`), from a `CLUSTER SLOTS` answer:
/// `[[first, last, [host, port, id, …], replica…], …]`.
fn masters_by_slot(answer: &Value) -> Option<HashMap<Slot, String>> {
    let Value::Array(ranges) = answer else {
        return None;
    };
    let mut masters = HashMap::new();
    for range in ranges {
        let Value::Array(range) = range else {
            return None;
        };
        let (first, last) = match (range.first()?, range.get(1)?) {
            (Value::Int(first), Value::Int(last)) => (*first, *last),
            _ => return None,
        };
        let Value::Array(master) = range.get(2)? else {
            return None;
        };
        let host: String = redis::from_redis_value(master.first()?.clone()).ok()?;
        let port: i64 = redis::from_redis_value(master.get(1)?.clone()).ok()?;
        let address = format!("{host}:{port}");
        for n in first..=last {
            let slot = Slot::new(u16::try_from(n).ok()?)?;
            masters.insert(slot, address.clone());
        }
    }
    Some(masters)
}

/// For every master among `masters`, node `node_id`'s watchdog channel
/// whose slot that master owns: the first of `wshub:node:{<id>-<k>}`,
/// k = 0, 1, …, that lands there (redis-rs computes the slot), in the order
/// of the masters' addresses.
fn channels_per_master(node_id: u64, masters: &HashMap<Slot, String>) -> Vec<String> {
    let mut wanted: Vec<&String> = masters.values().collect();
    wanted.sort();
    wanted.dedup();
    let mut found: HashMap<&String, String> = HashMap::new();
    // Each candidate lands on a slot at random; with every slot assigned a
    // master with s slots is hit within a few hundred tries for any s
    // above ~100, and the loop is bounded.
    for k in 0..u32::from(SLOTS) * 16 {
        if found.len() == wanted.len() {
            break;
        }
        let channel = keys::node_channel_in_slot(node_id, k);
        if let Some(master) = masters.get(&Slot::for_key(&channel)) {
            found.entry(master).or_insert(channel);
        }
    }
    wanted
        .into_iter()
        .filter_map(|master| found.remove(master))
        .collect()
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Server { .. } => "Target::Server",
            Self::Cluster { .. } => "Target::Cluster",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots_answer(ranges: &[(i64, i64, &str, i64)]) -> Value {
        Value::Array(
            ranges
                .iter()
                .map(|(first, last, host, port)| {
                    Value::Array(vec![
                        Value::Int(*first),
                        Value::Int(*last),
                        Value::Array(vec![
                            Value::BulkString(host.as_bytes().to_vec()),
                            Value::Int(*port),
                            Value::BulkString(b"id".to_vec()),
                        ]),
                    ])
                })
                .collect(),
        )
    }

    #[test]
    fn every_master_gets_a_watchdog_channel_in_one_of_its_slots() {
        // A master with one slot only is found too.
        let answer = slots_answer(&[
            (0, 5460, "10.0.0.1", 7000),
            (5461, 10922, "10.0.0.2", 7001),
            (10923, 16382, "10.0.0.3", 7002),
            (16383, 16383, "10.0.0.4", 7003),
        ]);
        let masters = masters_by_slot(&answer).unwrap();
        assert_eq!(masters.len(), 16384);
        let channels = channels_per_master(7, &masters);
        assert_eq!(channels.len(), 4, "{channels:?}");
        let owners: Vec<&str> = channels
            .iter()
            .map(|c| masters[&Slot::for_key(c)].as_str())
            .collect();
        assert_eq!(
            owners,
            [
                "10.0.0.1:7000",
                "10.0.0.2:7001",
                "10.0.0.3:7002",
                "10.0.0.4:7003"
            ]
        );
        for channel in &channels {
            assert_eq!(keys::RoomKeys::room_of(channel), None, "not a room's");
        }
        assert_eq!(masters_by_slot(&Value::Int(1)), None);
    }
}
