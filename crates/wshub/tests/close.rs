//! The closing handshake (RFC 6455 §5.5.1, §7): ready states, close events on
//! both sides, abnormal closure, and the close timeout.

mod common;

use std::time::Duration;

use common::{read_server_frame, within, EchoServer};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;
use tokio::time::Instant;
use wshub::{CloseCode, CloseEvent, Error, Message, State, WebSocket, WebSocketConfig};
use wshub_proto::{Role, SendError};

fn event(code: u16, reason: &str, was_clean: bool) -> CloseEvent {
    CloseEvent {
        code: CloseCode::from(code),
        reason: reason.to_owned(),
        was_clean,
    }
}

/// Reads one masked client-to-server frame from the raw end of a duplex:
/// its first byte and unmasked payload.
async fn read_client_frame(io: &mut DuplexStream) -> (u8, Vec<u8>) {
    let first = io.read_u8().await.unwrap();
    let second = io.read_u8().await.unwrap();
    assert_eq!(
        second & 0x80,
        0x80,
        "a client masks every frame (RFC 6455 §5.3)"
    );
    let len = usize::from(second & 0x7f);
    assert!(len <= 125, "control frames only in these tests");
    let mut key = [0u8; 4];
    io.read_exact(&mut key).await.unwrap();
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await.unwrap();
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
    (first, payload)
}

#[tokio::test]
async fn client_close_with_4001_bye_reaches_the_server_as_a_clean_close() {
    let mut server = EchoServer::start(WebSocketConfig::default()).await;
    let mut ws = within("connect", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    assert_eq!(ws.ready_state(), State::Open);
    assert_eq!(ws.close_event(), None);

    let ours = within("close", ws.close(CloseCode::Other(4001), "bye"))
        .await
        .unwrap();
    // The server echoes the code without a reason (§5.5.1).
    assert_eq!(ours, event(4001, "", true));
    assert_eq!(ws.ready_state(), State::Closed);
    assert_eq!(ws.close_event(), Some(ours));
    assert_eq!(
        server.next_outcome().await.close_event(),
        event(4001, "bye", true)
    );

    // Closing again reports the same ending and sends nothing.
    let again = within("second close", ws.close(CloseCode::NormalClosure, ""))
        .await
        .unwrap();
    assert_eq!(again, event(4001, "", true));
    assert!(matches!(
        within("send after close", ws.send(Message::text("late"))).await,
        Err(Error::ConnectionClosed)
    ));
}

#[tokio::test]
async fn ready_state_goes_open_closing_closed_around_close() {
    let mut server = EchoServer::start(WebSocketConfig::default()).await;
    let ws = within("connect", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    let (mut reader, mut writer) = ws.split();
    assert_eq!(writer.ready_state(), State::Open);

    within("close", writer.close(CloseCode::Other(4001), "bye"))
        .await
        .unwrap();
    // Our Close is out, the server's has not been read yet.
    assert_eq!(writer.ready_state(), State::Closing);
    assert_eq!(reader.ready_state(), State::Closing);
    assert_eq!(reader.close_event(), None);
    assert!(matches!(
        within("send while closing", writer.send(Message::text("late"))).await,
        Err(Error::ConnectionClosed)
    ));

    assert!(within("the stream to end", reader.next()).await.is_none());
    assert_eq!(reader.ready_state(), State::Closed);
    assert_eq!(writer.ready_state(), State::Closed);
    assert_eq!(writer.close_event(), Some(event(4001, "", true)));
    assert_eq!(
        server.next_outcome().await.close_event(),
        event(4001, "bye", true)
    );
}

#[tokio::test]
async fn server_initiated_close_is_clean_on_both_sides() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = wshub::accept(tcp).await.unwrap();
        assert_eq!(ws.ready_state(), State::Open);
        let event = ws.close(CloseCode::GoingAway, "restarting").await.unwrap();
        (event, ws.ready_state())
    });

    let mut client = within("connect", wshub::connect(&format!("ws://{addr}/")))
        .await
        .unwrap();
    assert!(within("the stream to end", client.next()).await.is_none());
    assert_eq!(client.ready_state(), State::Closed);
    assert_eq!(client.close_event(), Some(event(1001, "restarting", true)));

    let (server_event, server_state) = within("the server's close", server).await.unwrap();
    assert_eq!(server_event, event(1001, "", true));
    assert_eq!(server_state, State::Closed);
}

#[tokio::test]
async fn client_dropping_tcp_without_close_is_abnormal_closure_1006() {
    let mut server = EchoServer::start(WebSocketConfig::default()).await;
    let mut ws = within("connect", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    within("send", ws.send(Message::text("hi"))).await.unwrap();
    assert_eq!(
        within("echo", ws.next()).await.unwrap().unwrap(),
        Message::text("hi")
    );
    drop(ws);
    assert_eq!(
        server.next_outcome().await.close_event(),
        event(1006, "", false)
    );
    server.assert_still_serving().await;
}

#[tokio::test]
async fn server_dropping_tcp_without_close_is_abnormal_closure_1006() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        drop(wshub::accept(tcp).await.unwrap());
    });
    let mut client = within("connect", wshub::connect(&format!("ws://{addr}/")))
        .await
        .unwrap();
    // EOF ends the stream; a reset surfaces as an I/O error first.
    while let Some(item) = within("the stream to end", client.next()).await {
        assert!(matches!(item, Err(Error::Io(_))), "{item:?}");
    }
    assert_eq!(client.ready_state(), State::Closed);
    assert_eq!(client.close_event(), Some(event(1006, "", false)));
}

