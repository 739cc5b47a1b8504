//! The opening handshake between `ClientBuilder::connect` and `accept_with`
//! (RFC 6455 §4): subprotocols, `url()`, rejection, header injection, and a
//! client that checks what the server answered; plain HTTP routes answered
//! through `wshub::server::read_handshake`, and the linger after a refusal.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{read_head, within};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wshub::server::{read_handshake, Response, UpgradeRequest};
use wshub::{
    Accept, ClientBuilder, CloseCode, Error, HandshakeError, Message, Reject, WebSocketConfig,
};
use wshub_proto::handshake::accept_key;

/// What the server side saw of one handshake.
#[derive(Debug)]
struct Seen {
    path: String,
    offered: Vec<String>,
    protocol: Option<String>,
    url: String,
}

/// Accepts one connection with `accept_with`, letting `decide` answer it;
/// returns what the request and the open server socket showed.
async fn serve_once<F>(decide: F) -> (SocketAddr, tokio::task::JoinHandle<Result<Seen, Error>>)
where
    F: FnOnce(&UpgradeRequest) -> Result<Accept, Reject> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut request_seen = None;
        let mut ws = wshub::accept_with(tcp, WebSocketConfig::default(), |request| {
            request_seen = Some((request.path().to_owned(), request.protocols.clone()));
            decide(request)
        })
        .await?;
        let (path, offered) = request_seen.expect("decide ran");
        let seen = Seen {
            path,
            offered,
            protocol: ws.protocol(),
            url: ws.url(),
        };
        // Echo until the client closes.
        while let Some(Ok(message)) = ws.next().await {
            ws.send(message).await?;
        }
        Ok(seen)
    });
    (addr, task)
}

#[tokio::test]
async fn the_server_picks_an_offered_subprotocol_and_both_sides_report_it() {
    let (addr, server) = serve_once(|request| {
        Ok(Accept {
            protocol: request.protocols.iter().find(|p| *p == "chat").cloned(),
            headers: vec![("X-Served-By".into(), "wshub-tests".into())],
        })
    })
    .await;
    let url = format!("ws://{addr}/chat?room=lobby");
    let mut ws = within(
        "connect",
        ClientBuilder::new(url.clone())
            .protocol("v2.chat")
            .protocol("chat")
            .connect(),
    )
    .await
    .unwrap();
    assert_eq!(ws.protocol().as_deref(), Some("chat"));
    assert_eq!(ws.url(), url);
    assert_eq!(ws.extensions(), None);
    within("send", ws.send(Message::text("hello")))
        .await
        .unwrap();
    assert_eq!(
        within("echo", ws.next()).await.unwrap().unwrap(),
        Message::text("hello")
    );
    within("close", ws.close(CloseCode::NormalClosure, ""))
        .await
        .unwrap();

    let seen = within("the server", server).await.unwrap().unwrap();
    assert_eq!(seen.path, "/chat");
    assert_eq!(seen.offered, ["v2.chat", "chat"]);
    assert_eq!(seen.protocol.as_deref(), Some("chat"));
    assert_eq!(seen.url, "/chat?room=lobby");
}

#[tokio::test]
async fn without_an_offer_there_is_no_subprotocol_on_either_side() {
    let (addr, server) = serve_once(|_| Ok(Accept::default())).await;
    let mut ws = within("connect", wshub::connect(&format!("ws://{addr}")))
        .await
        .unwrap();
    assert_eq!(ws.protocol(), None);
    assert_eq!(ws.url(), format!("ws://{addr}"));
    within("close", ws.close(CloseCode::NormalClosure, ""))
        .await
        .unwrap();
    let seen = within("the server", server).await.unwrap().unwrap();
    assert_eq!(
        (seen.protocol, seen.url.as_str(), seen.offered.len()),
        (None, "/", 0)
    );
}

