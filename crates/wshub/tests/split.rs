//! `WebSocket::split`: the reading and the writing half in separate tasks.

mod common;

use std::time::Duration;

use common::{read_server_frame, stays_pending, within, EchoServer};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use wshub::{CloseCode, Message, State, WebSocket, WebSocketConfig};
use wshub_proto::Role;

fn nth_message(i: usize) -> Message {
    if i.is_multiple_of(3) {
        Message::binary(vec![i as u8; 1 + i % 4096])
    } else {
        Message::text(format!("message {i} {}", "x".repeat(i % 1000)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halves_in_separate_tasks_echo_a_thousand_messages() {
    const COUNT: usize = 1000;
    let mut server = EchoServer::start(WebSocketConfig::default()).await;
    let ws = within("connect", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    let (mut reader, mut writer) = ws.split();

    let writing = tokio::spawn(async move {
        for i in 0..COUNT {
            writer.send(nth_message(i)).await.unwrap();
        }
        writer
    });
    let reading = tokio::spawn(async move {
        for i in 0..COUNT {
            let echoed = reader.next().await.expect("an echo").unwrap();
            assert_eq!(echoed, nth_message(i), "echo {i}");
        }
        reader
    });
    let mut writer = within("the writer", writing).await.unwrap();
    let mut reader = within("the reader", reading).await.unwrap();

    within("close", writer.close(CloseCode::NormalClosure, "done"))
        .await
        .unwrap();
    assert!(within("the stream to end", reader.next()).await.is_none());
    let event = reader.close_event().expect("closed");
    assert_eq!((event.code.as_u16(), event.was_clean), (1000, true));
    assert_eq!(writer.ready_state(), State::Closed);
    let server_side = server.next_outcome().await.close_event();
    assert_eq!(
        (server_side.code.as_u16(), server_side.reason.as_str()),
        (1000, "done")
    );
}

/// Reads one masked frame a client wrote: its first byte and unmasked payload.
async fn read_client_frame(io: &mut DuplexStream) -> (u8, Vec<u8>) {
    within("a client frame", async {
        let first = io.read_u8().await.unwrap();
        let second = io.read_u8().await.unwrap();
        assert_eq!(
            second & 0x80,
            0x80,
            "a client masks every frame (RFC 6455 §5.3)"
        );
        let mut key = [0u8; 4];
        io.read_exact(&mut key).await.unwrap();
        let mut payload = vec![0u8; usize::from(second & 0x7f)];
        io.read_exact(&mut payload).await.unwrap();
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
        (first, payload)
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn the_reader_answers_pings_while_the_writer_is_idle() {
    let (io, mut peer) = tokio::io::duplex(64 * 1024);
    let ws = WebSocket::from_raw(io, Role::Client, WebSocketConfig::default(), &[]);
    let (mut reader, mut writer) = ws.split();
    let reading = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(item) = reader.next().await {
            got.push(item.unwrap());
        }
        (got, reader.close_event())
    });
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let writing = tokio::spawn(async move {
        wait.await.unwrap();
        writer.send(Message::text("now")).await.unwrap();
        writer
    });

    for n in 0..3u8 {
        peer.write_all(&[0x89, 0x02, b'p', n]).await.unwrap();
        assert_eq!(
            read_client_frame(&mut peer).await,
            (0x8a, vec![b'p', n]),
            "Pong {n}"
        );
    }
    // The writer did not send anything in the meantime.
    assert!(stays_pending(Duration::from_secs(1), peer.read_u8()).await);

    go.send(()).unwrap();
    assert_eq!(read_client_frame(&mut peer).await, (0x81, b"now".to_vec()));
    let writer = within("the writer", writing).await.unwrap();

    peer.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    peer.write_all(&[0x88, 0x02, 0x03, 0xe8]).await.unwrap();
    assert_eq!(read_client_frame(&mut peer).await, (0x88, vec![0x03, 0xe8]));
    drop(peer);
    let (got, event) = within("the reader", reading).await.unwrap();
    assert_eq!(got, [Message::text("hi")]);
    assert_eq!(
        event.map(|e| (e.code.as_u16(), e.was_clean)),
        Some((1000, true))
    );
    assert_eq!(writer.ready_state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_server_reader_answers_pings_unmasked() {
    let (io, mut peer) = tokio::io::duplex(64 * 1024);
    let ws = WebSocket::from_raw(io, Role::Server, WebSocketConfig::default(), &[]);
    let (mut reader, _writer) = ws.split();
    tokio::spawn(async move { while reader.next().await.is_some() {} });
    peer.write_all(&common::client_frame(0x89, b"are you there"))
        .await
        .unwrap();
    assert_eq!(
        read_server_frame(&mut peer).await,
        (0x8a, b"are you there".to_vec())
    );
}

#[tokio::test]
async fn halves_reunite_into_the_websocket_and_strangers_do_not() {
    let server = EchoServer::start(WebSocketConfig::default()).await;
    let first = within("connect", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    let second = within("connect", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    let (mut reader, mut writer) = first.split();
    writer.send(Message::text("before")).await.unwrap();
    assert_eq!(
        within("echo", reader.next()).await.unwrap().unwrap(),
        Message::text("before")
    );
    let (other_reader, other_writer) = second.split();
    let mismatched = reader.reunite(other_writer).unwrap_err();
    let wshub::ReuniteError(reader, other_writer) = mismatched;
    let mut ws = reader.reunite(writer).expect("the halves of one WebSocket");
    assert!(other_reader.reunite(other_writer).is_ok());
    // Whole again: the same connection, sending and reading.
    assert!(ws.get_ref().peer_addr().is_ok());
    ws.send(Message::text("after")).await.unwrap();
    assert_eq!(
        within("echo", ws.next()).await.unwrap().unwrap(),
        Message::text("after")
    );
    let closed = within("close", ws.close(CloseCode::NormalClosure, ""))
        .await
        .unwrap();
    assert!(closed.was_clean);
}
