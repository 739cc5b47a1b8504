use std::time::Duration;

use wshub::DeflateConfig;

/// Settings of a hub server. Every field has a documented default that works
/// with no other server installed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HubConfig {
    /// Protocol Ping interval for every connection (RFC 6455 §5.5.2). Below the
    /// 60 s idle timeout of common proxies. Default: 25 s.
    pub ping_interval: Duration,
    /// Close a peer that sends nothing back this long after a keepalive Ping.
    /// Default: 10 s.
    pub pong_timeout: Duration,
    /// Largest message accepted, in bytes (1009 beyond). Default: 16 MiB, enough
    /// for Autobahn case 9 on `/echo`.
    pub max_message_size: usize,
    /// Largest frame accepted, in bytes (1009 beyond). Default: 16 MiB.
    pub max_frame_size: usize,
    /// Frames queued per connection before a slow reader is disconnected with
    /// 1008. Default: 1024.
    pub send_queue: usize,
    /// Rooms send join and leave notices while they have at most this many
    /// members; bigger rooms stay quiet about presence (a notice per member per
    /// join would cost the square of a crowd's size). Default: 100, the most
    /// members a `joined` answer lists, so a room either shows its members
    /// and their comings and goings or only counts them.
    pub presence_limit: usize,
    /// Time allowed for a client to send its HTTP request head. Default: 10 s.
    pub handshake_timeout: Duration,
    /// On shutdown, time [`serve`](crate::serve) waits for connections to
    /// finish their close handshake before it returns (`wshub serve` then
    /// exits, dropping the rest). Default: 5 s.
    pub shutdown_timeout: Duration,
    /// permessage-deflate (RFC 7692) on `/ws` and `/echo`: `Some` accepts a
    /// client's offer with these settings. With the server defaults
    /// ([`DeflateConfig::server`]: no context takeover either way) an idle
    /// connection holds no compression state, and a message published to a
    /// room is compressed once for every member that negotiated the same
    /// parameters. Default: `None` (off).
    pub compression: Option<DeflateConfig>,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(10),
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            send_queue: 1024,
            presence_limit: crate::rooms::DEFAULT_PRESENCE_LIMIT,
            handshake_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(5),
            compression: None,
        }
    }
}

impl HubConfig {
    pub(crate) fn websocket_config(&self) -> wshub::WebSocketConfig {
        let protocol = wshub_proto::Config::default()
            .max_message_size(self.max_message_size)
            .max_frame_size(self.max_frame_size);
        wshub::WebSocketConfig::default()
            .protocol(protocol)
            .ping_interval(Some(self.ping_interval))
            .pong_timeout(self.pong_timeout)
            .compression(self.compression.clone())
    }
}
