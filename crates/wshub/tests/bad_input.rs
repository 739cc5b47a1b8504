//! Bad input against a real `wshub::accept_with` server: broken handshakes
//! get an HTTP answer, broken frames fail the connection with the close code
//! of RFC 6455 §7.4.1, and every time a second, well-behaved client is still
//! served.

mod common;

use common::{
    assert_switching_protocols, client_frame, handshake_request, raw_upgrade, read_close_code,
    read_head, read_server_frame, within, EchoServer, Outcome,
};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wshub::{CloseCode, Error, Message, WebSocket, WebSocketConfig};
use wshub_proto::handshake::HandshakeError;
use wshub_proto::{ProtocolError, Role};

/// The largest frame the test server accepts.
const MAX_FRAME: usize = 1024;
/// The largest message the test server accepts.
const MAX_MESSAGE: usize = 4096;

async fn server() -> EchoServer {
    EchoServer::start(
        WebSocketConfig::default().protocol(
            wshub_proto::Config::default()
                .max_frame_size(MAX_FRAME)
                .max_message_size(MAX_MESSAGE),
        ),
    )
    .await
}

/// Sends `request` as the whole handshake and returns the complete HTTP answer
/// (the server closes the connection after it).
async fn http_answer(server: &EchoServer, request: &str) -> String {
    let mut tcp = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    within("the answer and EOF", tcp.read_to_end(&mut answer))
        .await
        .unwrap();
    String::from_utf8(answer).unwrap()
}

fn has_header(answer: &str, header: &str) -> bool {
    answer.lines().any(|l| l.eq_ignore_ascii_case(header))
}

#[tokio::test]
async fn a_plain_http_get_gets_426_with_sec_websocket_version_13() {
    let mut server = server().await;
    let answer = http_answer(&server, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 426 "), "{answer}");
    assert!(has_header(&answer, "Sec-WebSocket-Version: 13"), "{answer}");
    assert!(has_header(&answer, "Upgrade: websocket"), "{answer}");
    let outcome = server.next_outcome().await;
    assert!(
        matches!(
            outcome,
            Outcome::Refused(Error::Handshake(HandshakeError::NotUpgrade))
        ),
        "{outcome:?}"
    );
    server.assert_still_serving().await;
}

#[tokio::test]
async fn invalid_handshakes_get_the_matching_http_status() {
    let mut server = server().await;
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases = [
        // Another protocol version: 426 naming the one we speak (§4.4).
        (
            format!("GET / HTTP/1.1\r\nHost: h\r\n{upgrade}{key}Sec-WebSocket-Version: 8\r\n\r\n"),
            "426",
        ),
        (format!("GET / HTTP/1.1\r\nHost: h\r\n{upgrade}Sec-WebSocket-Version: 13\r\n\r\n"), "400"),
        (
            format!("GET / HTTP/1.1\r\nHost: h\r\n{upgrade}Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n"),
            "400",
        ),
        (
            format!("GET / HTTP/1.1\r\n{upgrade}{key}Sec-WebSocket-Version: 13\r\n\r\n"),
            "400",
        ),
        (
            format!("POST / HTTP/1.1\r\nHost: h\r\n{upgrade}{key}Sec-WebSocket-Version: 13\r\n\r\n"),
            "405",
        ),
        (
            format!("GET / HTTP/1.0\r\nHost: h\r\n{upgrade}{key}Sec-WebSocket-Version: 13\r\n\r\n"),
            "505",
        ),
        ("\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03\r\n\r\n".to_owned(), "400"),
        // Over the 16 KiB head limit, yet small enough to arrive in whole:
        // bytes left unread when the server hangs up would reset the connection.
        (format!("GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n", "a".repeat(17 * 1024)), "431"),
    ];
    for (request, status) in cases {
        let answer = http_answer(&server, &request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?} got {answer}"
        );
        if status == "426" {
            assert!(has_header(&answer, "Sec-WebSocket-Version: 13"), "{answer}");
        }
        // Text for a terminal, never a document a browser would render,
        // sniff, frame or cache.
        for header in [
            "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'",
            "X-Frame-Options: DENY",
            "X-Content-Type-Options: nosniff",
            "Cache-Control: no-store",
        ] {
            assert!(has_header(&answer, header), "{header} missing in {answer}");
        }
        let outcome = server.next_outcome().await;
        assert!(
            matches!(&outcome, Outcome::Refused(Error::Handshake(e)) if e.status().to_string() == status),
            "{request:?} gave {outcome:?}"
        );
    }
    server.assert_still_serving().await;
}

