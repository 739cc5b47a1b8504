//! Seed 000's chat server: every message a client sends is broadcast to all
//! open clients as `{"type":2,"message":"<text>"}`, and each client gets a
//! heartbeat `{"type":1,"message":"心跳检测"}` every 3 s while it is open.
//!
//! Unlike the seed, a client's heartbeat timer stops as soon as that client
//! closes. Each broadcast is encoded once and queued for every client; a
//! client too slow to keep up is disconnected (1008) instead of holding the
//! others back.
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

use tokio::net::TcpListener;
use wshub_examples::broadcast_server;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wshub_examples::init_tracing();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| broadcast_server::ADDR.to_owned());
    let listener = TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "broadcast server listening");
    tokio::select! {
        () = broadcast_server::run(listener, broadcast_server::Config::default()) => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
    }
    Ok(())
}
