//! A WebSocket on one path, `/websocket/test`, that pushes data on a timer:
//! on connect it sends `连接成功` ("connected"), then a random number with two
//! decimals, such as `0.42`, every second while the connection is open, and
//! echoes whatever it receives. A handshake for any other path gets 404.
//!
//! It shows routing by path during the handshake, with `wshub::accept_with`,
//! and a timer owned by the connection's task, which stops when the
//! connection ends.
//!
//! ```text
//! cargo run -p wshub-examples --example periodic_push [ADDR]
//! ```
//!
//! It listens on `127.0.0.1:3000` unless given another address. You will see
//! `push server listening` on stderr. Then
//! `cargo run -p wshub-examples --example client -- ws://127.0.0.1:3000/websocket/test`
//! prints `连接成功`, a number every second and the echo of `Hello Server!`.
//! `curl -i http://127.0.0.1:3000/websocket/test`, a plain HTTP request,
//! shows `426 Upgrade Required`. Ctrl-C stops it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{interval_at, Instant};
use wshub::{Accept, Reject, WebSocketConfig};

/// The one WebSocket route.
pub const PATH: &str = "/websocket/test";
/// Sent as each client connects.
pub const GREETING: &str = "连接成功";

/// Settings of the push server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between two pushed numbers. Default: 1 s.
    pub push_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            push_interval: Duration::from_secs(1),
        }
    }
}

/// A random number in `[0, 1]` with two decimals: `"0.00"` to `"1.00"`.
pub fn random_number() -> String {
    format!("{:.2}", rand::random::<f64>())
}

/// Serves the route on `listener`. Never returns; drop it to stop.
pub async fn run(listener: TcpListener, config: Config) {
    // Dropping the set aborts its tasks, so dropping this future (Ctrl-C, or
    // the end of a test) ends every connection with it.
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                connections.spawn(route(tcp, peer, config.push_interval));
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

async fn route(tcp: TcpStream, peer: SocketAddr, push_interval: Duration) {
    let _ = tcp.set_nodelay(true);
    // `accept_with` reads and checks the request (a plain HTTP request gets
    // 426), then lets us look at it before answering.
    let accepted = wshub::accept_with(tcp, WebSocketConfig::default(), |request| {
        if request.path() == PATH {
            Ok(Accept::default())
        } else {
            Err(Reject::new(404, "not found"))
        }
    })
    .await;
    let mut ws = match accepted {
        Ok(ws) => ws,
        Err(e) => {
            tracing::info!(%peer, error = %e.report(), "handshake refused");
            return;
        }
    };
    tracing::info!(%peer, path = PATH, "connection opened");

    let mut push = interval_at(Instant::now() + push_interval, push_interval);
    let mut result = ws.send_text(GREETING).await;
    while result.is_ok() {
        result = tokio::select! {
            incoming = ws.recv() => match incoming {
                Some(Ok(message)) => ws.send(message).await,
                Some(Err(e)) => Err(e),
                None => break,
            },
            _ = push.tick() => ws.send_text(&random_number()).await,
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
    tracing::info!(addr = %listener.local_addr()?, path = PATH, "push server listening");
    tokio::select! {
        () = run(listener, Config::default()) => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
    }
    Ok(())
}
