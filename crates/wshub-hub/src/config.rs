//! [`HubConfig`]: the hub's own settings around the [`WebSocketConfig`] of
//! its `/ws` and `/echo` connections.

use std::time::Duration;

use wshub::{ProtocolConfig, WebSocketConfig};

use crate::AdmissionConfig;

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
    ///   for Autobahn case 9 on `/echo`.
    ///
    /// permessage-deflate ([`WebSocketConfig::compression`]) stays off by
    /// default. With [`DeflateConfig::server`](wshub::DeflateConfig::server)
    /// (no context takeover either way) an idle connection holds no
    /// compression state, and a message published to a room is compressed
    /// once for every member that negotiated the same parameters.
    pub websocket: WebSocketConfig,
    /// Frames queued per connection before a slow reader is disconnected with
    /// 1008. Default: 1024.
    pub send_queue: usize,
    /// Rooms send join and leave notices while they have at most this many
    /// members; bigger rooms stay quiet about presence (a notice per member per
    /// join would cost the square of a crowd's size). Default: 100, the most
    /// members a `joined` answer lists, so a room either shows its members
    /// and their comings and goings or only counts them.
    pub presence_limit: usize,
    /// On shutdown, time [`serve`](crate::serve) waits for connections to
    /// finish their close handshake before it returns (`wshub serve` then
    /// exits, dropping the rest). Default: 5 s.
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
            presence_limit: crate::rooms::DEFAULT_PRESENCE_LIMIT,
            shutdown_timeout: Duration::from_secs(5),
            admission: AdmissionConfig::default(),
            echo: true,
        }
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
