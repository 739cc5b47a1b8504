//! What both tokio-tungstenite peers run: a tokio multi-thread runtime with
//! `--workers` worker threads, an accept loop spawning one task per
//! connection, and in it the echo session on whatever stream the
//! connection became (TCP, or TLS over it).

use std::future::Future;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::args::Args;

/// Runs the WebSocket handshake with `accept_async` on `stream` and sends
/// back every text or binary message. Pings are answered and the close
/// handshake is completed by tungstenite itself.
pub async fn echo<S>(stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ws = match tokio_tungstenite::accept_async(stream).await {
        Ok(ws) => ws,
        Err(_) => return,
    };
    while let Some(message) = ws.next().await {
        let message = match message {
            Ok(m) => m,
            Err(_) => break,
        };
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

/// Listens on `args.listen` and spawns `session` for every accepted
/// connection (with `TCP_NODELAY` set); `scheme` and `name` are
/// printed once listening, e.g. `ws` and `tungstenite-echo`.
pub fn serve<F, Fut>(name: &str, scheme: &str, args: &Args, session: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let listener = TcpListener::bind(args.listen).await.expect("bind");
        eprintln!(
            "{name} listening on {scheme}://{}/ ({} worker(s))",
            args.listen, args.workers
        );
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(session(stream));
                }
                Err(e) => eprintln!("accept: {e}"),
            }
        }
    });
}