#[tokio::test]
async fn a_truncated_handshake_then_eof_fails_accept_and_the_server_serves_on() {
    let mut server = server().await;
    let mut tcp = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let request = handshake_request("localhost", "/");
    tcp.write_all(&request.as_bytes()[..request.len() / 2])
        .await
        .unwrap();
    tcp.shutdown().await.unwrap();
    let outcome = server.next_outcome().await;
    assert!(
        matches!(&outcome, Outcome::Refused(Error::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "{outcome:?}"
    );
    // Nothing was answered; the server just hung up.
    let mut answer = Vec::new();
    within("EOF", tcp.read_to_end(&mut answer)).await.unwrap();
    assert!(answer.is_empty(), "{answer:?}");
    server.assert_still_serving().await;
}

/// Writes `bytes` one at a time, flushing each, so the server sees them in
/// as many reads as the kernel lets it.
async fn write_bytewise(tcp: &mut TcpStream, bytes: &[u8]) {
    for byte in bytes {
        tcp.write_all(&[*byte]).await.unwrap();
        tcp.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_handshake_and_frames_written_one_byte_at_a_time_succeed() {
    let mut server = server().await;
    let mut tcp = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    within(
        "write",
        write_bytewise(&mut tcp, handshake_request("localhost", "/slow").as_bytes()),
    )
    .await;
    assert_switching_protocols(&read_head(&mut tcp).await);
    within(
        "write",
        write_bytewise(&mut tcp, &client_frame(0x81, "κόσμε".as_bytes())),
    )
    .await;
    assert_eq!(
        read_server_frame(&mut tcp).await,
        (0x81, "κόσμε".as_bytes().to_vec())
    );
    within(
        "write",
        write_bytewise(&mut tcp, &client_frame(0x88, b"\x03\xe8")),
    )
    .await;
    assert_eq!(read_close_code(&mut tcp).await, 1000);
    assert_eq!(
        server.next_outcome().await.close_event().code.as_u16(),
        1000
    );
    server.assert_still_serving().await;
}

#[tokio::test]
async fn accept_reads_a_handshake_that_arrives_one_byte_per_read() {
    // A one-byte pipe: every read `accept` makes returns a single byte.
    let (mut client, server_side) = tokio::io::duplex(1);
    let server = tokio::spawn(async move {
        let mut ws = wshub::accept(server_side).await.unwrap();
        let message = ws.next().await.unwrap().unwrap();
        ws.send(message).await.unwrap();
        ws.url()
    });
    let request = handshake_request("localhost", "/one/byte?at=a-time");
    within("write", client.write_all(request.as_bytes()))
        .await
        .unwrap();
    assert_switching_protocols(&read_head(&mut client).await);
    within("write", client.write_all(&client_frame(0x82, &[1, 2, 3])))
        .await
        .unwrap();
    assert_eq!(read_server_frame(&mut client).await, (0x82, vec![1, 2, 3]));
    assert_eq!(
        within("the server", server).await.unwrap(),
        "/one/byte?at=a-time"
    );
}

/// Upgrades a raw connection, writes `wire`, and checks the server fails the
/// connection with `code`: its Close carries the code, it closes TCP, reports
/// a [`ProtocolError`] with that code, and goes on serving others. Returns the
/// error.
async fn assert_fails_with(
    server: &mut EchoServer,
    what: &str,
    wire: &[u8],
    code: CloseCode,
) -> ProtocolError {
    let mut tcp = raw_upgrade(server.addr).await;
    within("write", tcp.write_all(wire)).await.unwrap();
    assert_eq!(read_close_code(&mut tcp).await, code.as_u16(), "{what}");
    let error = match server.next_outcome().await {
        Outcome::Ended {
            close_event: Some(event),
            error: Some(Error::Protocol(e)),
        } => {
            assert_eq!(e.close_code(), code, "{what}: {e:?}");
            assert_eq!(
                (event.code.as_u16(), event.was_clean),
                (code.as_u16(), false),
                "{what}"
            );
            e
        }
        other => panic!("{what}: {other:?}"),
    };
    server.assert_still_serving().await;
    error
}

#[tokio::test]
async fn an_unmasked_client_frame_fails_with_1002() {
    let mut server = server().await;
    let error = assert_fails_with(
        &mut server,
        "unmasked",
        &[0x81, 0x02, b'h', b'i'],
        CloseCode::ProtocolError,
    )
    .await;
    assert_eq!(error, ProtocolError::UnmaskedFrame);
}

#[tokio::test]
async fn a_64_bit_length_with_its_top_bit_set_fails_with_1002() {
    let mut server = server().await;
    let mut wire = vec![0x82, 0x80 | 127];
    wire.extend_from_slice(&(1u64 << 63).to_be_bytes());
    wire.extend_from_slice(&[1, 2, 3, 4]);
    let error =
        assert_fails_with(&mut server, "2^63 length", &wire, CloseCode::ProtocolError).await;
    assert_eq!(error, ProtocolError::LengthMsbSet);
}

#[tokio::test]
async fn close_code_1005_on_the_wire_fails_with_1002() {
    let mut server = server().await;
    let wire = client_frame(0x88, &1005u16.to_be_bytes());
    let error = assert_fails_with(&mut server, "close 1005", &wire, CloseCode::ProtocolError).await;
    assert_eq!(error, ProtocolError::InvalidCloseCode { code: 1005 });
}

#[tokio::test]
async fn invalid_utf8_split_across_two_fragments_fails_with_1007() {
    let mut server = server().await;
    // 0xCE opens a two-byte sequence ("κ" is CE BA); 'A' cannot continue it.
    let mut wire = client_frame(0x01, &[b'o', b'k', 0xce]);
    wire.extend(client_frame(0x80, b"A"));
    assert_fails_with(
        &mut server,
        "split invalid UTF-8",
        &wire,
        CloseCode::InvalidPayloadData,
    )
    .await;
}

#[tokio::test]
async fn valid_utf8_split_across_two_fragments_is_one_text_message() {
    let mut server = server().await;
    let mut tcp = raw_upgrade(server.addr).await;
    let mut wire = client_frame(0x01, &[b'o', b'k', 0xce]);
    wire.extend(client_frame(0x80, &[0xba]));
    tcp.write_all(&wire).await.unwrap();
    assert_eq!(
        read_server_frame(&mut tcp).await,
        (0x81, "okκ".as_bytes().to_vec())
    );
    tcp.write_all(&client_frame(0x88, b"\x03\xe8"))
        .await
        .unwrap();
    assert_eq!(read_close_code(&mut tcp).await, 1000);
    assert_eq!(
        server.next_outcome().await.close_event().code.as_u16(),
        1000
    );
}

#[tokio::test]
async fn invalid_utf8_fails_before_the_message_is_complete() {
    let mut server = server().await;
    // A first fragment that no continuation could make valid; none follows.
    let wire = client_frame(0x01, &[b'a', 0xff]);
    assert_fails_with(
        &mut server,
        "0xFF in a first fragment",
        &wire,
        CloseCode::InvalidPayloadData,
    )
    .await;
}

#[tokio::test]
async fn a_frame_over_max_frame_size_fails_with_1009_from_its_header() {
    let mut server = server().await;
    // Only the header: the limit applies before any payload arrives.
    let mut wire = vec![0x82, 0x80 | 126];
    wire.extend_from_slice(&(MAX_FRAME as u16 + 1).to_be_bytes());
    wire.extend_from_slice(&[1, 2, 3, 4]);
    let error = assert_fails_with(
        &mut server,
        "frame over the limit",
        &wire,
        CloseCode::MessageTooBig,
    )
    .await;
    assert_eq!(
        error,
        ProtocolError::FrameTooBig {
            size: MAX_FRAME as u64 + 1,
            limit: MAX_FRAME as u64
        }
    );
}

#[tokio::test]
async fn a_frame_of_exactly_max_frame_size_is_accepted() {
    let mut server = server().await;
    let mut ws = within("connect", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    let message = Message::binary(vec![7u8; MAX_FRAME]);
    within("send", ws.send(message.clone())).await.unwrap();
    assert_eq!(within("echo", ws.next()).await.unwrap().unwrap(), message);
    within("close", ws.close(CloseCode::NormalClosure, ""))
        .await
        .unwrap();
    assert_eq!(
        server.next_outcome().await.close_event().code.as_u16(),
        1000
    );
}

#[tokio::test]
async fn fragments_adding_up_past_max_message_size_fail_with_1009() {
    let mut server = server().await;
    let fragment = vec![b'x'; MAX_FRAME];
    let mut wire = client_frame(0x02, &fragment);
    for _ in 1..MAX_MESSAGE / MAX_FRAME {
        wire.extend(client_frame(0x00, &fragment));
    }
    wire.extend(client_frame(0x80, b"!"));
    assert_fails_with(
        &mut server,
        "message over the limit",
        &wire,
        CloseCode::MessageTooBig,
    )
    .await;
}

#[tokio::test]
async fn other_framing_violations_fail_with_1002_or_1007() {
    let mut server = server().await;
    let cases: [(&str, Vec<u8>, CloseCode); 9] = [
        (
            "reserved opcode 0x3",
            client_frame(0x83, b""),
            CloseCode::ProtocolError,
        ),
        (
            "reserved opcode 0xB",
            client_frame(0x8b, b""),
            CloseCode::ProtocolError,
        ),
        (
            "RSV1 without an extension",
            client_frame(0xc1, b"hi"),
            CloseCode::ProtocolError,
        ),
        (
            "fragmented Ping",
            client_frame(0x09, b"p"),
            CloseCode::ProtocolError,
        ),
        (
            "Ping over 125 bytes",
            client_frame(0x89, &[0; 126]),
            CloseCode::ProtocolError,
        ),
        (
            "continuation first",
            client_frame(0x80, b"x"),
            CloseCode::ProtocolError,
        ),
        (
            "new message inside a fragmented one",
            [client_frame(0x01, b"a"), client_frame(0x81, b"b")].concat(),
            CloseCode::ProtocolError,
        ),
        (
            "one-byte Close payload",
            client_frame(0x88, &[0x03]),
            CloseCode::ProtocolError,
        ),
        (
            "Close reason not UTF-8",
            client_frame(0x88, &[0x03, 0xe8, 0xff]),
            CloseCode::InvalidPayloadData,
        ),
    ];
    for (what, wire, code) in cases {
        assert_fails_with(&mut server, what, &wire, code).await;
    }
}

#[tokio::test]
async fn a_ping_between_fragments_is_answered_and_the_message_survives() {
    let mut server = server().await;
    let mut tcp = raw_upgrade(server.addr).await;
    let wire = [
        client_frame(0x01, b"frag"),
        client_frame(0x89, b"ping"),
        client_frame(0x80, b"mented"),
    ]
    .concat();
    tcp.write_all(&wire).await.unwrap();
    assert_eq!(read_server_frame(&mut tcp).await, (0x8a, b"ping".to_vec()));
    assert_eq!(
        read_server_frame(&mut tcp).await,
        (0x81, b"fragmented".to_vec())
    );
    tcp.write_all(&client_frame(0x88, b"")).await.unwrap();
    // A Close without a code is echoed without one (§5.5.1).
    let (first, payload) = read_server_frame(&mut tcp).await;
    assert_eq!((first, payload.len()), (0x88, 0));
    assert_eq!(
        server.next_outcome().await.close_event().code.as_u16(),
        1005
    );
}

#[tokio::test]
async fn a_bad_frame_in_the_same_packet_as_the_handshake_fails_with_1002() {
    let mut server = server().await;
    let mut tcp = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let mut bytes = handshake_request("localhost", "/").into_bytes();
    bytes.extend_from_slice(&[0x81, 0x02, b'h', b'i']); // unmasked
    tcp.write_all(&bytes).await.unwrap();
    assert_switching_protocols(&read_head(&mut tcp).await);
    assert_eq!(read_close_code(&mut tcp).await, 1002);
    let outcome = server.next_outcome().await;
    assert!(
        matches!(
            &outcome,
            Outcome::Ended {
                error: Some(Error::Protocol(ProtocolError::UnmaskedFrame)),
                ..
            }
        ),
        "{outcome:?}"
    );
    server.assert_still_serving().await;
}

#[tokio::test]
async fn messages_before_a_protocol_error_are_delivered_first() {
    let (io, mut peer) = tokio::io::duplex(64 * 1024);
    let mut ws = WebSocket::from_raw(io, Role::Server, WebSocketConfig::default(), &[]);
    let wire = [
        client_frame(0x81, b"first"),
        client_frame(0x82, b"second"),
        vec![0x81, 0x01, b'!'], // unmasked
        client_frame(0x81, b"never"),
    ]
    .concat();
    peer.write_all(&wire).await.unwrap();
    assert_eq!(
        within("first", ws.next()).await.unwrap().unwrap(),
        Message::text("first")
    );
    assert_eq!(
        within("second", ws.next()).await.unwrap().unwrap(),
        Message::binary(&b"second"[..])
    );
    let failed = within("the error", ws.next()).await;
    assert!(
        matches!(
            failed,
            Some(Err(Error::Protocol(ProtocolError::UnmaskedFrame)))
        ),
        "{failed:?}"
    );
    assert!(within("the end", ws.next()).await.is_none());
    let (first, payload) = read_server_frame(&mut peer).await;
    assert_eq!((first, &payload[..2]), (0x88, &1002u16.to_be_bytes()[..]));
}
