//! `/echo`: every message back to its sender, text as text, binary as binary.

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use wshub::{CloseCode, WebSocket};

use crate::session::{finish, log_end};

pub(crate) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocket<S>,
    conn_id: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut error = None;
    loop {
        tokio::select! {
            biased;
            _ = crate::stopped(&mut shutdown) => {
                let _ = ws.close(CloseCode::GoingAway, "server shutting down").await;
                break;
            }
            incoming = ws.next() => match incoming {
                None => break,
                Some(Err(e)) => {
                    error = Some(e);
                    break;
                }
                Some(Ok(message)) => {
                    if let Err(e) = ws.send(message).await {
                        error = Some(e);
                        break;
                    }
                }
            },
        }
    }
    finish(&mut ws).await;
    log_end(conn_id, "/echo", &ws, error.as_ref());
}
