//! The `broadcast_server` example: chat messages to everyone as
//! `{"type":2,...}`, a `{"type":1,...}` heartbeat to each client, and a client
//! that stops reading dropped without holding the others back.

mod common;
// The example file itself, so the code tested is the code shown. Its `main`
// is not called here.
#[allow(dead_code)]
#[path = "../broadcast_server.rs"]
pub mod broadcast_server;

use std::time::Duration;

use broadcast_server::{Config, HEARTBEAT_TEXT, MESSAGE};
use common::{next_text, within, Server};
use wshub::{Message, WebSocket};

/// The `message` of the next envelope of `kind`, skipping others (heartbeats).
async fn next_of_kind(ws: &mut WebSocket<wshub::ClientStream>, kind: u8) -> String {
    loop {
        let text = next_text(ws).await;
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        if json["type"] == kind {
            return json["message"]
                .as_str()
                .expect("a string message")
                .to_owned();
        }
    }
}

#[tokio::test]
async fn a_message_reaches_every_open_client_as_type_2_json() {
    let server = Server::start(|l| broadcast_server::run(l, Config::default())).await;
    let mut a = within("connect a", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    // Receiving its own broadcast shows `a` is subscribed by now.
    a.send(Message::text("a is here")).await.unwrap();
    assert_eq!(next_of_kind(&mut a, MESSAGE).await, "a is here");

    let mut b = within("connect b", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    b.send(Message::text("你好")).await.unwrap();
    let raw = loop {
        let text = next_text(&mut a).await;
        if !text.contains(HEARTBEAT_TEXT) {
            break text;
        }
    };
    assert_eq!(raw, r#"{"type":2,"message":"你好"}"#);
    assert_eq!(next_of_kind(&mut b, MESSAGE).await, "你好");
}

#[tokio::test]
async fn binary_messages_are_broadcast_as_their_text() {
    let server = Server::start(|l| broadcast_server::run(l, Config::default())).await;
    let mut a = within("connect", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    a.send(Message::binary(&b"bytes"[..])).await.unwrap();
    assert_eq!(next_of_kind(&mut a, MESSAGE).await, "bytes");
}

#[tokio::test]
async fn each_client_gets_a_heartbeat_every_interval() {
    let config = Config {
        heartbeat_interval: Duration::from_millis(50),
        ..Config::default()
    };
    let server = Server::start(|l| broadcast_server::run(l, config)).await;
    let mut a = within("connect", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    for _ in 0..3 {
        let raw = next_text(&mut a).await;
        assert_eq!(raw, r#"{"type":1,"message":"心跳检测"}"#);
    }
    let closed = within("close", a.close(wshub::CloseCode::NormalClosure, ""))
        .await
        .unwrap();
    assert!(
        closed.was_clean,
        "heartbeats do not disturb the close handshake"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_the_others_carry_on() {
    let config = Config {
        backlog: 8,
        write_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let server = Server::start(|l| broadcast_server::run(l, config)).await;
    let mut fast = within("connect fast", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    fast.send(Message::text("fast is here")).await.unwrap();
    assert_eq!(next_of_kind(&mut fast, MESSAGE).await, "fast is here");
    let mut slow = within("connect slow", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    slow.send(Message::text("slow is here")).await.unwrap();
    assert_eq!(next_of_kind(&mut fast, MESSAGE).await, "slow is here");

    // `slow` is not polled from here on, so it reads nothing. 32 MiB of
    // broadcasts is more than the loopback socket buffers hold.
    let big = "x".repeat(64 * 1024);
    let count = 512;
    for _ in 0..count {
        fast.send(Message::text(big.as_str())).await.unwrap();
        assert_eq!(next_of_kind(&mut fast, MESSAGE).await.len(), big.len());
    }

    // Now `slow` reads what reached it before the server gave up on it, then
    // finds the connection gone.
    let mut received = 0;
    within("the slow client's connection ends", async {
        while let Some(Ok(_)) = slow.recv().await {
            received += 1;
        }
    })
    .await;
    assert!(received < count, "got all {count} broadcasts");
    // Dropped after a stalled write, or closed with 1008 for lagging behind.
    let event = slow.close_event().unwrap();
    assert!(
        !event.was_clean || event.code == wshub::CloseCode::PolicyViolation,
        "{event:?}"
    );
}
