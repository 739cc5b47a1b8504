//! What a parked connection is, `/echo` or `/ws`, and which transports can
//! be parked; the parker that holds them is [`crate::parker`].

use std::task::Waker;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use wshub::{Parked, TcpTransport, WebSocket};

use crate::member::IdleMember;
use crate::metrics::OpenConnection;

/// A connection parked by its session: the socket and what rebuilds its
/// `WebSocket`, its id (for its drain batch and log lines), and what its
/// session keeps while it has no task.
#[derive(Debug)]
pub(crate) struct ParkedConn {
    pub(crate) socket: Parked,
    pub(crate) conn_id: u64,
    pub(crate) session: IdleSession,
}

/// What a parked connection's session keeps.
#[derive(Debug)]
pub(crate) enum IdleSession {
    /// `/echo`: its place in `wshub_connections_open`, kept while parked.
    Echo(OpenConnection<false>),
    /// `/ws`: the member, its send queue's receiving end, its rate limit
    /// and its auth deadline (boxed: an `/echo` slot stays small).
    Member(Box<IdleMember>),
}

impl IdleSession {
    /// The route, for log lines.
    pub(crate) fn route(&self) -> &'static str {
        match self {
            Self::Echo(_) => "/echo",
            Self::Member(_) => "/ws",
        }
    }

    /// When the session itself must run again, whatever the socket does:
    /// a member's auth deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self {
            Self::Echo(_) => None,
            Self::Member(member) => member.deadline(),
        }
    }

    /// Has `waker` (made by `waker` when needed) woken when anything
    /// besides the socket needs the session: a member's room deliveries or
    /// its kick. True if something already does.
    pub(crate) fn watch(&self, waker: impl FnOnce() -> Waker) -> bool {
        match self {
            Self::Echo(_) => false,
            Self::Member(member) => member.watch(&waker()),
        }
    }

    /// The connection ended while parked, with close code `code` (counted
    /// as its session would; a member leaves its rooms).
    pub(crate) fn ended(self, code: u16) {
        match self {
            Self::Echo(open) => open.ended(code),
            Self::Member(member) => member.ended(code),
        }
    }
}

/// A transport a session runs on, and whether its idle connections can be
/// parked: plain TCP only (public only for the `fuzzing` feature's
/// transports, which are never parked). A TLS connection keeps the TLS session's state
/// (keys, sequence numbers, rustls' buffers), which a parked socket cannot.
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
pub trait Parkable: AsyncRead + AsyncWrite + Unpin + Sized {
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

#[cfg(test)]
impl Parkable for tokio::io::DuplexStream {}
