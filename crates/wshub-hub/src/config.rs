//! [`HubConfig`]: the hub's own settings around the [`WebSocketConfig`] of
//! its `/ws` and `/echo` connections.

use std::net::SocketAddr;
use std::time::Duration;

use wshub::{OriginPolicy, ProtocolConfig, WebSocketConfig};

use crate::member::{MemberLimits, RateLimit};
use crate::rooms::{HistoryLimits, SendQueue};
use crate::{AdmissionConfig, ApiKey, AuthConfig, RedisConfig, ServerTls};

/// Settings of a hub server. Every field has a documented default that works
/// with no other server installed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HubConfig {
    /// Every `/ws` and `/echo` connection's settings, handshake included
    /// ([`WebSocketConfig::handshake_timeout`] bounds the wait for any
    /// request head, plain HTTP too). Default: [`WebSocketConfig::default`]
    /// with two changes for a public hub, both set in
    /// [`HubConfig::default`]:
    /// - [`WebSocketConfig::ping_interval`]: a protocol Ping every 25 s
    ///   (RFC 6455 §5.5.2; the library sends none), below the 60 s idle
    ///   timeout of common proxies, so quiet members are not cut off and
    ///   dead ones are found;
    /// - [`ProtocolConfig::max_message_size`]: 16 MiB rather than 64 MiB
    ///   (1009 beyond), since the hub holds every message it relays; enough
    ///   for Autobahn case 9 on `/echo`. `/ws` takes
    ///   [`HubConfig::max_hub_message_size`] instead.
    ///
    /// permessage-deflate ([`WebSocketConfig::compression`]) stays off by
    /// default. With [`DeflateConfig::server`](wshub::DeflateConfig::server)
    /// (no context takeover either way) an idle connection holds no
    /// compression state, and a message published to a room is compressed
    /// once for every member that negotiated the same parameters.
    pub websocket: WebSocketConfig,
    /// Frames queued for one `/ws` member before it is disconnected as a
    /// slow consumer (close 1008, docs/protocol.md "Slow consumers"); this
    /// bounds the queue's own memory when messages are tiny, beside
    /// [`HubConfig::send_queue_bytes`]. Default: 1024.
    pub send_queue: usize,
    /// Bytes queued for one `/ws` member (frames as written on the wire, a
    /// room's shared frame counted in full for each member holding it)
    /// before it is disconnected as a slow consumer (close 1008). Default:
    /// 1 MiB.
    pub send_queue_bytes: usize,
    /// How long a `/ws` member's socket may stay blocked (taking less than
    /// 16 KiB of the bytes the hub has for it, and not all of them) before
    /// the member is disconnected as a slow consumer (close 1008). A member
    /// that reads at least 16 KiB per timeout is bounded by the send queue
    /// instead. Default: 10 s.
    pub write_timeout: Duration,
    /// Rooms one `/ws` connection may be in at once; a `join` of one more is
    /// answered with an `error` of code `too_many_rooms`. Default: 100.
    pub max_rooms_per_member: usize,
    /// Messages per second a `/ws` client may send on average (a token
    /// bucket; docs/protocol.md, "Limits"); one over is ignored and answered
    /// with an `error` of code `rate_limited`. Default: 100.
    pub message_rate: u32,
    /// Messages a `/ws` client may send at once above
    /// [`HubConfig::message_rate`] (the bucket's size). Default: 200.
    pub message_burst: u32,
    /// How long a `/ws` client may stay over its message rate (from its
    /// first `rate_limited` answer, without letting the bucket fill up again
    /// in between) before it is closed with 1008. Default: 10 s.
    pub rate_limit_grace: Duration,
    /// Largest message a `/ws` client may send, in bytes; a bigger one
    /// closes the connection with 1009 (RFC 6455 §7.4.1). Requests are
    /// small, and every published message is held once per member queue it
    /// waits in. `/echo` keeps [`ProtocolConfig::max_message_size`] of
    /// [`HubConfig::websocket`]. Default: 64 KiB.
    pub max_hub_message_size: usize,
    /// Rooms send join and leave notices while they have at most this many
    /// members; bigger rooms stay quiet about presence (a notice per member per
    /// join would cost the square of a crowd's size). Default: 100, the most
    /// members a `joined` answer lists, so a room either shows its members
    /// and their comings and goings or only counts them.
    pub presence_limit: usize,
    /// Messages each room keeps in its history, for members that reconnect
    /// to resume from (a `join` with `since`; docs/protocol.md, "History
    /// and resume"); the oldest is dropped first. A room without members is
    /// kept while its history lasts, so its offsets go on. Each message is
    /// the frame the fan-out sent, shared, so a room holds at most this many
    /// times [`HubConfig::max_hub_message_size`] (plus the envelope) for its
    /// history. 0 keeps none: resuming then works only for a client that
    /// missed nothing. Default: 1000.
    pub history_size: usize,
    /// How long a room keeps a message in its history; a room without
    /// members is freed once its last message is this old. Zero keeps none,
    /// like [`HubConfig::history_size`] 0. Default: 10 minutes.
    pub history_ttl: Duration,
    /// Most messages one `join` with `since` is sent from the history: a
    /// client that missed more is answered `recovered: false`, gets none of
    /// them, and must reload the room's state another way. Default: 300.
    pub history_max_replay: usize,
    /// Most bytes of messages each room keeps in its history (frames as
    /// sent, uncompressed), the oldest dropped first, beside
    /// [`HubConfig::history_size`]; the newest message is kept whatever its
    /// size. Bounds a room's history memory when messages are big: 1000
    /// messages of 64 KiB would be 64 MiB. The number of rooms is not
    /// bounded here (each member joins at most
    /// [`HubConfig::max_rooms_per_member`]). Default: 4 MiB.
    pub history_bytes: usize,
    /// On shutdown, time [`serve`](crate::serve) waits for connections to
    /// be closed (in batches, [`HubConfig::drain_spread`]) and finish their
    /// close handshake before it returns (`wshub serve` then exits,
    /// dropping the rest). Default: 5 s.
    pub shutdown_timeout: Duration,
    /// Limits on the connections taken on: in all, per client address, and
    /// handshakes per second per client address, each answered 503 with
    /// `Retry-After` before the upgrade; and the proxies whose
    /// `X-Forwarded-For` names the client. Default:
    /// [`AdmissionConfig::default`], every limit off (`wshub serve` turns
    /// them on, see [`AdmissionConfig::recommended`]).
    pub admission: AdmissionConfig,
    /// Whether `/echo` is served; off, it is answered 404 like any unknown
    /// path. Default: on.
    pub echo: bool,
    /// Which pages may open `/ws` and `/echo` from a browser (cross-site
    /// WebSocket hijacking, RFC 6455 §10.2): a handshake whose `Origin` is
    /// refused is answered `403 Forbidden` before the upgrade. Default:
    /// [`OriginPolicy::default`], requests without `Origin` and those from
    /// a page of the hub's own host and port (as the request's `Host` names
    /// it), which includes the chat page it serves.
    pub origin: OriginPolicy,
    /// Where `GET /metrics` (Prometheus text format; docs/protocol.md,
    /// "Metrics") is served. Default: [`MetricsEndpoint::Off`], since
    /// traffic figures are not for every visitor of a public hub.
    pub metrics: MetricsEndpoint,
    /// On shutdown, open connections are closed with 1001 in
    /// [`HubConfig::drain_batches`] batches spread over this time, so that
    /// the clients' reconnects spread out rather than arrive at once at the
    /// other nodes; what remains of [`HubConfig::shutdown_timeout`] after
    /// it is left for the close handshakes. Default: half the shutdown
    /// timeout, 2.5 s; zero closes them all at once. Capped at half the
    /// shutdown timeout.
    pub drain_spread: Duration,
    /// Batches of [`HubConfig::drain_spread`], at least 1; a connection's
    /// batch is its id modulo this. Default: 10.
    pub drain_batches: u32,
    /// Token authentication (docs/protocol.md, "Authentication"). Default:
    /// [`AuthConfig::default`], no tokens taken, every member anonymous.
    pub auth: AuthConfig,
    /// TLS: with `Some`, every connection to the listener starts with a TLS
    /// handshake, so the hub serves `https://` and `wss://` (and nothing in
    /// plain text: a plain HTTP request is dropped once the handshake fails
    /// on it). The handshake shares one deadline with the request head,
    /// [`WebSocketConfig::handshake_timeout`] of [`HubConfig::websocket`]
    /// counted from the accept; a handshake that fails or runs out of time
    /// is dropped without an answer (logged at debug). Keep a clone of the
    /// [`ServerTls`] to replace the certificate while the hub runs. An idle
    /// TLS connection holds about 11 KiB of memory against 2.3 KiB without
    /// (rustls keeps a 4 KiB read buffer and its session state; measured
    /// with `wshub bench idle`, 5,000 connections). Default: `None`, plain
    /// `http://` and `ws://`.
    pub tls: Option<ServerTls>,
    /// The HTTP API's key (docs/protocol.md, "HTTP API"): with `Some`,
    /// `/api/publish` and `/api/rooms/…` answer requests that carry it as
    /// `Authorization: Bearer <key>` (401 otherwise). Default: `None`, the
    /// API off (404).
    pub api_key: Option<ApiKey>,
    /// The Redis engine (docs/design/redis-engine.md): with `Some`, rooms'
    /// offsets and history are kept in Redis, and every hub node on the
    /// same Redis serves the same rooms (a message published on one
    /// reaches the members on all, in the same order, under the same
    /// offsets). Default: `None`, the in-memory engine of one process.
    pub redis: Option<RedisConfig>,
}