#[tokio::test]
async fn a_subprotocol_the_client_did_not_offer_is_not_selected() {
    let (addr, server) = serve_once(|_| {
        Ok(Accept {
            protocol: Some("superchat".into()),
            headers: Vec::new(),
        })
    })
    .await;
    let client = ClientBuilder::new(format!("ws://{addr}/")).protocol("chat");
    let mut ws = within("connect", client.connect()).await.unwrap();
    assert_eq!(ws.protocol(), None);
    within("close", ws.close(CloseCode::NormalClosure, ""))
        .await
        .unwrap();
    assert_eq!(
        within("the server", server)
            .await
            .unwrap()
            .unwrap()
            .protocol,
        None
    );
}

#[tokio::test]
async fn a_rejected_handshake_reaches_the_client_as_its_http_status() {
    let (addr, server) = serve_once(|_| Err(Reject::new(403, "no entry"))).await;
    let refused = within("connect", wshub::connect(&format!("ws://{addr}/private"))).await;
    let Err(Error::Http(response)) = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(
        (response.status, &response.body[..]),
        (403, &b"no entry\n"[..]),
        "the refusal's status and body reach the client"
    );
    assert_eq!(response.header("x-frame-options"), Some("DENY"));
    let server_side = within("the server", server).await.unwrap();
    assert!(
        matches!(server_side, Err(Error::Rejected { status: 403 })),
        "{server_side:?}"
    );
}

#[tokio::test]
async fn header_values_with_cr_lf_or_nul_are_refused_before_connecting() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("ws://{addr}/");
    for (name, value) in [
        ("X-Token", "a\r\nX-Injected: 1"),
        ("X-Token", "a\nb"),
        ("X-Token", "a\rb"),
        ("X-Token", "a\0b"),
        ("Bad Name", "fine"),
        ("X-Colon:", "fine"),
    ] {
        let refused = within(
            "connect",
            ClientBuilder::new(url.clone())
                .header(name, value)
                .connect(),
        )
        .await;
        assert!(
            matches!(&refused, Err(Error::Handshake(HandshakeError::InvalidHeader { name: n })) if n == name),
            "{name:?}: {value:?} gave {refused:?}"
        );
    }
    for protocol in ["chat\r\nX-Injected: 1", "a,b", ""] {
        let refused = within(
            "connect",
            ClientBuilder::new(url.clone()).protocol(protocol).connect(),
        )
        .await;
        assert!(
            matches!(
                refused,
                Err(Error::Handshake(HandshakeError::InvalidHeader { .. }))
            ),
            "{protocol:?} gave {refused:?}"
        );
    }
    // Had any of those opened a connection, it would be first in the backlog.
    let ours = within("connect", TcpStream::connect(addr)).await.unwrap();
    let (_, first) = within("accept", listener.accept()).await.unwrap();
    assert_eq!(
        first,
        ours.local_addr().unwrap(),
        "a refused client connected anyway"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_hits_the_handshake_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client =
        ClientBuilder::new(format!("ws://{addr}/")).handshake_timeout(Duration::from_millis(200));
    let timed_out = within("connect", client.connect()).await;
    assert!(
        matches!(timed_out, Err(Error::HandshakeTimeout)),
        "{timed_out:?}"
    );
    drop(listener);
}

/// Accepts one TCP connection, reads the client's request and answers with
/// `response(key)`, where `key` is the request's `Sec-WebSocket-Key`.
async fn fake_server(
    response: impl FnOnce(&str) -> Vec<u8> + Send + 'static,
) -> (SocketAddr, tokio::task::JoinHandle<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let head = read_head(&mut tcp).await;
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("the client sends its key")
            .to_owned();
        tcp.write_all(&response(&key)).await.unwrap();
        tcp
    });
    (addr, task)
}

