//! An echo server: every message comes back to its sender, text as text and
//! binary as binary. This is the point-to-point reply of seed 001
//! (`ws.send(message)` in the server's `message` handler).
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

use tokio::net::TcpListener;
use wshub_examples::echo_server;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wshub_examples::init_tracing();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| echo_server::ADDR.to_owned());
    let listener = TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "echo server listening");
    tokio::select! {
        () = echo_server::run(listener) => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
    }
    Ok(())
}
