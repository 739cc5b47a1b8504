//! The incomplete-message deadline (`WebSocketConfig::message_timeout`): a
//! data message must end within the timeout of its first frame, even when
//! the peer proves itself alive with Pings in between (RFC 6455 §5.4 lets
//! control frames interleave with fragments). Runs on in-memory `duplex`
//! streams under paused time, so the deadline fires at an exact virtual
//! instant.

mod common;

use std::time::Duration;

use common::{client_frame, read_server_frame, stays_pending, within};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::time::Instant;
use wshub::{Error, Message, State, WebSocket, WebSocketConfig};
use wshub_proto::Role;

const TIMEOUT: Duration = Duration::from_secs(60);

/// A peer's Ping every `every`, for ever (until the connection is gone).
async fn ping_every(mut io: WriteHalf<DuplexStream>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if io.write_all(&client_frame(0x89, b"alive")).await.is_err() {
            return;
        }
    }
}

#[test]
fn the_default_is_60_seconds() {
    assert_eq!(WebSocketConfig::default().message_timeout, Some(TIMEOUT));
}

#[tokio::test(start_paused = true)]
async fn a_fragment_kept_open_by_pings_fails_the_connection_with_1008_at_the_timeout() {
    let (io, peer) = tokio::io::duplex(64 * 1024);
    let mut ws = WebSocket::from_raw(io, Role::Server, WebSocketConfig::default(), &[]);
    let (mut peer_read, mut peer_write) = tokio::io::split(peer);
    // A text message's first fragment (FIN clear), never continued.
    peer_write
        .write_all(&client_frame(0x01, b"hel"))
        .await
        .unwrap();
    let pinger = tokio::spawn(ping_every(peer_write, Duration::from_secs(25)));

    let start = Instant::now();
    let item = tokio::time::timeout(Duration::from_secs(3600), ws.next())
        .await
        .expect("the message timeout ends the wait, Pings or not");
    assert!(matches!(item, Some(Err(Error::MessageTimeout))), "{item:?}");
    assert_eq!(start.elapsed(), TIMEOUT);
    assert!(within("the stream to end", ws.next()).await.is_none());
    assert_eq!(ws.ready_state(), State::Closed);

    // The peer got a Pong for each Ping (at 25 s and 50 s), then our Close
    // with 1008, then the end of the stream.
    for _ in 0..2 {
        let (first, payload) = read_server_frame(&mut peer_read).await;
        assert_eq!((first, &payload[..]), (0x8a, &b"alive"[..]));
    }
    let (first, payload) = read_server_frame(&mut peer_read).await;
    assert_eq!(first, 0x88, "a Close, payload {payload:?}");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008);
    let mut rest = Vec::new();
    within("EOF", peer_read.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty(), "nothing after the Close: {rest:?}");
    pinger.abort();
}

#[tokio::test(start_paused = true)]
async fn each_message_has_its_own_deadline() {
    // Three messages of two fragments, each taking 40 s with a Ping in the
    // middle: 120 s in all, each well within 60 s.
    let (io, mut peer) = tokio::io::duplex(64 * 1024);
    let mut ws = WebSocket::from_raw(io, Role::Server, WebSocketConfig::default(), &[]);
    let peer_task = tokio::spawn(async move {
        for _ in 0..3 {
            peer.write_all(&client_frame(0x01, b"hello, "))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(20)).await;
            peer.write_all(&client_frame(0x89, b"")).await.unwrap();
            tokio::time::sleep(Duration::from_secs(20)).await;
            peer.write_all(&client_frame(0x80, b"world")).await.unwrap();
        }
        peer
    });
    for _ in 0..3 {
        // 40 s of virtual time each: longer than `within` allows.
        let item = tokio::time::timeout(Duration::from_secs(3600), ws.next())
            .await
            .expect("a message within the hour");
        assert_eq!(item.unwrap().unwrap(), Message::text("hello, world"));
    }
    let _peer = within("the peer", peer_task).await.unwrap();
    assert!(
        stays_pending(10 * TIMEOUT, ws.next()).await,
        "no message in progress, so no deadline: the connection stays open"
    );
    assert_eq!(ws.ready_state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn messages_sent_back_to_back_each_get_the_whole_timeout() {
    // Every read ends inside a message: each write ends one message and
    // begins the next, every 40 s, with a Ping in between. No message
    // takes 60 s, so none is cut off, over 200 s.
    let (io, mut peer) = tokio::io::duplex(64 * 1024);
    let mut ws = WebSocket::from_raw(io, Role::Server, WebSocketConfig::default(), &[]);
    let peer_task = tokio::spawn(async move {
        peer.write_all(&client_frame(0x02, b"\x00")).await.unwrap();
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            peer.write_all(&client_frame(0x89, b"")).await.unwrap();
            tokio::time::sleep(Duration::from_secs(20)).await;
            let mut wire = client_frame(0x80, b"\x01");
            wire.extend_from_slice(&client_frame(0x02, b"\x00"));
            peer.write_all(&wire).await.unwrap();
        }
        peer
    });
    for _ in 0..5 {
        let item = tokio::time::timeout(Duration::from_secs(3600), ws.next())
            .await
            .expect("a message within the hour");
        assert_eq!(item.unwrap().unwrap(), Message::binary(vec![0u8, 1]));
    }
    let _peer = within("the peer", peer_task).await.unwrap();
    assert_eq!(ws.ready_state(), State::Open);
    // The sixth message, begun at 200 s, never ends: cut off at 260 s.
    let start = Instant::now();
    let item = tokio::time::timeout(Duration::from_secs(3600), ws.next())
        .await
        .expect("the message timeout ends the wait");
    assert!(matches!(item, Some(Err(Error::MessageTimeout))), "{item:?}");
    assert_eq!(start.elapsed(), TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_fragment_that_arrives_with_the_handshake_starts_the_clock() {
    let (io, peer) = tokio::io::duplex(64 * 1024);
    let early = client_frame(0x02, b"\x00\x01");
    let mut ws = WebSocket::from_raw(io, Role::Server, WebSocketConfig::default(), &early);
    let (_peer_read, peer_write) = tokio::io::split(peer);
    let pinger = tokio::spawn(ping_every(peer_write, Duration::from_secs(10)));
    let start = Instant::now();
    let item = tokio::time::timeout(Duration::from_secs(3600), ws.next())
        .await
        .expect("the message timeout ends the wait");
    assert!(matches!(item, Some(Err(Error::MessageTimeout))), "{item:?}");
    assert_eq!(start.elapsed(), TIMEOUT);
    pinger.abort();
}

#[tokio::test(start_paused = true)]
async fn none_turns_it_off() {
    let (io, peer) = tokio::io::duplex(64 * 1024);
    let config = WebSocketConfig::default().message_timeout(None);
    let mut ws = WebSocket::from_raw(io, Role::Server, config, &[]);
    let (_peer_read, mut peer_write) = tokio::io::split(peer);
    peer_write
        .write_all(&client_frame(0x01, b"hel"))
        .await
        .unwrap();
    let pinger = tokio::spawn(ping_every(peer_write, Duration::from_secs(25)));
    assert!(stays_pending(10 * TIMEOUT, ws.next()).await);
    assert_eq!(ws.ready_state(), State::Open);
    pinger.abort();
}
