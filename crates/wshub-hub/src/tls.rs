//! `https://` and `wss://` on the hub's one listener: the TLS handshake of
//! each connection, under the same deadline as its request head, with a
//! server configuration that can be replaced while the hub runs.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::net::TcpStream;
use tokio::time::Instant;
use wshub::rustls::ServerConfig;
use wshub::tokio_rustls::server::TlsStream;
use wshub::tokio_rustls::TlsAcceptor;
use wshub::{TcpTransport, WebSocketConfig};

/// The hub's TLS configuration, replaceable at run time: each new
/// connection's handshake uses the configuration current when it starts;
/// connections already open keep theirs (a new certificate never drops
/// them). Clones share the one configuration, so the handle given to
/// [`HubConfig::tls`](crate::HubConfig::tls) can be kept to
/// [`replace`](Self::replace) it, e.g. on SIGHUP.
///
/// ```no_run
/// # fn run() -> Result<(), wshub::tls::TlsConfigError> {
/// let tls = wshub_hub::ServerTls::new(wshub::tls::server_config(
///     "cert.pem".as_ref(),
///     "key.pem".as_ref(),
/// )?);
/// let mut config = wshub_hub::HubConfig::default();
/// config.tls = Some(tls.clone());
/// // Later, with a renewed certificate:
/// tls.replace(wshub::tls::server_config("cert.pem".as_ref(), "key.pem".as_ref())?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ServerTls {
    // A std lock: it is held only to clone or swap the `Arc`, never across
    // an `.await`.
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl ServerTls {
    /// A handle serving `config` (e.g. from
    /// [`wshub::tls::server_config`]).
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            current: Arc::new(RwLock::new(config)),
        }
    }

    /// Serves `config` to every handshake that starts from now on.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// The configuration new handshakes use.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A TLS connection of the hub. Reads and writes of the TCP socket beneath
/// are [`TcpTransport`]'s direct system calls, as on the plain path.
pub(crate) type Stream = TlsStream<TcpTransport>;

/// The TLS handshake of a connection accepted at `accepted`, within
/// `websocket`'s handshake timeout counted from then. Returns the stream and
/// the settings to read its request head with: the same, their handshake
/// timeout cut to what is left, so TLS handshake and request head share one
/// deadline. `None` (logged at debug: scanners and plain HTTP to this port
/// are routine) when the handshake failed or ran out of time.
pub(crate) async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    accepted: Instant,
    tls: &ServerTls,
    websocket: &WebSocketConfig,
) -> Option<(Stream, WebSocketConfig)> {
    let deadline = accepted + websocket.handshake_timeout;
    let acceptor = TlsAcceptor::from(tls.current());
    let accept = acceptor.accept(TcpTransport::new(tcp));
    let stream = match tokio::time::timeout_at(deadline, accept).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timeout");
            return None;
        }
    };
    let mut websocket = websocket.clone();
    // Zero when the deadline has passed: the head is then answered 408
    // unless it is already there.
    websocket.handshake_timeout = deadline.saturating_duration_since(Instant::now());
    Some((stream, websocket))
}
