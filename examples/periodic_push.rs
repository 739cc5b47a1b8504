//! Seed 002's express-ws route, `router.ws("/test", …)` mounted at
//! `/websocket`: a WebSocket on `/websocket/test` only. On connect it sends
//! `连接成功`, then pushes a random number with two decimals
//! (`Math.random().toFixed(2)`) every second while open, and echoes whatever
//! it receives. Other paths get 404; a plain HTTP GET of the route gets
//! 426 Upgrade Required.
//!
//! It shows routing by path before the upgrade, with
//! `wshub::server::read_request`, `wshub_proto::handshake::validate_request`
//! and `wshub::server::upgrade`.
//!
//! ```text
//! cargo run -p wshub-examples --example periodic_push [ADDR]
//! ```
//!
//! It listens on `127.0.0.1:3000` unless given another address. You will see
//! `push server listening` on stderr. Then
//! `cargo run -p wshub-examples --example client -- ws://127.0.0.1:3000/websocket/test`
//! prints `连接成功`, a number such as `0.42` every second and the echo of
//! `Hello Server!`; `curl -i http://127.0.0.1:3000/websocket/test` shows the
//! 426 and `curl -i http://127.0.0.1:3000/other` the 404. Ctrl-C stops it.

use tokio::net::TcpListener;
use wshub_examples::periodic_push;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wshub_examples::init_tracing();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| periodic_push::ADDR.to_owned());
    let listener = TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, path = periodic_push::PATH, "push server listening");
    tokio::select! {
        () = periodic_push::run(listener, periodic_push::Config::default()) => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
    }
    Ok(())
}
