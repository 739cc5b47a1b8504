//! `Handshake::read_body`: the body of a plain HTTP request (a `POST` to an
//! API beside the WebSocket routes), by `Content-Length` (RFC 9112 §6.3).

use std::time::Duration;

use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use wshub::server::{read_handshake, BodyError, Handshake};
use wshub::WebSocketConfig;

const SECOND: Duration = Duration::from_secs(1);

/// The server's side of a connection on which the client wrote `sent`.
async fn handshake(sent: &[u8]) -> (Handshake<DuplexStream>, DuplexStream) {
    let (server, mut client) = duplex(1 << 20);
    client.write_all(sent).await.unwrap();
    let handshake = read_handshake(server, &WebSocketConfig::default())
        .await
        .unwrap();
    (handshake, client)
}

#[tokio::test]
async fn a_body_that_came_with_the_head_is_read_to_its_length_only() {
    let sent = b"POST /api HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n";
    let (mut handshake, _client) = handshake(sent).await;
    assert_eq!(
        &handshake.read_body(100, SECOND).await.unwrap()[..],
        b"hello"
    );
}

#[tokio::test]
async fn a_body_sent_after_the_head_is_waited_for() {
    let head = b"POST /api HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhel";
    let (mut handshake, mut client) = handshake(head).await;
    let rest = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.write_all(b"lo world").await.unwrap();
        client
    });
    let body = handshake.read_body(100, SECOND).await.unwrap();
    assert_eq!(&body[..], b"hello world");
    drop(rest.await.unwrap());
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_read() {
    let head =
        b"POST /api HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    let (mut handshake, mut client) = handshake(head).await;
    let client_side = tokio::spawn(async move {
        let mut interim = [0u8; 25];
        client.read_exact(&mut interim).await.unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        client.write_all(b"{}").await.unwrap();
        client
    });
    assert_eq!(&handshake.read_body(100, SECOND).await.unwrap()[..], b"{}");
    drop(client_side.await.unwrap());
}

#[tokio::test]
async fn each_refusal_has_its_status() {
    let cases: [(&[u8], u16); 4] = [
        (b"POST / HTTP/1.1\r\nHost: h\r\n\r\n", 411),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            411,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n",
            413,
        ),
    ];
    for (sent, status) in cases {
        let (mut handshake, _client) = handshake(sent).await;
        let err = handshake.read_body(100, SECOND).await.unwrap_err();
        assert_eq!(err.status(), Some(status), "{err}");
    }
}

#[tokio::test]
async fn a_body_that_stops_short_times_out_or_fails_when_the_client_goes() {
    let head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc";
    let (mut handshake, client) = handshake(head).await;
    let err = handshake
        .read_body(100, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, BodyError::Timeout), "{err}");
    assert_eq!(err.status(), Some(408));

    let (mut handshake, client2) = self::handshake(head).await;
    drop(client2);
    let err = handshake.read_body(100, SECOND).await.unwrap_err();
    assert!(matches!(err, BodyError::Io(_)), "{err}");
    assert_eq!(err.status(), None);
    drop(client);
}
