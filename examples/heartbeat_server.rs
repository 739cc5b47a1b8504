//! Seed 004's server: says `something` to each client as it connects,
//! broadcasts every message as-is to all open clients (`wss.clients.forEach`),
//! answers the text `ping` to its sender alone with
//! `{"type":0,"message":"pong"}`, and sends each client
//! `{"type":1,"message":"ping"}` every 5 s while it is open.
//!
//! ```text
//! cargo run -p wshub-examples --example heartbeat_server [ADDR]
//! ```
//!
//! It listens on `127.0.0.1:3000` unless given another address. You will see
//! `heartbeat server listening` on stderr and a line per connection and per
//! broadcast. The `reconnecting_client` example connects here by default and
//! keeps its `ping`/`pong` heartbeat with it; stop and restart this server to
//! watch the client reconnect. Ctrl-C stops it.

use tokio::net::TcpListener;
use wshub_examples::heartbeat_server;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wshub_examples::init_tracing();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| heartbeat_server::ADDR.to_owned());
    let listener = TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "heartbeat server listening");
    tokio::select! {
        () = heartbeat_server::run(listener, heartbeat_server::Config::default()) => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
    }
    Ok(())
}
