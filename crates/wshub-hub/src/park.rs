//! What a parked `/echo` connection is, and which transports can be
//! parked; the parker that holds them is [`crate::parker`].

use tokio::io::{AsyncRead, AsyncWrite};
use wshub::{Parked, TcpTransport, WebSocket};

use crate::metrics::OpenConnection;

/// An `/echo` connection parked by its session: the socket and what
/// rebuilds its `WebSocket`, its id (for its drain batch and log lines) and
/// its place in `wshub_connections_open`, which it keeps while parked.
#[derive(Debug)]
pub(crate) struct ParkedEcho {
    pub(crate) socket: Parked,
    pub(crate) conn_id: u64,
    pub(crate) open: OpenConnection<false>,
}

/// A transport a session runs on, and whether its idle connections can be
/// parked: plain TCP only. A TLS connection keeps the TLS session's state
/// (keys, sequence numbers, rustls' buffers), which a parked socket cannot.
pub(crate) trait Parkable: AsyncRead + AsyncWrite + Unpin + Sized {
    /// `ws` parked, or back when it cannot be.
    // `Err` is the connection itself, back as it came (`WebSocket::try_park`).
    #[allow(clippy::result_large_err)]
    fn try_park(ws: WebSocket<Self>) -> Result<Parked, WebSocket<Self>> {
        Err(ws)
    }
}

impl Parkable for TcpTransport {
    #[allow(clippy::result_large_err)]
    fn try_park(ws: WebSocket<Self>) -> Result<Parked, WebSocket<Self>> {
        ws.try_park()
    }
}

impl Parkable for crate::tls::Stream {}