fn switching_protocols(accept: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn the_client_checks_sec_websocket_accept() {
    let (addr, server) =
        fake_server(|_| switching_protocols("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "")).await;
    let refused = within("connect", wshub::connect(&format!("ws://{addr}/"))).await;
    assert!(
        matches!(
            refused,
            Err(Error::Handshake(HandshakeError::InvalidAccept))
        ),
        "{refused:?}"
    );
    within("the server", server).await.unwrap();
}

#[tokio::test]
async fn the_client_refuses_a_subprotocol_it_did_not_offer() {
    let (addr, server) = fake_server(|key| {
        switching_protocols(
            &accept_key(key.as_bytes()),
            "Sec-WebSocket-Protocol: superchat\r\n",
        )
    })
    .await;
    let client = ClientBuilder::new(format!("ws://{addr}/")).protocol("chat");
    let refused = within("connect", client.connect()).await;
    assert!(
        matches!(&refused, Err(Error::Handshake(HandshakeError::UnexpectedProtocol { protocol })) if protocol == "superchat"),
        "{refused:?}"
    );
    within("the server", server).await.unwrap();
}

#[tokio::test]
async fn a_frame_sent_in_the_same_packet_as_the_101_is_not_lost() {
    let (addr, server) = fake_server(|key| {
        let mut response = switching_protocols(&accept_key(key.as_bytes()), "");
        response.extend_from_slice(&[0x81, 0x05, b'e', b'a', b'r', b'l', b'y']);
        response
    })
    .await;
    let mut ws = within("connect", wshub::connect(&format!("ws://{addr}/")))
        .await
        .unwrap();
    assert_eq!(
        within("the early frame", ws.next()).await.unwrap().unwrap(),
        Message::text("early")
    );
    drop(within("the server", server).await.unwrap());
}

#[tokio::test]
async fn a_frame_sent_in_the_same_packet_as_the_request_is_not_lost() {
    let mut server = common::EchoServer::start(WebSocketConfig::default()).await;
    let mut tcp = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let mut bytes = common::handshake_request("localhost", "/").into_bytes();
    bytes.extend(common::client_frame(0x81, b"early"));
    bytes.extend(common::client_frame(0x88, b"\x03\xe8"));
    tcp.write_all(&bytes).await.unwrap();
    common::assert_switching_protocols(&read_head(&mut tcp).await);
    assert_eq!(
        common::read_server_frame(&mut tcp).await,
        (0x81, b"early".to_vec())
    );
    assert_eq!(common::read_close_code(&mut tcp).await, 1000);
    assert_eq!(
        server.next_outcome().await.close_event().code.as_u16(),
        1000
    );
}

/// `accept_with` gives a client `handshake_timeout` to send its request head:
/// after nothing at all, and after half a head (the timer is armed only when
/// the head is not complete at the first read, so these take two paths).
/// The client is told so with a 408.
#[tokio::test]
async fn a_client_that_never_finishes_its_request_hits_the_handshake_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    for sent in [&b""[..], b"GET / HTTP/1.1\r\nHost: x\r\n"] {
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(sent).await.unwrap();
        let (tcp, _) = within("accept", listener.accept()).await.unwrap();
        let config = WebSocketConfig::default().handshake_timeout(Duration::from_millis(200));
        let accepted = within(
            "accept_with",
            wshub::accept_with(tcp, config, |_| Ok(Accept::default())),
        );
        let mut answer = String::new();
        let (accepted, read) = tokio::join!(accepted, client.read_to_string(&mut answer));
        assert!(
            matches!(accepted, Err(Error::HandshakeTimeout)),
            "after {:?}: {accepted:?}",
            String::from_utf8_lossy(sent)
        );
        read.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{answer}"
        );
    }
}

/// Sends `request` on a new connection to `addr` and reads the answer until
/// the server closes.
async fn http_exchange(addr: SocketAddr, request: &str) -> String {
    let mut tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    within("the answer", tcp.read_to_string(&mut answer))
        .await
        .unwrap();
    answer
}

/// One server, routed by path through `read_handshake`: `/healthz` is plain
/// HTTP, `/ws` a WebSocket, anything else 404; a plain GET of `/ws` gets the
/// 426 that `into_upgrade` answers.
#[tokio::test]
async fn read_handshake_serves_plain_http_routes_beside_a_websocket_route() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let config = WebSocketConfig::default();
        let mut outcomes = Vec::new();
        for _ in 0..4 {
            let (tcp, _) = listener.accept().await.unwrap();
            let handshake = read_handshake(tcp, &config).await.unwrap();
            let answer = match handshake.request().path() {
                "/healthz" => Some(Response::text(200, "ok\n").header("Cache-Control", "no-store")),
                "/ws" => None,
                _ => Some(Response::text(404, "not found\n")),
            };
            let outcome = match answer {
                Some(response) => handshake.respond(&response).await.map(|()| response.status),
                None => match handshake.into_upgrade().await {
                    Ok(upgrade) => {
                        let mut ws = upgrade
                            .accept(Accept::default(), config.clone())
                            .await
                            .unwrap();
                        while let Some(Ok(message)) = ws.next().await {
                            ws.send(message).await.unwrap();
                        }
                        Ok(101)
                    }
                    Err(e) => Err(e),
                },
            };
            outcomes.push(outcome.map_err(|e| e.to_string()));
        }
        outcomes
    });

    let health = http_exchange(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.contains("Cache-Control: no-store\r\n"), "{health}");
    assert!(
        health.contains("Content-Type: text/plain; charset=utf-8\r\n"),
        "{health}"
    );
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");

    let missing = http_exchange(addr, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{missing}"
    );

    let plain = http_exchange(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        plain.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{plain}"
    );
    assert!(plain.contains("Sec-WebSocket-Version: 13\r\n"), "{plain}");
    assert!(plain.contains("WebSocket endpoint"), "{plain}");

    let mut ws = within("connect", wshub::connect(&format!("ws://{addr}/ws")))
        .await
        .unwrap();
    within("send", ws.send(Message::text("routed")))
        .await
        .unwrap();
    assert_eq!(
        within("echo", ws.next()).await.unwrap().unwrap(),
        Message::text("routed")
    );
    within("close", ws.close(CloseCode::NormalClosure, ""))
        .await
        .unwrap();

    let outcomes = within("the server", server).await.unwrap();
    assert_eq!(outcomes.len(), 4);
    assert_eq!(outcomes[..2], [Ok(200), Ok(404)]);
    assert!(
        outcomes[2].as_ref().is_err_and(|e| e == "handshake failed"),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[3], Ok(101));
}

