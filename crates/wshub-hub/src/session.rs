//! What every session (a connection's life after its handshake, on `/ws`
//! or `/echo`) shares: its type, and how it ends.

use std::future::Future;
use std::pin::Pin;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use wshub::{Error, WebSocket};

use crate::park::ParkedConn;

/// A connection's life after its handshake, `/ws` or `/echo`, in an
/// allocation of its own, sized for what an open connection needs. It
/// ends with the connection closed, or parked for the hub's parker.
pub(crate) type Session = Pin<Box<dyn Future<Output = Option<ParkedConn>> + Send>>;

/// Drives a finished session's stream to its end, so a queued Close (ours,
/// an echo, or the one failing the connection) is written and the transport
/// closed. The WebSocket's own close timeout bounds each wait for the peer;
/// 10 s bounds the whole drain in any case.
pub(crate) async fn finish<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) {
    let drain = async { while ws.next().await.is_some() {} };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
}

/// Why a session ended, for the one log line per closed connection;
/// returns the close code it ended with (its `CloseEvent`'s, 1006 without
/// one).
pub(crate) fn log_end<S: AsyncRead + AsyncWrite + Unpin>(
    conn_id: u64,
    route: &str,
    ws: &WebSocket<S>,
    error: Option<&Error>,
) -> u16 {
    let event = ws.close_event();
    let code = event.as_ref().map_or(1006, |e| e.code.as_u16());
    let clean = event.as_ref().is_some_and(|e| e.was_clean);
    match error {
        Some(Error::Protocol(e)) => {
            tracing::warn!(conn_id, route, close_code = e.close_code().as_u16(), error = %e, "protocol error, connection failed");
        }
        Some(e) => {
            tracing::info!(conn_id, route, close_code = code, error = %e.report(), "connection closed with error")
        }
        None => tracing::info!(
            conn_id,
            route,
            close_code = code,
            was_clean = clean,
            "connection closed"
        ),
    }
    code
}
