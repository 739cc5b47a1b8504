//! An axum app with a WebSocket echo route, through wshub's axum extractor:
//! the handler reads as it would with `axum::extract::ws`, and the route
//! negotiates permessage-deflate, which axum's own WebSockets lack.
//!
//! ```text
//! cargo run -p wshub-examples --example axum_echo [ADDR]
//! ```
//!
//! It listens on `127.0.0.1:3000` unless given another address (port 0
//! picks a free one) and prints `listening on http://ADDR` on stdout:
//! `/` is a plain page, `/echo` the WebSocket echo. Autobahn's server cases
//! run against `/echo` in the test command (`autobahn/run.sh`), so it
//! compresses every message (threshold 0) with context takeover, as the
//! run's `wshub serve` does.

use axum::response::{Html, Response};
use axum::routing::get;
use wshub::axum::{WebSocket, WebSocketUpgrade};
use wshub::{DeflateConfig, WebSocketConfig};

async fn echo_route(ws: WebSocketUpgrade) -> Response {
    let mut deflate = DeflateConfig::default();
    deflate.threshold = 0;
    deflate.server_no_context_takeover = false;
    deflate.client_no_context_takeover = false;
    let config = WebSocketConfig::default().compression(Some(deflate));
    ws.config(config).on_upgrade(echo)
}

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        if socket.send(message).await.is_err() {
            return;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let app = axum::Router::new()
        .route(
            "/",
            get(|| async { Html("<p>WebSocket echo at /echo</p>") }),
        )
        .route("/echo", get(echo_route));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
