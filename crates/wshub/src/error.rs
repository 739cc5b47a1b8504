//! [`Error`]: everything a wshub connection can fail with, and
//! [`Error::report`], the one place an error and its sources become one line.

use std::io;

use wshub_proto::handshake::HandshakeError;
use wshub_proto::{ProtocolError, SendError};

/// Everything that can go wrong on a wshub connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed (reset, refused, broken pipe, ...).
    #[error("i/o error")]
    Io(#[source] io::Error),
    /// The peer broke RFC 6455; the failing Close (with
    /// [`ProtocolError::close_code`]) was sent before this was returned.
    #[error("protocol error")]
    Protocol(#[source] ProtocolError),
    /// The opening handshake failed (RFC 6455 §4).
    #[error("handshake failed")]
    Handshake(#[source] HandshakeError),
    /// The caller asked for something the connection cannot send.
    #[error("cannot send")]
    Send(#[source] SendError),
    /// The opening handshake did not finish within the configured time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// No Pong (nor any other frame) came back within the pong timeout after a
    /// keepalive Ping; the connection was dropped.
    #[error("peer did not answer the keepalive ping in time")]
    KeepaliveTimeout,
    /// The peer did not finish a data message within
    /// [`WebSocketConfig::message_timeout`](crate::WebSocketConfig::message_timeout)
    /// of its first frame; the connection was failed with a Close 1008
    /// (policy violation).
    #[error("peer did not finish a message in time")]
    MessageTimeout,
    /// The URL is not a usable `ws://` URL.
    #[error("invalid WebSocket URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `wss://` URL, and this build of wshub has no TLS: its `rustls`
    /// feature (on by default) is off.
    #[error(
        "wss:// needs TLS, which this build of wshub leaves out (its `rustls` feature is off)"
    )]
    TlsUnsupported,
    /// A `wss://` URL, no [`ClientBuilder::tls_config`](crate::ClientBuilder::tls_config),
    /// and no roots built in: both the `rustls-native-roots` (on by default)
    /// and the `rustls-webpki-roots` features are off, so there is nothing
    /// to verify the server's certificate against.
    #[error(
        "wss:// has no roots to verify the server with: pass ClientBuilder::tls_config, or turn on the `rustls-native-roots` or `rustls-webpki-roots` feature"
    )]
    TlsNoRoots,
    /// The TLS handshake failed: the server's certificate is not trusted,
    /// expired or not valid for the URL's host, or the two sides share no
    /// protocol version or cipher suite. The source is the
    /// `rustls::Error` (downcast it for its variant); its message says
    /// which, e.g. `invalid peer certificate: certificate expired: ...` or
    /// `... certificate not valid for name "example.com"; ...`. A TLS
    /// failure after the handshake is an [`Error::Io`] holding the same.
    #[error("TLS handshake failed")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The server's accept callback refused the request; it was answered with
    /// this HTTP status.
    #[error("request rejected with HTTP {status}")]
    Rejected {
        /// The HTTP status sent.
        status: u16,
    },
    /// The connection is closed: nothing more can be sent.
    #[error("connection closed")]
    ConnectionClosed,
    /// Client: the server answered the opening handshake with another
    /// status than `101 Switching Protocols` (RFC 6455 §4.1): its status,
    /// headers and body (the first 64 KiB), e.g. a 401 with its
    /// `WWW-Authenticate`, a 503 with its `Retry-After`.
    #[error("the server answered HTTP {} instead of upgrading", .0.status)]
    Http(Box<HttpResponse>),
    /// An HTTP server (hyper, axum) handed over a request it cannot upgrade:
    /// its connection was not served with upgrades on
    /// (`serve_connection(..).with_upgrades()`), or the request was
    /// upgraded already. A server fault: answer 500.
    #[error(
        "the HTTP server cannot upgrade this request (serve its connections with upgrades on)"
    )]
    NotUpgradable,
}

impl Error {
    /// This error followed by its chain of sources, `: `-separated, for one
    /// log line: `i/o error: Connection refused (os error 111)`.
    pub fn report(&self) -> impl std::fmt::Display + '_ {
        Report(self)
    }
}

/// The display of [`Error::report`].
struct Report<'a>(&'a Error);

impl std::fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

impl From<ProtocolError> for Error {
    fn from(err: ProtocolError) -> Self {
        Self::Protocol(err)
    }
}

impl From<HandshakeError> for Error {
    fn from(err: HandshakeError) -> Self {
        Self::Handshake(err)
    }
}

impl From<SendError> for Error {
    fn from(err: SendError) -> Self {
        match err {
            SendError::NotOpen => Self::ConnectionClosed,
            other => Self::Send(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_shows_the_whole_chain() {
        let e = Error::Protocol(ProtocolError::CloseTooShort);
        assert_eq!(
            e.report().to_string(),
            "protocol error: close frame payload is 1 byte"
        );
    }

    #[test]
    fn error_stays_small() {
        assert!(
            std::mem::size_of::<Error>() <= 48,
            "{}",
            std::mem::size_of::<Error>()
        );
    }
}

/// A server's answer other than `101` to the opening handshake
/// ([`Error::Http`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpResponse {
    /// The HTTP status, e.g. 401, 404, 503.
    pub status: u16,
    /// The headers, in order, as sent.
    pub headers: Vec<(String, String)>,
    /// The body: as much of it as arrived within the handshake, at most
    /// [`HttpResponse::MAX_BODY`] bytes.
    pub body: bytes::Bytes,
}

impl HttpResponse {
    /// The most bytes of a refusal's body kept: 64 KiB.
    pub const MAX_BODY: usize = 64 * 1024;

    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
