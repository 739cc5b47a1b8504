//! Backpressure: with a peer that does not read, sending waits once
//! `write_buffer_limit` bytes are queued, the queue stays bounded, and sending
//! resumes as soon as the peer reads again.

mod common;

use std::time::Duration;

use common::{stays_pending, within};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wshub::{CloseCode, Message, WebSocket, WebSocketConfig};
use wshub_proto::Role;

const LIMIT: usize = 16 * 1024;
const MESSAGE_LEN: usize = 4 * 1024;
/// A frame of [`MESSAGE_LEN`] payload bytes with its 4-byte header (§5.2).
const FRAME_LEN: usize = MESSAGE_LEN + 4;

fn nth_message(i: usize) -> Message {
    let mut payload = vec![0u8; MESSAGE_LEN];
    payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Message::binary(payload)
}

#[tokio::test(start_paused = true)]
async fn sending_waits_for_a_peer_that_does_not_read_then_resumes() {
    // 4 KiB of room in the pipe and a peer that does not read yet.
    let (io, peer) = tokio::io::duplex(4096);
    let config = WebSocketConfig::default().write_buffer_limit(LIMIT);
    let mut ws = WebSocket::from_raw(io, Role::Server, config, &[]);

    let mut fed = 0;
    loop {
        assert!(fed < 100, "sending never waited");
        if stays_pending(Duration::from_secs(1), ws.feed(nth_message(fed))).await {
            break;
        }
        fed += 1;
        assert!(
            ws.buffered_amount() < LIMIT + FRAME_LEN,
            "{} bytes queued",
            ws.buffered_amount()
        );
    }
    assert!(fed * FRAME_LEN >= LIMIT, "waited after only {fed} messages");
    assert!(
        ws.buffered_amount() >= LIMIT - FRAME_LEN,
        "{} bytes queued",
        ws.buffered_amount()
    );
    // `send` waits too, and a later look finds the queue no bigger.
    let queued = ws.buffered_amount();
    assert!(stays_pending(Duration::from_secs(60), ws.send(nth_message(fed))).await);
    assert_eq!(ws.buffered_amount(), queued);

    // The peer starts reading: the waiting send goes through.
    let mut peer = WebSocket::from_raw(peer, Role::Client, WebSocketConfig::default(), &[]);
    let reading = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(item) = peer.next().await {
            got.push(item.unwrap());
        }
        got
    });
    within("send after the peer reads", ws.send(nth_message(fed)))
        .await
        .unwrap();
    assert_eq!(ws.buffered_amount(), 0);

    let closed = within("close", ws.close(CloseCode::NormalClosure, ""))
        .await
        .unwrap();
    assert!(closed.was_clean);
    let got = within("the peer", reading).await.unwrap();
    assert_eq!(got.len(), fed + 1);
    assert!(
        got.iter().enumerate().all(|(i, m)| *m == nth_message(i)),
        "lost or reordered"
    );
}

#[tokio::test]
async fn sending_over_tcp_waits_while_the_server_does_not_read() {
    const TCP_LIMIT: usize = 64 * 1024;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (start_reading, wait) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = wshub::accept(tcp).await.unwrap();
        // Upgraded, then deaf until told otherwise.
        wait.await.unwrap();
        let mut received = 0usize;
        while let Some(item) = ws.next().await {
            assert_eq!(item.unwrap().len(), TCP_LIMIT);
            received += 1;
        }
        received
    });

    let config = WebSocketConfig::default().write_buffer_limit(TCP_LIMIT);
    let client = wshub::ClientBuilder::new(format!("ws://{addr}/")).config(config);
    let mut ws = within("connect", client.connect()).await.unwrap();
    let message = Message::binary(vec![0x5a; TCP_LIMIT]);
    let frame_len = TCP_LIMIT + 14;
    let mut fed = 0;
    // Kernel buffers on loopback hold a few MiB; 256 MiB would mean no backpressure.
    while !stays_pending(Duration::from_millis(200), ws.feed(message.clone())).await {
        fed += 1;
        assert!(fed < 4096, "sending never waited");
        assert!(
            ws.buffered_amount() < TCP_LIMIT + frame_len,
            "{} bytes queued",
            ws.buffered_amount()
        );
    }

    start_reading.send(()).unwrap();
    within("send after the server reads", ws.send(message))
        .await
        .unwrap();
    assert_eq!(ws.buffered_amount(), 0);
    let closed = within("close", ws.close(CloseCode::NormalClosure, ""))
        .await
        .unwrap();
    assert!(closed.was_clean);
    assert_eq!(within("the server", server).await.unwrap(), fed + 1);
}