/// A client that sent more than the server read (here 32 KiB after its
/// head) still reads the whole refusal and a clean end of stream: the server
/// drains what it did not read before closing. Closing with unread bytes
/// would send a TCP reset, and the client would see that reset
/// (`ConnectionReset`) instead of an orderly close, or lose the answer.
#[tokio::test]
async fn a_refusal_lingers_so_unread_request_bytes_do_not_reset_the_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        wshub::accept_with(tcp, WebSocketConfig::default(), |_| {
            Err(Reject::new(403, "no entry"))
        })
        .await
    });
    let mut tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    let mut request = common::handshake_request("localhost", "/").into_bytes();
    request.extend(std::iter::repeat_n(b'x', 32 * 1024));
    tcp.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    let read = within("the answer", tcp.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "{read:?} after {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nno entry\n"), "{answer}");
    let refused = within("the server", server).await.unwrap();
    assert!(
        matches!(refused, Err(Error::Rejected { status: 403 })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_refusal_carries_its_headers() {
    let (addr, server) = serve_once(|_| {
        Err(Reject::new(401, "a token is needed")
            .header("WWW-Authenticate", "Bearer realm=\"hub\"")
            .header("Retry-After", "5"))
    })
    .await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET /private HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    within("the answer", tcp.read_to_string(&mut answer))
        .await
        .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\r\nWWW-Authenticate: Bearer realm=\"hub\"\r\n")
            && answer.contains("\r\nRetry-After: 5\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\na token is needed\n"), "{answer}");
    let server_side = within("the server", server).await.unwrap();
    assert!(
        matches!(server_side, Err(Error::Rejected { status: 401 })),
        "{server_side:?}"
    );
}

#[tokio::test]
async fn connect_tcp_opens_on_a_connection_made_elsewhere_with_the_urls_host_and_path() {
    let (addr, server) = serve_once(|_| Ok(Accept::default())).await;
    // As through a proxy: the TCP connection goes to `addr`, the URL names
    // another host, which is what the Host header and the request carry.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut ws = wshub::ClientBuilder::new("ws://example.invalid:9/through?x=1")
        .connect_tcp(tcp)
        .await
        .expect("handshake over the given connection");
    ws.send(Message::text("via")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("via"));
    ws.close(CloseCode::NormalClosure, "").await.unwrap();
    let seen = server.await.unwrap().unwrap();
    assert_eq!(seen.path, "/through");
}
