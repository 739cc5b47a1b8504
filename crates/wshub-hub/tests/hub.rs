//! The hub end to end over real TCP: routes, rooms, fan-out, bad input,
//! slow consumers, shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wshub::{CloseCode, Message};
use wshub_hub::HubConfig;

mod common;

use common::{start, Hub, Ws, WAIT};

async fn client(hub: &Hub, path: &str) -> Ws {
    let mut ws = timeout(WAIT, wshub::connect(&format!("ws://{}{path}", hub.addr)))
        .await
        .unwrap()
        .unwrap();
    if path == "/ws" {
        assert_eq!(next_json(&mut ws).await["type"], "welcome");
    }
    ws
}

async fn next_json(ws: &mut Ws) -> Value {
    let message = timeout(WAIT, ws.next()).await.expect("a message in time");
    let Some(message) = message else {
        panic!("connection closed: {:?}", ws.close_event());
    };
    match message.expect("no error") {
        Message::Text(t) => serde_json::from_str(t.as_str()).expect("hub sends JSON"),
        Message::Binary(_) => panic!("hub sent binary"),
    }
}

async fn next_of_type(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

async fn join(ws: &mut Ws, room: &str, name: &str) -> Value {
    send(ws, json!({"op":"join","room":room,"name":name})).await;
    next_of_type(ws, "joined").await
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    http_request(addr, "GET", path).await
}

async fn http_request(addr: SocketAddr, method: &str, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    timeout(WAIT, tcp.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test]
async fn serves_the_page_health_404_405_and_426_for_plain_http_to_websocket_routes() {
    let hub = start(HubConfig::default()).await;
    let page = http_get(hub.addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("Content-Type: text/html; charset=utf-8\r\n"));
    assert!(page.contains("Cache-Control: no-store\r\n"));
    assert!(page.contains("X-Content-Type-Options: nosniff\r\n"));
    assert!(page.contains("<ul id=\"messages\""));
    let health = http_get(hub.addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
    let post = http_request(hub.addr, "POST", "/healthz").await;
    assert!(
        post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{post}"
    );
    assert!(http_get(hub.addr, "/nope")
        .await
        .starts_with("HTTP/1.1 404 Not Found\r\n"));
    for path in ["/ws", "/echo"] {
        let r = http_get(hub.addr, path).await;
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{r}");
        assert!(r.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(r.contains("WebSocket endpoint"));
    }
}

#[tokio::test]
async fn serves_the_client_library_and_its_types_with_their_content_types() {
    let hub = start(HubConfig::default()).await;
    for (path, content_type, marker) in [
        (
            "/wshub.js",
            "text/javascript; charset=utf-8",
            "export class HubSocket extends EventTarget",
        ),
        (
            "/wshub.d.ts",
            "text/plain; charset=utf-8",
            "export class HubSocket extends EventTarget",
        ),
    ] {
        let answer = http_get(hub.addr, path).await;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains(&format!("\r\nContent-Type: {content_type}\r\n")),
            "{head}"
        );
        assert!(head.contains("\r\nX-Content-Type-Options: nosniff\r\n"));
        // A page of another origin may import the module.
        assert!(head.contains("\r\nAccess-Control-Allow-Origin: *\r\n"));
        assert!(body.contains(marker), "{path}");
        let length = format!("\r\nContent-Length: {}\r\n", body.len());
        assert!(head.contains(&length), "{head}");
        let post = http_request(hub.addr, "POST", path).await;
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    }
    // The chat page imports the module, which its CSP allows.
    let page = http_get(hub.addr, "/").await;
    assert!(page.contains("import { HubSocket } from \"/wshub.js\";"));
    assert!(page.contains("script-src 'self' 'sha256-"), "{page}");
}

#[tokio::test]
async fn publish_reaches_every_member_with_gap_free_sequence_numbers() {
    let hub = start(HubConfig::default()).await;
    let mut alice = client(&hub, "/ws").await;
    let mut bob = client(&hub, "/ws").await;
    let mut outsider = client(&hub, "/ws").await;
    assert_eq!(
        join(&mut alice, "lobby", "alice").await["members"],
        json!(["alice"])
    );
    assert_eq!(
        join(&mut bob, "lobby", "bob").await["members"],
        json!(["alice", "bob"])
    );
    let presence = next_of_type(&mut alice, "presence").await;
    assert_eq!(
        (presence["event"].clone(), presence["name"].clone()),
        (json!("join"), json!("bob"))
    );
    join(&mut outsider, "elsewhere", "carol").await;

    for i in 0..20 {
        send(
            &mut alice,
            json!({"op":"publish","room":"lobby","message":format!("m{i}")}),
        )
        .await;
    }
    for ws in [&mut alice, &mut bob] {
        for i in 0..20u64 {
            let m = next_of_type(ws, "message").await;
            assert_eq!(m["room"], "lobby");
            assert_eq!(m["from"], "alice");
            assert_eq!(m["seq"], i + 1);
            assert_eq!(m["message"], format!("m{i}"));
            assert!(m["ts"].as_u64().unwrap() > 1_700_000_000_000);
        }
    }
    // The other room saw none of it: its next message is its own.
    send(
        &mut outsider,
        json!({"op":"publish","room":"elsewhere","message":"x"}),
    )
    .await;
    assert_eq!(next_of_type(&mut outsider, "message").await["seq"], 1);
}

#[tokio::test]
async fn bad_requests_get_an_error_and_the_connection_stays_open() {
    let hub = start(HubConfig::default()).await;
    let mut ws = client(&hub, "/ws").await;
    for (text, code) in [
        ("not json", "bad_json"),
        ("[1]", "bad_json"),
        (r#"{"op":"shout","id":9}"#, "unknown_op"),
        (r#"{"op":"join"}"#, "bad_request"),
        (r#"{"op":"publish","room":"r","message":1}"#, "not_joined"),
        (r#"{"op":"leave","room":"r"}"#, "not_joined"),
    ] {
        ws.send(Message::text(text)).await.unwrap();
        let e = next_json(&mut ws).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(code)),
            "{text}"
        );
    }
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "binary_unsupported");
    // The application heartbeat: text "ping" is answered with "pong".
    ws.send(Message::text("ping")).await.unwrap();
    let pong = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(pong, Message::text("pong"));
    // Still fully usable.
    join(&mut ws, "r", "z").await;
    send(
        &mut ws,
        json!({"op":"publish","room":"r","message":"after"}),
    )
    .await;
    assert_eq!(next_of_type(&mut ws, "message").await["message"], "after");
}

#[tokio::test]
async fn a_protocol_error_closes_only_that_connection() {
    let hub = start(HubConfig::default()).await;
    let mut good = client(&hub, "/ws").await;
    join(&mut good, "r", "good").await;

    // A raw client whose first frame is unmasked: 1002 for it alone.
    let mut raw = TcpStream::connect(hub.addr).await.unwrap();
    raw.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x02hi",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    timeout(WAIT, raw.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let close = got
        .windows(2)
        .rposition(|w| w[0] == 0x88)
        .unwrap_or_else(|| panic!("a Close frame in {:?}", String::from_utf8_lossy(&got)));
    assert_eq!(&got[close + 2..close + 4], 1002u16.to_be_bytes());

    send(
        &mut good,
        json!({"op":"publish","room":"r","message":"still here"}),
    )
    .await;
    assert_eq!(
        next_of_type(&mut good, "message").await["message"],
        "still here"
    );
}

#[tokio::test]
async fn echo_returns_text_as_text_and_binary_as_binary() {
    let hub = start(HubConfig::default()).await;
    let mut ws = client(&hub, "/echo").await;
    let big = vec![7u8; 3 << 20];
    for m in [
        Message::text("héllo"),
        Message::binary(big),
        Message::binary(Vec::new()),
    ] {
        ws.send(m.clone()).await.unwrap();
        assert_eq!(timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap(), m);
    }
    let closed = ws.close(CloseCode::NormalClosure, "bye").await.unwrap();
    assert_eq!((closed.code.as_u16(), closed.was_clean), (1000, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_disconnected_and_the_room_keeps_flowing() {
    let mut config = HubConfig::default();
    config.send_queue = 64;
    // Publishing faster than a client may by default (100 messages a second)
    // is what this test is about, not the rate limit.
    config.message_rate = u32::MAX;
    config.message_burst = u32::MAX;
    let hub = start(config).await;
    let mut fast = client(&hub, "/ws").await;
    join(&mut fast, "r", "fast").await;
    let mut fast_reader = client(&hub, "/ws").await;
    join(&mut fast_reader, "r", "reader").await;

    // The slow member joins, then never reads; a tiny receive buffer makes
    // its socket fill quickly.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(hub.addr).await.unwrap();
    let mut slow = wshub::ClientBuilder::new(format!("ws://{}/ws", hub.addr))
        .connect_on(tcp)
        .await
        .unwrap();
    slow.send(Message::text(
        json!({"op":"join","room":"r","name":"slow"}).to_string(),
    ))
    .await
    .unwrap();
    next_of_type(&mut fast_reader, "presence").await;

    let payload = "x".repeat(16 * 1024);
    let count = 1000u64;
    // The publisher reads its own copies in another task, so only the slow
    // member falls behind.
    let (mut fast_rx, mut fast_tx) = fast.split();
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = fast_rx.next().await {} });
    // The publisher stays at most 16 messages ahead of the member that reads,
    // so only the member that does not read falls behind.
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let publisher = async {
        for i in 0..count {
            let _ = progress.wait_for(|read| read + 16 >= i).await;
            let text = json!({"op":"publish","room":"r","message":payload}).to_string();
            fast_tx.send(Message::text(text)).await.unwrap();
        }
    };
    // The slow member's leave may come in the middle of the messages (it
    // leaves its rooms as soon as it is disconnected).
    let mut slow_left = false;
    let reader = async {
        let mut last = 0;
        while last < count {
            let m = next_json(&mut fast_reader).await;
            if m["type"] == "presence" && m["name"] == "slow" && m["event"] == "leave" {
                slow_left = true;
            }
            if m["type"] != "message" {
                continue;
            }
            let seq = m["seq"].as_u64().unwrap();
            assert_eq!(
                seq,
                last + 1,
                "no loss, no reordering for a member that reads"
            );
            last = seq;
            let _ = progress_tx.send(last);
        }
    };
    tokio::join!(publisher, reader);
    // The slow member was dropped: a presence "leave" for it reaches the room.
    while !slow_left {
        let p = next_of_type(&mut fast_reader, "presence").await;
        slow_left = p["name"] == "slow" && p["event"] == "leave";
    }
    // When it finally reads, it finds the stream ends (1008, or 1006 if the
    // hub gave up waiting for it to read the Close).
    let ended = timeout(Duration::from_secs(30), async {
        while let Some(m) = slow.next().await {
            if m.is_err() {
                break;
            }
        }
        slow.close_event().map(|e| e.code.as_u16())
    })
    .await
    .expect("slow consumer disconnected");
    assert!(matches!(ended, Some(1008 | 1006)), "{ended:?}");
    drain.abort();
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_1001() {
    let mut hub = start(HubConfig::default()).await;
    let mut a = client(&hub, "/ws").await;
    let mut b = client(&hub, "/echo").await;
    hub.stop.take().unwrap().send(()).unwrap();
    for ws in [&mut a, &mut b] {
        let rest = timeout(WAIT, async { while let Some(Ok(_)) = ws.next().await {} }).await;
        assert!(rest.is_ok());
        let event = ws.close_event().unwrap();
        assert_eq!((event.code.as_u16(), event.was_clean), (1001, true));
    }
    timeout(WAIT, hub.task).await.unwrap().unwrap().unwrap();
    assert!(
        TcpStream::connect(hub.addr).await.is_err(),
        "listener closed"
    );
}

/// A client that speaks the handshake and frames by hand, to see the bytes
/// the hub sends: RSV1 marks a compressed message (RFC 7692 §6).
struct RawClient {
    tcp: TcpStream,
    buf: Vec<u8>,
    conn: wshub_proto::Connection,
}

impl RawClient {
    /// Connects to `/ws` offering `extensions`; returns the client and the
    /// `Sec-WebSocket-Extensions` answer.
    async fn connect(hub: &Hub, extensions: &str) -> (Self, Option<String>) {
        let mut tcp = TcpStream::connect(hub.addr).await.unwrap();
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Extensions: {extensions}\r\n\r\n",
            hub.addr
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 1024];
            let n = timeout(WAIT, tcp.read(&mut chunk)).await.unwrap().unwrap();
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8(buf[..end].to_vec()).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let answer = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
            .map(str::to_owned);
        buf.drain(..end);
        let conn = wshub_proto::Connection::new(wshub_proto::Role::Client, Default::default());
        (Self { tcp, buf, conn }, answer)
    }

    async fn send_json(&mut self, v: Value) {
        // Uncompressed (RSV1 clear): valid on a compressed connection too.
        self.conn.send_text(&v.to_string()).unwrap();
        let out = self.conn.take_outgoing();
        self.tcp.write_all(&out).await.unwrap();
    }

    /// The next whole frame as it came off the wire.
    async fn next_frame(&mut self) -> (wshub_proto::frame::FrameHeader, Vec<u8>) {
        loop {
            if let Some((header, len)) = wshub_proto::frame::FrameHeader::parse(&self.buf).unwrap()
            {
                let total = len + header.payload_len as usize;
                if self.buf.len() >= total {
                    let frame: Vec<u8> = self.buf.drain(..total).collect();
                    return (header, frame);
                }
            }
            let mut chunk = [0u8; 65536];
            let n = timeout(WAIT, self.tcp.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed while a frame was expected");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[tokio::test]
async fn with_compression_a_room_message_is_compressed_once_for_all_who_negotiated_it() {
    let mut config = HubConfig::default();
    config.websocket.compression = Some(wshub::DeflateConfig::server());
    let hub = start(config).await;
    let offer = "permessage-deflate; client_max_window_bits";
    let (mut a, answer_a) = RawClient::connect(&hub, offer).await;
    let (mut b, answer_b) = RawClient::connect(&hub, offer).await;
    let (mut plain, answer_plain) = RawClient::connect(&hub, "x-unknown").await;
    let agreed = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    assert_eq!(answer_a.as_deref(), Some(agreed));
    assert_eq!(answer_b.as_deref(), Some(agreed));
    assert_eq!(answer_plain, None, "nothing offered that the hub knows");

    for raw in [&mut a, &mut b, &mut plain] {
        raw.send_json(json!({"op": "join", "room": "zip"})).await;
    }
    // A message well over the 1 KiB threshold, from a library client that
    // compresses what it sends.
    let mut sender = timeout(
        WAIT,
        wshub::ClientBuilder::new(format!("ws://{}/ws", hub.addr))
            .config(
                wshub::WebSocketConfig::default().compression(Some(wshub::DeflateConfig::client())),
            )
            .connect(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(sender
        .extensions()
        .is_some_and(|e| e.starts_with("permessage-deflate")));
    assert_eq!(next_json(&mut sender).await["type"], "welcome");
    join(&mut sender, "zip", "sender").await;
    let text = "all work and no play makes a dull hub ".repeat(100);
    send(
        &mut sender,
        json!({"op": "publish", "room": "zip", "message": text}),
    )
    .await;
    let got = next_of_type(&mut sender, "message").await;
    assert_eq!(
        got["message"],
        text.as_str(),
        "the sender's own copy, inflated"
    );

    // Each raw member: skip the joined answer and presence notices (small,
    // uncompressed) up to the published message.
    let mut frames = Vec::new();
    for raw in [&mut a, &mut b, &mut plain] {
        loop {
            let (header, frame) = raw.next_frame().await;
            if header.payload_len > 1024 || header.rsv1 {
                frames.push((header, frame));
                break;
            }
        }
    }
    let [(ha, fa), (hb, fb), (hp, fp)] = <[_; 3]>::try_from(frames).unwrap();
    assert!(
        ha.rsv1 && hb.rsv1,
        "compressed for the members that negotiated it"
    );
    assert_eq!(fa, fb, "the same bytes: compressed once, shared");
    assert!(!hp.rsv1, "plain for the member that did not");
    assert!(
        fa.len() < fp.len() / 4,
        "{} compressed vs {} plain",
        fa.len(),
        fp.len()
    );
    // And the compressed frame inflates to the plain one's payload.
    let (_, client_side) = {
        let server = wshub::DeflateConfig::server();
        let client = wshub::DeflateConfig::client();
        let (agreement, header) = wshub_proto::deflate::negotiate(
            [wshub_proto::deflate::offer(&client).as_str()],
            &server,
        )
        .unwrap();
        (
            agreement,
            wshub_proto::deflate::validate_response([header.as_str()], &client)
                .unwrap()
                .unwrap(),
        )
    };
    let mut reader = wshub_proto::Connection::new(
        wshub_proto::Role::Client,
        wshub_proto::Config::default().deflate(Some(client_side)),
    );
    reader.receive(&fa).unwrap();
    let Some(wshub_proto::Event::Message(Message::Text(inflated))) = reader.next_event() else {
        panic!("no message")
    };
    let header_len = fp.len() - hp.payload_len as usize;
    assert_eq!(inflated.as_bytes().as_ref(), &fp[header_len..]);
}

/// RFC 6455 §4.2.1 leaves a slow handshake to the server: one that has not
/// sent its whole request head within `handshake_timeout` gets a 408 and
/// the connection closed. The timer starts only when the head is not all
/// there at once, so a client that says nothing and one that stops halfway
/// take the two paths into it.
#[tokio::test]
async fn a_request_head_not_sent_in_time_gets_408() {
    let mut config = HubConfig::default();
    config.websocket.handshake_timeout = Duration::from_millis(200);
    let hub = start(config).await;
    for sent in [&b""[..], b"GET /echo HTTP/1.1\r\nHost: x\r\n"] {
        let mut tcp = TcpStream::connect(hub.addr).await.unwrap();
        tcp.write_all(sent).await.unwrap();
        let mut answer = String::new();
        timeout(WAIT, tcp.read_to_string(&mut answer))
            .await
            .expect("the hub answers and closes in time")
            .unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 408 "),
            "after {:?}: {answer}",
            String::from_utf8_lossy(sent)
        );
    }
    // A whole head sent at once is served as usual.
    let mut ws = client(&hub, "/echo").await;
    ws.send(Message::text("on time")).await.unwrap();
    let echoed = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::text("on time"));
}