#[tokio::test]
async fn a_close_code_that_may_not_be_sent_is_refused_and_nothing_is_sent() {
    let mut server = EchoServer::start(WebSocketConfig::default()).await;
    let mut ws = within("connect", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    let refused = within("close", ws.close(CloseCode::NoStatusReceived, "")).await;
    assert!(
        matches!(
            refused,
            Err(Error::Send(SendError::InvalidCloseCode { code: 1005 }))
        ),
        "{refused:?}"
    );
    let refused = within(
        "close",
        ws.close(CloseCode::NormalClosure, &"x".repeat(124)),
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(Error::Send(SendError::ReasonTooLong { len: 124 }))
        ),
        "{refused:?}"
    );
    // The connection is untouched.
    assert_eq!(ws.ready_state(), State::Open);
    within("send", ws.send(Message::text("still open")))
        .await
        .unwrap();
    assert_eq!(
        within("echo", ws.next()).await.unwrap().unwrap(),
        Message::text("still open")
    );
    within("close", ws.close(CloseCode::NormalClosure, ""))
        .await
        .unwrap();
    assert_eq!(
        server.next_outcome().await.close_event(),
        event(1000, "", true)
    );
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_close_ends_the_stream_after_the_close_timeout() {
    let (io, mut peer) = tokio::io::duplex(64 * 1024);
    let config = WebSocketConfig::default().close_timeout(Duration::from_secs(3));
    let mut ws = WebSocket::from_raw(io, Role::Client, config, &[]);

    let start = Instant::now();
    let ended = tokio::time::timeout(
        Duration::from_secs(60),
        ws.close(CloseCode::NormalClosure, "done"),
    )
    .await
    .expect("the close timeout ends the wait")
    .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(ended, event(1006, "", false));
    assert_eq!(ws.ready_state(), State::Closed);

    // The peer got our Close, then the transport was shut down.
    let (first, payload) = read_client_frame(&mut peer).await;
    assert_eq!(first, 0x88);
    assert_eq!(payload, b"\x03\xe8done");
    assert_eq!(peer.read(&mut [0u8; 16]).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_client_waits_up_to_the_close_timeout_for_the_server_to_close_tcp() {
    let (io, mut peer) = tokio::io::duplex(64 * 1024);
    let config = WebSocketConfig::default().close_timeout(Duration::from_secs(3));
    let mut ws = WebSocket::from_raw(io, Role::Client, config, &[]);
    // The peer answers the Close right away but keeps TCP open.
    let answer = tokio::spawn(async move {
        let (first, payload) = read_client_frame(&mut peer).await;
        assert_eq!((first, payload.as_slice()), (0x88, &b"\x03\xe8"[..]));
        peer.write_all(&[0x88, 0x02, 0x03, 0xe8]).await.unwrap();
        peer
    });

    let start = Instant::now();
    let ended = tokio::time::timeout(
        Duration::from_secs(60),
        ws.close(CloseCode::NormalClosure, ""),
    )
    .await
    .expect("the close timeout ends the wait")
    .unwrap();
    // The handshake completed, so the close is clean even though TCP lingered.
    assert_eq!(ended, event(1000, "", true));
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    let mut peer = answer.await.unwrap();
    assert_eq!(
        peer.read(&mut [0u8; 16]).await.unwrap(),
        0,
        "the client shut down its side"
    );
}

#[tokio::test(start_paused = true)]
async fn a_close_without_a_code_is_reported_as_1005_and_echoed_empty() {
    let (io, mut peer) = tokio::io::duplex(64 * 1024);
    let mut ws = WebSocket::from_raw(io, Role::Client, WebSocketConfig::default(), &[]);
    peer.write_all(&[0x88, 0x00]).await.unwrap();
    let echo = tokio::spawn(async move {
        let frame = read_client_frame(&mut peer).await;
        drop(peer); // the server closes TCP first (§7.1.1)
        frame
    });
    assert!(within("the stream to end", ws.next()).await.is_none());
    assert_eq!(ws.close_event(), Some(event(1005, "", true)));
    assert_eq!(within("the echo", echo).await.unwrap(), (0x88, Vec::new()));
}

#[tokio::test(start_paused = true)]
async fn a_server_echoes_the_peers_close_code() {
    let (io, mut peer) = tokio::io::duplex(64 * 1024);
    let mut ws = WebSocket::from_raw(io, Role::Server, WebSocketConfig::default(), &[]);
    peer.write_all(&common::client_frame(0x88, b"\x0f\xa1bye"))
        .await
        .unwrap();
    assert!(within("the stream to end", ws.next()).await.is_none());
    assert_eq!(ws.close_event(), Some(event(4001, "bye", true)));
    let (first, payload) = read_server_frame(&mut peer).await;
    assert_eq!((first, payload.as_slice()), (0x88, &b"\x0f\xa1"[..]));
    // The server closes the transport after the handshake (§7.1.1).
    assert_eq!(within("EOF", peer.read(&mut [0u8; 16])).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_close_timeout_also_bounds_a_peer_that_stopped_reading() {
    // The peer's receive window (1 KiB) is full and it never reads again.
    let (io, _peer) = tokio::io::duplex(1024);
    let config = WebSocketConfig::default().close_timeout(Duration::from_secs(3));
    let mut ws = WebSocket::from_raw(io, Role::Client, config, &[]);
    within("feed", ws.feed(Message::binary(vec![0u8; 64 * 1024])))
        .await
        .unwrap();

    let start = Instant::now();
    let ended = tokio::time::timeout(
        Duration::from_secs(60),
        ws.close(CloseCode::NormalClosure, ""),
    )
    .await
    .expect("the close timeout ends the wait even with writes stuck")
    .unwrap();
    assert_eq!(ended, event(1006, "", false));
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(ws.ready_state(), State::Closed);
}
