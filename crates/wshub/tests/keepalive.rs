//! Keepalive (RFC 6455 §5.5.2): a Ping every interval, a dead peer dropped
//! after the pong timeout. Every test runs on in-memory `duplex` streams under
//! paused time, so the timers fire at exact virtual instants.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{stays_pending, within};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;
use wshub::{CloseCode, CloseEvent, Error, Message, State, WebSocket, WebSocketConfig};
use wshub_proto::{Connection, Event, Role};

const INTERVAL: Duration = Duration::from_secs(10);
const PONG_TIMEOUT: Duration = Duration::from_secs(5);

fn keepalive() -> WebSocketConfig {
    WebSocketConfig::default()
        .ping_interval(Some(INTERVAL))
        .pong_timeout(PONG_TIMEOUT)
}

fn abnormal() -> CloseEvent {
    CloseEvent::abnormal()
}

/// Waits (in virtual time) for the keepalive to give up on a silent peer and
/// checks it did so exactly at interval + pong timeout.
async fn assert_keepalive_timeout<S>(ws: &mut WebSocket<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let start = Instant::now();
    let item = tokio::time::timeout(Duration::from_secs(3600), ws.next())
        .await
        .expect("the keepalive gives up within the hour");
    assert!(
        matches!(item, Some(Err(Error::KeepaliveTimeout))),
        "{item:?}"
    );
    assert_eq!(start.elapsed(), INTERVAL + PONG_TIMEOUT);
    assert!(within("the stream to end", ws.next()).await.is_none());
    assert_eq!(ws.ready_state(), State::Closed);
    assert_eq!(ws.close_event(), Some(abnormal()));
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_dropped_after_interval_plus_pong_timeout() {
    for role in [Role::Client, Role::Server] {
        let (io, mut peer) = tokio::io::duplex(64 * 1024);
        let mut ws = WebSocket::from_raw(io, role, keepalive(), &[]);
        assert_keepalive_timeout(&mut ws).await;

        // The peer was sent exactly one Ping, then the transport was shut down.
        let mut wire = Vec::new();
        within("EOF", peer.read_to_end(&mut wire)).await.unwrap();
        assert_eq!(wire[0], 0x89, "{role:?} sent {wire:?}");
        let masked = role == Role::Client;
        let header_len = if masked { 6 } else { 2 };
        assert_eq!(
            wire.len(),
            header_len + usize::from(wire[1] & 0x7f),
            "{role:?} sent {wire:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stopped_reading_is_dropped_too() {
    // The peer's 1 KiB window is full: neither the queued message nor the
    // keepalive Ping can be written, and waiting for them must not stall the
    // timeout.
    let (io, _peer) = tokio::io::duplex(1024);
    let mut ws = WebSocket::from_raw(io, Role::Server, keepalive(), &[]);
    within("feed", ws.feed(Message::binary(vec![0u8; 64 * 1024])))
        .await
        .unwrap();
    assert_keepalive_timeout(&mut ws).await;
}

#[tokio::test(start_paused = true)]
async fn an_answering_peer_keeps_the_connection_open_across_many_intervals() {
    let (io, peer) = tokio::io::duplex(64 * 1024);
    let mut ws = WebSocket::from_raw(io, Role::Client, keepalive(), &[]);
    // The peer is a plain WebSocket being read: it answers Pings by itself.
    let mut peer = WebSocket::from_raw(peer, Role::Server, WebSocketConfig::default(), &[]);
    let peer_task = tokio::spawn(async move {
        while let Some(item) = peer.next().await {
            item.unwrap();
        }
        peer.close_event()
    });

    assert!(
        stays_pending(30 * INTERVAL, ws.next()).await,
        "no message, no error, no end"
    );
    assert_eq!(ws.ready_state(), State::Open);

    let event = within("close", ws.close(CloseCode::NormalClosure, ""))
        .await
        .unwrap();
    assert!(event.was_clean, "{event:?}");
    let peer_event = within("the peer to end", peer_task).await.unwrap().unwrap();
    assert_eq!(
        (peer_event.code.as_u16(), peer_event.was_clean),
        (1000, true)
    );
}

/// Serves `io` as a server-side sans-IO [`Connection`], counting the Pings it
/// receives; it answers each with a Pong unless `answer` is off.
async fn counting_peer(mut io: DuplexStream, answer: bool, pings: Arc<AtomicUsize>) {
    let mut conn = Connection::new(
        Role::Server,
        wshub_proto::Config::default().auto_pong(answer),
    );
    let mut buf = [0u8; 4096];
    loop {
        let n = io.read(&mut buf).await.unwrap();
        if n == 0 {
            return;
        }
        conn.receive(&buf[..n]).unwrap();
        for event in conn.events() {
            if let Event::Ping(_) = event {
                pings.fetch_add(1, Ordering::SeqCst);
            }
        }
        io.write_all(&conn.take_outgoing()).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn pings_go_out_once_per_interval_while_the_peer_answers() {
    let (io, peer) = tokio::io::duplex(64 * 1024);
    let mut ws = WebSocket::from_raw(io, Role::Client, keepalive(), &[]);
    let pings = Arc::new(AtomicUsize::new(0));
    tokio::spawn(counting_peer(peer, true, pings.clone()));

    // Pongs come back at once, so Pings go out at 10 s, 20 s, ..., 100 s.
    assert!(stays_pending(10 * INTERVAL + INTERVAL / 2, ws.next()).await);
    assert_eq!(pings.load(Ordering::SeqCst), 10);
    assert_eq!(ws.ready_state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_receives_pings_but_never_pongs_is_dropped() {
    let (io, peer) = tokio::io::duplex(64 * 1024);
    let mut ws = WebSocket::from_raw(io, Role::Client, keepalive(), &[]);
    let pings = Arc::new(AtomicUsize::new(0));
    tokio::spawn(counting_peer(peer, false, pings.clone()));
    assert_keepalive_timeout(&mut ws).await;
    assert_eq!(pings.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn any_frame_from_the_peer_proves_it_alive() {
    let (io, peer) = tokio::io::duplex(64 * 1024);
    let mut ws = WebSocket::from_raw(io, Role::Client, keepalive(), &[]);
    // The peer never answers Pings but sends a message every 4 s, well within
    // each pong timeout.
    let (mut peer_rx, mut peer_tx) = tokio::io::split(peer);
    tokio::spawn(async move { tokio::io::copy(&mut peer_rx, &mut tokio::io::sink()).await });
    tokio::spawn(async move {
        let mut every = tokio::time::interval_at(
            Instant::now() + Duration::from_secs(4),
            Duration::from_secs(4),
        );
        loop {
            every.tick().await;
            if peer_tx
                .write_all(&[0x81, 0x04, b't', b'i', b'c', b'k'])
                .await
                .is_err()
            {
                return;
            }
        }
    });

    let start = Instant::now();
    for _ in 0..30 {
        let item = within("a tick", ws.next()).await;
        assert_eq!(item.unwrap().unwrap(), Message::text("tick"));
    }
    assert_eq!(start.elapsed(), Duration::from_secs(120));
    assert_eq!(ws.ready_state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn keepalive_is_off_by_default() {
    let (io, mut peer) = tokio::io::duplex(64 * 1024);
    let mut ws = WebSocket::from_raw(io, Role::Client, WebSocketConfig::default(), &[]);
    assert!(stays_pending(Duration::from_secs(24 * 3600), ws.next()).await);
    assert_eq!(ws.ready_state(), State::Open);
    // Nothing was written: no Ping.
    assert!(stays_pending(Duration::from_secs(1), peer.read_u8()).await);
}
