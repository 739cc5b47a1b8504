//! The `heartbeat_server` example: Pings that drop a dead peer and spare a
//! live one, `something` on connect, `ping` answered with the JSON pong,
//! everything else echoed.

mod common;
// The example file itself, so the code tested is the code shown. Its `main`
// is not called here.
#[allow(dead_code)]
#[path = "../heartbeat_server.rs"]
pub mod heartbeat_server;

use std::time::Duration;

use common::{next, next_text, within, Server};
use heartbeat_server::{Config, GREETING, PONG};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wshub::Message;

#[tokio::test]
async fn ping_is_answered_with_the_json_pong_and_the_rest_echoed() {
    let server = Server::start(|l| heartbeat_server::run(l, Config::default())).await;
    let mut ws = within("connect", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, GREETING);

    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, PONG);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("hello"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(vec![1u8, 2, 3]));
}

/// Opens a WebSocket by hand and then reads raw bytes until the server
/// closes TCP, never answering anything: a peer that is gone.
async fn dead_peer(addr: std::net::SocketAddr) -> Vec<u8> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    // The server drops the connection without a close handshake, which may
    // reach us as a reset rather than an end of stream.
    let _ = tcp.read_to_end(&mut received).await;
    received
}

#[tokio::test]
async fn a_peer_that_does_not_answer_the_pings_is_dropped_and_a_live_one_kept() {
    let config = Config {
        ping_interval: Duration::from_millis(50),
        // Long enough that a busy test machine does not drop the live client.
        pong_timeout: Duration::from_millis(500),
    };
    let server = Server::start(|l| heartbeat_server::run(l, config)).await;
    let mut live = within("connect", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    assert_eq!(next_text(&mut live).await, GREETING);

    // While the dead peer waits to be dropped, `live` is polled, so it
    // answers every Ping; the server sends it nothing else.
    let dropped = within("the dead peer is dropped", async {
        tokio::select! {
            received = dead_peer(server.addr) => received,
            unexpected = live.recv() => panic!("the live client got {unexpected:?}"),
        }
    })
    .await;
    assert!(dropped.starts_with(b"HTTP/1.1 101 "));
    let head_end = dropped.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let frames = &dropped[head_end..];
    // The greeting (a text frame), then at least one Ping (opcode 0x9, §5.5.2).
    assert_eq!(frames[0], 0x81);
    let greeting_end = 2 + frames[1] as usize;
    assert_eq!(frames[greeting_end], 0x89, "{frames:02x?}");

    // `live` was open for all of that, ten Ping rounds or more, and still
    // talks.
    live.send(Message::text("ping")).await.unwrap();
    assert_eq!(next_text(&mut live).await, PONG);
}
