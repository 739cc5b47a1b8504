//! A chat broadcast: every message a client sends goes to all open clients,
//! the sender included, as `{"type":2,"message":"<text>"}`, and each client
//! gets a heartbeat `{"type":1,"message":"心跳检测"}` every 3 s while it is
//! open. This is the chat server of the usual WebSocket tutorials.
//!
//! Each broadcast is encoded once, as a [`PreparedMessage`], and handed to
//! every connection through a `tokio::sync::broadcast` channel. A client too
//! slow to keep up is disconnected instead of holding the others back (see
//! [`Config`]).
//!
//! ```text
//! cargo run -p wshub-examples --example broadcast_server [ADDR]
//! ```
//!
//! It listens on `127.0.0.1:8080` unless given another address. You will see
//! `broadcast server listening` on stderr and a line per connection and per
//! message. Connect two clients, e.g. twice
//! `cargo run -p wshub-cli -- connect ws://127.0.0.1:8080`: whatever one
//! types, both print as `{"type":2,...}`, and both print a heartbeat every 3 s.
//! Ctrl-C stops it.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinSet;
use tokio::time::{interval_at, timeout, Instant};
use wshub::{CloseCode, Message, PreparedMessage};

/// The `type` of a heartbeat.
pub const HEART: u8 = 1;
/// The `type` of a chat message.
pub const MESSAGE: u8 = 2;
/// The heartbeat's text.
pub const HEARTBEAT_TEXT: &str = "心跳检测";

/// Settings of the broadcast server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between two heartbeats to one client. Default: 3 s.
    pub heartbeat_interval: Duration,
    /// Broadcasts kept for clients that have not sent them yet. The channel
    /// holds this many messages in all, however many clients there are; a
    /// client that falls further behind is closed with 1008 (policy
    /// violation). Default: 64.
    pub backlog: usize,
    /// How long writing one message to a client may take. A client that
    /// stops reading fills its TCP window, and then its writes stall: past
    /// this time it is dropped. Default: 10 s.
    pub write_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(3),
            backlog: 64,
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// The JSON every message is wrapped in; the keys in this order.
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: u8,
    message: &'a str,
}

fn envelope(kind: u8, message: &str) -> PreparedMessage {
    let json = serde_json::to_string(&Envelope { kind, message })
        .expect("a number and a string always serialize");
    PreparedMessage::new(&Message::text(json))
}

/// Serves the chat broadcast on `listener`. Never returns; drop it to stop.
pub async fn run(listener: TcpListener, config: Config) {
    // Sending never waits: it stores the message once in the channel's ring
    // of `backlog` slots, which every connection reads at its own pace.
    let (chat, _) = broadcast::channel(config.backlog.max(1));
    // Dropping the set aborts its tasks, so dropping this future (Ctrl-C, or
    // the end of a test) ends every connection with it.
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                connections.spawn(connection(tcp, peer, chat.clone(), config.clone()));
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

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    chat: broadcast::Sender<PreparedMessage>,
    config: Config,
) {
    let _ = tcp.set_nodelay(true);
    let mut ws = match wshub::accept(tcp).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::info!(%peer, error = %e.report(), "handshake failed");
            return;
        }
    };
    // Subscribed before reading anything, so this client gets the broadcast
    // of its own first message.
    let mut broadcasts = chat.subscribe();
    tracing::info!(%peer, "connection opened");
    let heartbeat = envelope(HEART, HEARTBEAT_TEXT);
    // The timer belongs to this task, so it stops when the connection ends.
    let period = config.heartbeat_interval;
    let mut heart = interval_at(Instant::now() + period, period);
    loop {
        let outgoing = tokio::select! {
            incoming = ws.recv() => match incoming {
                Some(Ok(message)) => {
                    // Binary messages are read as UTF-8 text too.
                    let text = match &message {
                        Message::Text(text) => text.as_str().to_owned(),
                        Message::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                    };
                    tracing::info!(%peer, text, "message from client");
                    // Fails only when no client is subscribed, and this one is.
                    let _ = chat.send(envelope(MESSAGE, &text));
                    continue;
                }
                Some(Err(e)) => {
                    tracing::info!(%peer, error = %e.report(), "connection failed");
                    return;
                }
                None => break,
            },
            broadcast = broadcasts.recv() => match broadcast {
                Ok(frame) => frame,
                Err(RecvError::Lagged(missed)) => {
                    // The channel has moved on without this client: it would
                    // miss messages, so it goes. Memory stays bounded by
                    // `backlog`, and the others never waited for it.
                    tracing::warn!(%peer, missed, "client too slow, closing");
                    let _ = ws.close(CloseCode::PolicyViolation, "too slow").await;
                    break;
                }
                Err(RecvError::Closed) => break,
            },
            _ = heart.tick() => heartbeat.clone(),
        };
        match timeout(config.write_timeout, ws.send_prepared(&outgoing)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e.report(), "connection failed");
                return;
            }
            Err(_) => {
                // The client stopped reading: no Close could get through
                // either, so drop the connection.
                tracing::warn!(%peer, "client not reading, dropping it");
                return;
            }
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
    let listener = TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8080")).await?;
    tracing::info!(addr = %listener.local_addr()?, "broadcast server listening");
    tokio::select! {
        () = run(listener, Config::default()) => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
    }
    Ok(())
}