/// Where [`HubConfig::metrics`] serves `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MetricsEndpoint {
    /// Not served (404).
    #[default]
    Off,
    /// On the hub's own listener, beside `/healthz` and `/readyz`.
    Main,
    /// On a listener of its own at this address (with `/healthz` and
    /// `/readyz`; anything else 404), bound by [`serve`](crate::serve); the
    /// hub's listener answers `/metrics` 404. For an address only the
    /// monitoring network reaches.
    Listen(SocketAddr),
}

impl Default for HubConfig {
    fn default() -> Self {
        // Only where the hub differs from the library; why is on the field.
        let protocol = ProtocolConfig::default().max_message_size(16 << 20);
        let websocket = WebSocketConfig::default()
            .ping_interval(Some(Duration::from_secs(25)))
            .protocol(protocol);
        Self {
            websocket,
            send_queue: 1024,
            send_queue_bytes: 1 << 20,
            write_timeout: Duration::from_secs(10),
            max_rooms_per_member: 100,
            message_rate: 100,
            message_burst: 200,
            rate_limit_grace: Duration::from_secs(10),
            max_hub_message_size: 64 << 10,
            presence_limit: crate::rooms::DEFAULT_PRESENCE_LIMIT,
            history_size: HistoryLimits::default().size,
            history_ttl: HistoryLimits::default().ttl,
            history_max_replay: HistoryLimits::default().max_replay,
            history_bytes: HistoryLimits::default().bytes,
            shutdown_timeout: Duration::from_secs(5),
            admission: AdmissionConfig::default(),
            echo: true,
            origin: OriginPolicy::default(),
            metrics: MetricsEndpoint::Off,
            drain_spread: Duration::from_millis(2500),
            drain_batches: 10,
            auth: AuthConfig::default(),
            tls: None,
            api_key: None,
            redis: None,
        }
    }
}

