//! WebSockets on the HTTP servers users already run (features `hyper` and
//! `axum`): a hyper 1 service and an axum route upgrade with the checks of
//! RFC 6455 §4.2.1, choose a subprotocol, negotiate permessage-deflate
//! (RFC 7692), and hand over a WebSocket that echoes; bad requests get the
//! rule's status. Built with the `axum` feature (on for `cargo test
//! --workspace`: the examples turn it on).

use std::net::SocketAddr;
use std::time::Duration;

use axum::response::Response;
use axum::routing::get;
use futures_util::StreamExt;
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use wshub::axum::{WebSocket, WebSocketUpgrade};
use wshub::upgrade::{is_upgrade_request, upgrade};
use wshub::{Accept, ClientBuilder, DeflateConfig, Message, OriginPolicy, WebSocketConfig};

const WAIT: Duration = Duration::from_secs(10);

fn compressed() -> WebSocketConfig {
    WebSocketConfig::default().compression(Some(DeflateConfig::default()))
}

/// Echoes until the peer closes.
async fn echo<S>(mut ws: wshub::WebSocket<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = ws.recv().await {
        if ws.send(message).await.is_err() {
            return;
        }
    }
}

/// A hyper service: `/ws` upgrades (choosing `chat` when offered, with
/// compression), anything else is 426 or 404.
async fn hyper_service(
    mut request: http::Request<Incoming>,
) -> Result<http::Response<Empty<Bytes>>, wshub::Error> {
    if request.uri().path() != "/ws" {
        return Ok(http::Response::builder()
            .status(404)
            .body(Empty::new())
            .unwrap());
    }
    if !is_upgrade_request(&request) {
        return Ok(http::Response::builder()
            .status(426)
            .body(Empty::new())
            .unwrap());
    }
    let accept = Accept {
        protocol: Some("chat".into()),
        headers: vec![("X-Served-By".into(), "hyper".into())],
    };
    let (response, websocket) = upgrade(&mut request, accept, compressed())?;
    tokio::spawn(async move {
        if let Ok(ws) = websocket.await {
            echo(ws).await;
        }
    });
    Ok(response)
}

async fn serve_hyper() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(
                http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service_fn(hyper_service))
                    .with_upgrades(),
            );
        }
    });
    addr
}

async fn axum_handler(ws: WebSocketUpgrade) -> Response {
    assert_eq!(ws.request().path(), "/ws");
    ws.protocols(["superchat", "chat"])
        .config(compressed())
        .on_upgrade(|socket: WebSocket| echo(socket))
}

async fn guarded_handler(ws: WebSocketUpgrade) -> Response {
    ws.origin_policy(OriginPolicy::same_host())
        .on_upgrade(|socket: WebSocket| echo(socket))
}

async fn serve_axum() -> SocketAddr {
    let app = axum::Router::new()
        .route("/ws", get(axum_handler))
        .route("/guarded", get(guarded_handler));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Connects to `ws://addr/ws?x=1` offering `chat` (and `superchat` first
/// for axum's preference to show) and permessage-deflate; asserts what was
/// agreed and that text and binary messages echo.
async fn assert_upgrades_and_echoes(addr: SocketAddr, protocol: &str) {
    let mut ws = timeout(
        WAIT,
        ClientBuilder::new(format!("ws://{addr}/ws?x=1"))
            .protocol("chat")
            .protocol("superchat")
            .config(compressed())
            .connect(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(ws.protocol().as_deref(), Some(protocol));
    assert!(
        ws.extensions()
            .is_some_and(|e| e.starts_with("permessage-deflate")),
        "{:?}",
        ws.extensions()
    );
    let big = "compressible ".repeat(1_000);
    for message in [
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text(big),
    ] {
        ws.send(message.clone()).await.unwrap();
        let echoed = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(echoed, message);
    }
    let closed = ws
        .close(wshub::CloseCode::NormalClosure, "bye")
        .await
        .unwrap();
    assert_eq!(closed.code, wshub::CloseCode::NormalClosure);
}

/// Sends `head` and returns the status line and headers of the answer.
async fn raw(addr: SocketAddr, head: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = timeout(WAIT, tcp.read(&mut answer)).await.unwrap().unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test]
async fn a_hyper_service_upgrades_negotiates_and_echoes() {
    let addr = serve_hyper().await;
    assert_upgrades_and_echoes(addr, "chat").await;
    let answer = raw(
        addr,
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    // The key of RFC 6455 §1.2 and its answer.
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(
        answer.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            || answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{answer}"
    );
    assert!(answer.to_ascii_lowercase().contains("x-served-by: hyper"));
}

#[tokio::test]
async fn a_hyper_service_turns_away_a_broken_upgrade_with_the_rules_error() {
    let addr = serve_hyper().await;
    let mut request = http::Request::builder()
        .uri("/ws")
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("host", "x")
        .header("sec-websocket-version", "8")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap();
    let refused = upgrade::<Empty<Bytes>, _>(&mut request, Accept::default(), compressed());
    match refused {
        Err(wshub::Error::Handshake(e)) => assert_eq!(e.status(), 426, "{e}"),
        other => panic!("{other:?}"),
    }
    // A valid request that did not come through a hyper server has no
    // upgrade to take.
    let mut request = http::Request::builder()
        .uri("/ws")
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("host", "x")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap();
    let refused = upgrade::<Empty<Bytes>, _>(&mut request, Accept::default(), compressed());
    assert!(
        matches!(refused, Err(wshub::Error::NotUpgradable)),
        "{refused:?}"
    );
    let answer = raw(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
}

#[tokio::test]
async fn an_axum_route_upgrades_with_the_servers_preferred_protocol_and_echoes() {
    let addr = serve_axum().await;
    // The client offers chat, superchat; the route prefers superchat.
    assert_upgrades_and_echoes(addr, "superchat").await;
}

#[tokio::test]
async fn an_axum_route_refuses_what_is_not_an_upgrade_and_a_foreign_origin() {
    let addr = serve_axum().await;
    let answer = raw(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("upgrade: websocket") && lower.contains("sec-websocket-version: 13"),
        "RFC 6455 §4.4: {answer}"
    );
    let upgrade = |origin: &str| {
        format!(
            "GET /guarded HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n",
            addr.port()
        )
    };
    let answer = raw(addr, &upgrade("https://evil.example")).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let answer = raw(addr, &upgrade(&format!("http://127.0.0.1:{}", addr.port()))).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "same host: {answer}");
}
