//! `WebSocket::recv_incoming`: Pings and Pongs reach an application that
//! asks for them, in order with the messages, while `recv` and the `Stream`
//! still skip them.

mod common;

use common::within;
use futures_util::StreamExt;
use wshub::{Incoming, Message, Role, WebSocket, WebSocketConfig};

fn pair() -> (
    WebSocket<tokio::io::DuplexStream>,
    WebSocket<tokio::io::DuplexStream>,
) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let client = WebSocket::from_raw(a, Role::Client, WebSocketConfig::default(), &[]);
    let server = WebSocket::from_raw(b, Role::Server, WebSocketConfig::default(), &[]);
    (client, server)
}

/// Reads until the end, as an application does; the Pongs owed go out as
/// it reads.
async fn keep_reading(mut ws: WebSocket<tokio::io::DuplexStream>) {
    while let Some(Ok(_)) = ws.recv_incoming().await {}
}

#[tokio::test]
async fn pings_and_pongs_arrive_in_order_with_the_messages() {
    let (mut client, mut server) = pair();
    client.ping(b"t1").await.unwrap();
    client.send(Message::text("between")).await.unwrap();
    server.ping(b"from server").await.unwrap();

    // The server sees the client's Ping, then the message, and has answered
    // the Ping by itself.
    let first = within("the Ping", server.recv_incoming()).await;
    assert_eq!(first.unwrap().unwrap(), Incoming::Ping("t1".into()));
    let second = within("the message", server.recv_incoming()).await;
    assert_eq!(
        second.unwrap().unwrap(),
        Incoming::Message(Message::text("between"))
    );
    // The Pongs the server owes are written as it goes on reading.
    tokio::spawn(keep_reading(server));
    // The client sees the server's Ping and the Pong answering its own.
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(
            within("a control frame", client.recv_incoming())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(
        seen.contains(&Incoming::Ping("from server".into())),
        "{seen:?}"
    );
    assert!(seen.contains(&Incoming::Pong("t1".into())), "{seen:?}");
}

#[tokio::test]
async fn recv_and_the_stream_still_skip_control_frames() {
    let (mut client, mut server) = pair();
    client.ping(b"skipped").await.unwrap();
    client.send(Message::text("one")).await.unwrap();
    client.ping(b"skipped too").await.unwrap();
    client.send(Message::binary(vec![2u8])).await.unwrap();
    let one = within("the first message", server.recv()).await;
    assert_eq!(one.unwrap().unwrap(), Message::text("one"));
    let two = within("the second message", server.next()).await;
    assert_eq!(two.unwrap().unwrap(), Message::binary(vec![2u8]));
    // Both Pings were answered all the same.
    tokio::spawn(keep_reading(server));
    for payload in ["skipped", "skipped too"] {
        let pong = within("a Pong", client.recv_incoming()).await;
        assert_eq!(pong.unwrap().unwrap(), Incoming::Pong(payload.into()));
    }
}

#[tokio::test]
async fn the_split_reader_sees_control_frames_too() {
    let (mut client, server) = pair();
    let (mut reader, _writer) = server.split();
    client.ping(b"r").await.unwrap();
    let ping = within("the Ping", reader.recv_incoming()).await;
    assert_eq!(ping.unwrap().unwrap(), Incoming::Ping("r".into()));
    drop(client);
    // The stream ends once the peer is gone.
    let end = within("the end", reader.recv_incoming()).await;
    assert!(matches!(end, None | Some(Err(_))), "{end:?}");
}

#[tokio::test]
async fn an_unasked_pong_reaches_the_peer() {
    let (mut client, mut server) = pair();
    client.pong(b"beat").await.unwrap();
    let pong = within("the Pong", server.recv_incoming()).await;
    assert_eq!(pong.unwrap().unwrap(), Incoming::Pong("beat".into()));
}
