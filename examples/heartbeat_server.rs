//! A server with a heartbeat: it sends each client a Ping every 5 s (RFC 6455
//! §5.5.2) and drops a client that has not answered 10 s later, so a peer
//! that vanished without closing (a laptop lid shut, a cable pulled) does not
//! hold its connection forever. The Pings are wshub's keepalive, switched on
//! with `WebSocketConfig::ping_interval`; browsers and wshub clients answer
//! them by themselves.
//!
//! It also says `something` to each client as it connects, answers the text
//! `ping` with `{"type":0,"message":"pong"}` (the application-level heartbeat
//! of browser code, which cannot send a Ping frame) and echoes every other
//! message.
//!
//! ```text
//! cargo run -p wshub-examples --example heartbeat_server [ADDR]
//! ```
//!
//! It listens on `127.0.0.1:3000` unless given another address. You will see
//! `heartbeat server listening` on stderr and a line per connection. Connect
//! with `cargo run -p wshub-cli -- connect ws://127.0.0.1:3000`, then freeze
//! that client (Ctrl-Z, or `kill -STOP` its process): within 15 s the server
//! logs `connection failed` with `peer did not answer the keepalive
//! ping in time`. The `reconnecting_client` example connects here by
//! default; stop and restart this server to watch it reconnect. Ctrl-C stops
//! it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use wshub::{Accept, Message, WebSocketConfig};

/// Sent to each client as it connects.
pub const GREETING: &str = "something";
/// The answer to the text `ping`.
pub const PONG: &str = r#"{"type":0,"message":"pong"}"#;

/// Settings of the heartbeat server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between two Pings to a client. Default: 5 s.
    pub ping_interval: Duration,
    /// How long a client may stay silent after a Ping before it is dropped.
    /// Default: 10 s.
    pub pong_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(5),
            pong_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves on `listener`. Never returns; drop it to stop.
pub async fn run(listener: TcpListener, config: Config) {
    let websocket = WebSocketConfig::default()
        .ping_interval(Some(config.ping_interval))
        .pong_timeout(config.pong_timeout);
    // Dropping the set aborts its tasks, so dropping this future (Ctrl-C, or
    // the end of a test) ends every connection with it.
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                connections.spawn(connection(tcp, peer, websocket.clone()));
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

async fn connection(tcp: TcpStream, peer: SocketAddr, config: WebSocketConfig) {
    let _ = tcp.set_nodelay(true);
    let mut ws = match wshub::accept_with(tcp, config, |_| Ok(Accept::default())).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::info!(%peer, error = %e.report(), "handshake failed");
            return;
        }
    };
    tracing::info!(%peer, "connection opened");
    let mut result = ws.send_text(GREETING).await;
    // The keepalive runs while `recv` is awaited: it sends the Pings, and
    // ends the stream with `Error::KeepaliveTimeout` for a silent peer.
    while result.is_ok() {
        result = match ws.recv().await {
            Some(Ok(Message::Text(text))) if text.as_str() == "ping" => ws.send_text(PONG).await,
            Some(Ok(message)) => ws.send(message).await,
            Some(Err(e)) => Err(e),
            None => break,
        };
    }
    match result {
        Ok(()) => tracing::info!(%peer, close = ?ws.close_event(), "connection closed"),
        Err(e) => tracing::info!(%peer, error = %e.report(), "connection failed"),
    }
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
    let listener = TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:3000")).await?;
    tracing::info!(addr = %listener.local_addr()?, "heartbeat server listening");
    tokio::select! {
        () = run(listener, Config::default()) => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
    }
    Ok(())
}
