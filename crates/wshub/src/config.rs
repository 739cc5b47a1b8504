//! [`WebSocketConfig`]: the settings of one connection, each default written
//! here once; servers built on this crate (the hub) override a few of them.

use std::time::Duration;

#[cfg(feature = "deflate")]
use wshub_proto::deflate::DeflateConfig;

/// Settings of a [`WebSocket`](crate::WebSocket), on top of the protocol
/// limits of [`ProtocolConfig`](crate::ProtocolConfig).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebSocketConfig {
    /// Frame and message limits, auto-pong (see
    /// [`ProtocolConfig`](crate::ProtocolConfig)). Default: its defaults
    /// (frames of 16 MiB, messages of 64 MiB).
    pub protocol: wshub_proto::Config,
    /// Bytes queued for writing above which sending waits for the socket to
    /// drain (backpressure). One message is always accepted when below it, so a
    /// single message may exceed it. Default: 64 KiB.
    pub write_buffer_limit: usize,
    /// Send a protocol Ping this often (RFC 6455 §5.5.2). Default: `None` (off).
    pub ping_interval: Option<Duration>,
    /// How long to wait for any frame after a keepalive Ping before dropping the
    /// connection with [`Error::KeepaliveTimeout`](crate::Error::KeepaliveTimeout).
    /// Default: 10 s.
    pub pong_timeout: Duration,
    /// Server: time allowed for the client's request head in
    /// [`read_handshake`](crate::read_handshake), [`accept_with`](crate::accept_with)
    /// and [`accept`](crate::accept); a late head is answered 408.
    /// Client: bound on TCP connect plus the opening handshake in
    /// [`ClientBuilder::connect`](crate::ClientBuilder::connect).
    /// Default: 10 s.
    pub handshake_timeout: Duration,
    /// How long one incoming data message may take, from its first frame's
    /// header to the end of its final frame, however its frames are split
    /// and whatever control frames come in between (RFC 6455 §5.4). Any byte
    /// from the peer proves it alive to the keepalive, so without this a peer
    /// could hold a fragmented or slowly sent message open for ever with a
    /// Ping now and then. Past it the connection is failed: a Close with
    /// 1008 (policy violation, RFC 6455 §7.4.1: the peer broke no protocol
    /// rule, and the message need not be big) goes out, the transport is
    /// closed, and the stream ends with
    /// [`Error::MessageTimeout`](crate::Error::MessageTimeout). Messages read
    /// whole by one read never arm it. `None`: no bound. Default: 60 s.
    pub message_timeout: Option<Duration>,
    /// How long to wait for the peer's Close after ours, or for the server to
    /// close TCP after the close handshake (RFC 6455 §7.1.1). Default: 5 s.
    pub close_timeout: Duration,
    /// permessage-deflate (RFC 7692): `Some` offers it (client) or accepts an
    /// offer of it (server) with these settings; see [`DeflateConfig`] for
    /// the parameters, their defaults and what each costs in memory.
    /// Default: `None` (off), as Node's `ws` server: compression costs CPU
    /// on every message and, with context takeover, hundreds of KiB per
    /// connection, so it is a choice to make, not a default to discover.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub compression: Option<DeflateConfig>,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            protocol: wshub_proto::Config::default(),
            write_buffer_limit: 64 * 1024,
            ping_interval: None,
            pong_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            message_timeout: Some(Duration::from_secs(60)),
            #[cfg(feature = "deflate")]
            compression: None,
        }
    }
}

impl WebSocketConfig {
    /// Sets [`WebSocketConfig::protocol`].
    pub fn protocol(mut self, protocol: wshub_proto::Config) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets [`WebSocketConfig::write_buffer_limit`] (bytes).
    pub fn write_buffer_limit(mut self, bytes: usize) -> Self {
        self.write_buffer_limit = bytes;
        self
    }

    /// Sets [`WebSocketConfig::ping_interval`].
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Sets [`WebSocketConfig::pong_timeout`].
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.pong_timeout = timeout;
        self
    }

    /// Sets [`WebSocketConfig::handshake_timeout`].
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets [`WebSocketConfig::compression`].
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn compression(mut self, compression: Option<DeflateConfig>) -> Self {
        self.compression = compression;
        self
    }

    /// Sets [`WebSocketConfig::message_timeout`] (`None`: no bound).
    pub fn message_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.message_timeout = timeout;
        self
    }

    /// Sets [`WebSocketConfig::close_timeout`].
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }
}

/// A duration kept in 4 bytes, whole milliseconds rounded up (so only zero
/// is zero) and at most `u32::MAX` ms (49.7 days; longer ones are cut to
/// it). The durations a connection keeps from its config are held so: every
/// idle connection holds them, and 16-byte `Duration`s had pushed the echo
/// session's allocation past the allocator's 1 KiB size class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Millis(u32);

impl Millis {
    pub(crate) fn new(duration: Duration) -> Self {
        let ms = duration.as_nanos().div_ceil(1_000_000);
        Self(u32::try_from(ms).unwrap_or(u32::MAX))
    }

    pub(crate) fn get(self) -> Duration {
        Duration::from_millis(u64::from(self.0))
    }

    /// `None` as zero, which [`Millis::new`] gives only for a zero duration.
    pub(crate) fn new_optional(duration: Option<Duration>) -> Self {
        duration.map_or(Self(0), |d| Self::new(d).max_one())
    }

    /// `None` for zero.
    pub(crate) fn optional(self) -> Option<Duration> {
        (self.0 != 0).then(|| self.get())
    }

    fn max_one(self) -> Self {
        Self(self.0.max(1))
    }
}

#[cfg(test)]
mod millis_tests {
    use super::*;

    #[test]
    fn millis_round_up_and_saturate() {
        assert_eq!(
            Millis::new(Duration::from_secs(5)).get(),
            Duration::from_secs(5)
        );
        assert_eq!(
            Millis::new(Duration::from_micros(1)).get(),
            Duration::from_millis(1)
        );
        assert_eq!(
            Millis::new(Duration::from_micros(1500)).get(),
            Duration::from_millis(2)
        );
        assert_eq!(Millis::new(Duration::ZERO).get(), Duration::ZERO);
        assert_eq!(
            Millis::new(Duration::from_secs(u64::MAX)).get(),
            Duration::from_millis(u64::from(u32::MAX))
        );
        assert_eq!(Millis::new_optional(None).optional(), None);
        assert_eq!(
            Millis::new_optional(Some(Duration::ZERO)).optional(),
            Some(Duration::from_millis(1)),
            "a zero timeout that is on stays on"
        );
        assert_eq!(
            Millis::new_optional(Some(Duration::from_secs(60))).optional(),
            Some(Duration::from_secs(60))
        );
    }
}