impl HubConfig {
    /// What each `/ws` member's session needs of this config.
    pub(crate) fn member_limits(&self) -> MemberLimits {
        MemberLimits {
            send_queue: SendQueue::new(self.send_queue, self.send_queue_bytes),
            write_timeout: self.write_timeout,
            write_buffer_limit: self.websocket.write_buffer_limit,
            max_rooms: self.max_rooms_per_member,
            rate: RateLimit::new(self.message_rate, self.message_burst, self.rate_limit_grace),
        }
    }

    /// What each room keeps of its past.
    pub(crate) fn history(&self) -> HistoryLimits {
        HistoryLimits {
            size: self.history_size,
            ttl: self.history_ttl,
            max_replay: self.history_max_replay,
            bytes: self.history_bytes,
        }
    }

    /// The settings of a connection to WebSocket route `path`: `/ws` gets
    /// [`HubConfig::max_hub_message_size`], other routes
    /// [`HubConfig::websocket`] as it is.
    pub(crate) fn websocket_for(&self, path: &str) -> WebSocketConfig {
        let mut websocket = self.websocket.clone();
        if path == "/ws" {
            websocket.protocol.max_message_size = self.max_hub_message_size;
        }
        websocket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_overrides_only_the_ping_interval_and_the_message_limit() {
        let hub = HubConfig::default().websocket;
        let library = WebSocketConfig::default();
        assert_eq!(hub.ping_interval, Some(Duration::from_secs(25)));
        assert_eq!(hub.protocol.max_message_size, 16 << 20);
        assert_eq!(hub.protocol.max_frame_size, library.protocol.max_frame_size);
        assert_eq!(
            (hub.pong_timeout, hub.handshake_timeout, hub.close_timeout),
            (
                library.pong_timeout,
                library.handshake_timeout,
                library.close_timeout
            )
        );
        assert_eq!(hub.write_buffer_limit, library.write_buffer_limit);
        assert!(hub.compression.is_none());
    }
}
