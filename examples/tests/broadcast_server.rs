//! The `broadcast_server` example (seed 000): chat messages to everyone as
//! `{"type":2,...}`, a `{"type":1,...}` heartbeat to each client.

mod common;

use std::time::Duration;

use common::{next_text, within, Server};
use tokio::net::TcpStream;
use wshub::{Message, WebSocket};
use wshub_examples::broadcast_server::{self, Config, HEART, HEARTBEAT_TEXT, MESSAGE};
use wshub_examples::Envelope;

/// The next envelope of `kind`, skipping others (heartbeats).
async fn next_of_kind(ws: &mut WebSocket<TcpStream>, kind: u8) -> Envelope {
    loop {
        let text = next_text(ws).await;
        let envelope = Envelope::parse(&text).unwrap_or_else(|| panic!("not JSON: {text}"));
        if envelope.kind == kind {
            return envelope;
        }
    }
}

#[tokio::test]
async fn a_message_reaches_every_open_client_as_type_2_json() {
    let server = Server::start(|l| broadcast_server::run(l, Config::default())).await;
    let mut a = within("connect a", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    // Receiving its own broadcast shows `a` is a member by now.
    a.send(Message::text("a is here")).await.unwrap();
    assert_eq!(next_of_kind(&mut a, MESSAGE).await.message, "a is here");

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
    assert_eq!(
        next_of_kind(&mut b, MESSAGE).await,
        Envelope::new(MESSAGE, "你好")
    );
}

#[tokio::test]
async fn binary_messages_are_broadcast_as_their_text() {
    let server = Server::start(|l| broadcast_server::run(l, Config::default())).await;
    let mut a = within("connect", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    a.send(Message::binary(&b"bytes"[..])).await.unwrap();
    assert_eq!(next_of_kind(&mut a, MESSAGE).await.message, "bytes");
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
        assert_eq!(
            Envelope::parse(&raw).unwrap(),
            Envelope::new(HEART, HEARTBEAT_TEXT)
        );
    }
    let closed = within("close", a.close(wshub::CloseCode::NormalClosure, ""))
        .await
        .unwrap();
    assert!(
        closed.was_clean,
        "heartbeats do not disturb the close handshake"
    );
}
