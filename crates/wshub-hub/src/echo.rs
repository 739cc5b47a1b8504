//! `/echo`: every message back to its sender, text as text, binary as binary.

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use wshub::{CloseCode, Error, Message, WebSocket};

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
                    if let Err(e) = echo_batch(&mut ws, message).await {
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

/// Echoes `first` and every message already parsed or readable without
/// waiting, then writes them all with one flush: a pipelining client gets a
/// batch of echoes per write instead of a write per message.
async fn echo_batch<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    first: Message,
) -> Result<(), Error> {
    ws.feed(first).await?;
    // `now_or_never` polls once: a message if one is ready, else we flush.
    while let Some(Some(next)) = ws.next().now_or_never() {
        match next {
            Ok(message) => ws.feed(message).await?,
            // The failing Close is queued; flushing it is `finish`'s job.
            Err(e) => return Err(e),
        }
    }
    ws.flush().await
}
