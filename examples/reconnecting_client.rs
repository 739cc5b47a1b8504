//! Seed 003's `WebSocketClass`: a client that passes every message to a
//! callback, sends `立即与服务器通信` each time it connects, keeps an
//! application heartbeat (text `ping` every 10 s; no `pong` within 20 s means
//! the connection is dead) and reconnects with randomized, growing delays
//! (`wshub::reconnect::Backoff`) until it is closed on purpose with
//! `close_myself()`.
//!
//! ```text
//! cargo run -p wshub-examples --example reconnecting_client [URL]
//! ```
//!
//! The URL defaults to `ws://127.0.0.1:3000`, the `heartbeat_server` example,
//! which answers `ping` with `{"type":0,"message":"pong"}`; start it first.
//! You will see on stdout each message as the callback gets it (`something`,
//! the broadcast of what this client sends, the server's heartbeats and the
//! pongs), and on stderr `connected`. Stop the server: stderr shows the
//! connection lost and the reconnect attempts; start it again and the client
//! is back. Ctrl-C calls `close_myself()`: the client closes with 1000 and
//! does not reconnect.

use wshub::Message;
use wshub_examples::reconnecting_client::{Options, WebSocketClient, DEFAULT_URL};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wshub_examples::init_tracing();
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let options = Options {
        name: "wsName".to_owned(),
        ..Options::default()
    };
    let client = WebSocketClient::connect(
        url,
        Some("立即与服务器通信".to_owned()),
        options,
        |message| match message {
            Message::Text(text) => println!("接收服务器消息的回调 (message callback): {text}"),
            Message::Binary(bytes) => {
                println!(
                    "接收服务器消息的回调 (message callback): {:02x?}",
                    &bytes[..]
                )
            }
        },
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    client.send("传消息给服务器").await?;
    tokio::signal::ctrl_c().await?;
    client.close_myself().await;
    Ok(())
}
