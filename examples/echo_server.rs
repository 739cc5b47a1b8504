//! An echo server: every message comes back to its sender, text as text and
//! binary as binary.
//!
//! ```text
//! cargo run -p wshub-examples --example echo_server [ADDR]
//! ```
//!
//! It listens on `127.0.0.1:9001` unless given another address. You will see
//! `echo server listening` on stderr, then one line per connection opened and
//! closed (`RUST_LOG=debug` adds one per message). Talk to it with the
//! `client` example, `cargo run -p wshub-cli -- connect ws://127.0.0.1:9001`,
//! or a browser console: `new WebSocket("ws://127.0.0.1:9001")`. Ctrl-C stops it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Serves the echo on `listener`. Never returns; drop it to stop.
pub async fn run(listener: TcpListener) {
    // Dropping the set aborts its tasks, so dropping this future (Ctrl-C, or
    // the end of a test) ends every connection with it.
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                connections.spawn(echo(tcp, peer));
            }
            Err(e) => {
                // Out of file descriptors, say: wait a little, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Forget the connections that have ended.
        while connections.try_join_next().is_some() {}
    }
}

async fn echo(tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    // `accept` bounds the handshake with `WebSocketConfig::handshake_timeout`.
    let mut ws = match wshub::accept(tcp).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::info!(%peer, error = %e.report(), "handshake failed");
            return;
        }
    };
    tracing::info!(%peer, "connection opened");
    // `recv` also answers Pings and the peer's Close; it returns `None` once
    // the close handshake is over.
    while let Some(incoming) = ws.recv().await {
        let sent = match incoming {
            Ok(message) => {
                tracing::debug!(%peer, text = message.is_text(), len = message.len(), "echo");
                ws.send(message).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::info!(%peer, error = %e.report(), "connection failed");
            return;
        }
    }
    let closed = ws.close_event();
    tracing::info!(%peer, close = ?closed, "connection closed");
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let addr = std::env::args().nth(1);
    let listener = TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:9001")).await?;
    tracing::info!(addr = %listener.local_addr()?, "echo server listening");
    tokio::select! {
        () = run(listener) => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
    }
    Ok(())
}
