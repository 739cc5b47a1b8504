//! Messages make the round trip through a real `wshub::accept` echo server
//! unchanged and with their type, from empty up to 16 MiB.

mod common;

use common::{within, EchoServer};
use futures_util::{SinkExt, StreamExt};
use wshub::{ClientBuilder, CloseCode, Message, WebSocket, WebSocketConfig};

/// Both ends accept messages and frames up to 32 MiB (the default frame limit
/// is exactly 16 MiB, so a 16 MiB message would sit right on it).
fn large_limits() -> WebSocketConfig {
    WebSocketConfig::default().protocol(
        wshub_proto::Config::default()
            .max_frame_size(32 << 20)
            .max_message_size(32 << 20),
    )
}

async fn connect(server: &EchoServer) -> WebSocket<wshub::ClientStream> {
    let client = ClientBuilder::new(server.url("/echo")).config(large_limits());
    within("connect", client.connect())
        .await
        .expect("the handshake succeeds")
}

/// Text of `len` bytes mixing 1-, 2-, 3- and 4-byte code points, so code
/// points straddle every read-chunk and fragment boundary.
fn mixed_text(len: usize) -> String {
    let mut text = String::with_capacity(len);
    for c in "aé€😀".chars().cycle() {
        if text.len() + c.len_utf8() > len {
            break;
        }
        text.push(c);
    }
    while text.len() < len {
        text.push('.');
    }
    text
}

fn patterned_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Sends each message and checks the echo equals it, type included; then
/// closes cleanly.
async fn assert_round_trips(messages: &[Message]) {
    let mut server = EchoServer::start(large_limits()).await;
    let mut ws = connect(&server).await;
    for sent in messages {
        within("send", ws.send(sent.clone())).await.unwrap();
        let echoed = within("echo", ws.next()).await.expect("an echo").unwrap();
        assert_eq!(echoed.is_text(), sent.is_text(), "message type changed");
        assert_eq!(echoed.len(), sent.len());
        // Not assert_eq!: a failure would print megabytes.
        assert!(
            echoed == *sent,
            "a {}-byte message changed on the way",
            sent.len()
        );
    }
    let event = within("close", ws.close(CloseCode::NormalClosure, ""))
        .await
        .unwrap();
    assert!(event.was_clean);
    assert_eq!(
        server.next_outcome().await.close_event().code.as_u16(),
        1000
    );
}

#[tokio::test]
async fn small_text_and_binary_messages_keep_their_type() {
    assert_round_trips(&[
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 0xff]),
        Message::text(""),
        Message::binary(Vec::new()),
        Message::text("κόσμε 😀"),
        // Valid UTF-8 sent as binary stays binary.
        Message::binary(b"hello".to_vec()),
        // 125, 126 and 65,536 bytes: the 7-, 16- and 64-bit length forms (§5.2).
        Message::text(mixed_text(125)),
        Message::binary(patterned_bytes(126)),
        Message::binary(patterned_bytes(65_536)),
    ])
    .await;
}

#[tokio::test]
async fn one_mib_text_and_binary_messages_round_trip() {
    assert_round_trips(&[
        Message::text(mixed_text(1 << 20)),
        Message::binary(patterned_bytes(1 << 20)),
    ])
    .await;
}

#[tokio::test]
async fn sixteen_mib_text_and_binary_messages_round_trip() {
    assert_round_trips(&[
        Message::text(mixed_text(16 << 20)),
        Message::binary(patterned_bytes(16 << 20)),
    ])
    .await;
}

#[tokio::test]
async fn pipelined_messages_come_back_in_order() {
    let mut server = EchoServer::start(large_limits()).await;
    let mut ws = connect(&server).await;
    for i in 0..200 {
        let message = if i % 2 == 0 {
            Message::text(format!("text {i}"))
        } else {
            Message::binary(format!("binary {i}").into_bytes())
        };
        within("feed", ws.feed(message)).await.unwrap();
    }
    within("flush", SinkExt::flush(&mut ws)).await.unwrap();
    for i in 0..200 {
        let echoed = within("echo", ws.next()).await.expect("an echo").unwrap();
        let expected = if i % 2 == 0 {
            Message::text(format!("text {i}"))
        } else {
            Message::binary(format!("binary {i}").into_bytes())
        };
        assert_eq!(echoed, expected);
    }
    within("close", SinkExt::close(&mut ws)).await.unwrap();
    assert!(within("the stream to end", ws.next()).await.is_none());
    let event = ws.close_event().expect("closed");
    assert_eq!((event.code.as_u16(), event.was_clean), (1000, true));
    assert_eq!(
        server.next_outcome().await.close_event().code.as_u16(),
        1000
    );
}
