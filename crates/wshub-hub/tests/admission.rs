//! Connection admission end to end over real TCP: the caps and the
//! handshake rate answer 503 with `Retry-After` before the upgrade, open
//! connections keep working, and a closed one gives its slot back.
//!
//! Clients come from several loopback addresses (127.0.0.1, .2, .3: on
//! Linux all of 127/8 is the loopback interface) so that per-address limits
//! can be told from the global one. The server binds 127.0.0.1 only.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;
use wshub::{ClientBuilder, CloseCode, Message, WebSocket};
use wshub_hub::{AdmissionConfig, HubConfig};

const WAIT: Duration = Duration::from_secs(10);

struct Hub {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// The library's default limits (all off), changed by `set`.
fn limits(set: impl FnOnce(&mut AdmissionConfig)) -> AdmissionConfig {
    let mut admission = AdmissionConfig::default();
    set(&mut admission);
    admission
}

async fn start(admission: AdmissionConfig) -> Hub {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut config = HubConfig::default();
    config.admission = admission;
    tokio::spawn(wshub_hub::serve(listener, config, async {
        let _ = stopped.await;
    }));
    Hub { addr, _stop: stop }
}

/// A TCP connection to `hub` from the loopback address `source`.
async fn tcp_from(hub: &Hub, source: &str) -> TcpStream {
    let source: IpAddr = source.parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    timeout(WAIT, socket.connect(hub.addr))
        .await
        .unwrap()
        .unwrap()
}

/// An `/echo` WebSocket from `source`, with extra request `headers`.
async fn try_echo_client(
    hub: &Hub,
    source: &str,
    headers: &[(&str, &str)],
) -> Result<WebSocket<TcpStream>, wshub::Error> {
    let tcp = tcp_from(hub, source).await;
    let mut client = ClientBuilder::new(format!("ws://{}/echo", hub.addr));
    for (name, value) in headers {
        client = client.header(*name, *value);
    }
    timeout(WAIT, client.connect_on(tcp)).await.unwrap()
}

async fn echo_client(hub: &Hub, source: &str) -> WebSocket<TcpStream> {
    try_echo_client(hub, source, &[]).await.unwrap()
}

/// The raw answer to an upgrade request for `/echo` from `source`.
async fn upgrade_answer(hub: &Hub, source: &str, headers: &[(&str, &str)]) -> String {
    let mut tcp = tcp_from(hub, source).await;
    let mut head = String::from(
        "GET /echo HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // A 101 leaves the connection open: read only its head then.
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            let n = tcp.read(&mut buf).await.unwrap_or(0);
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.starts_with(b"HTTP/1.1 101") && answer.ends_with(b"\r\n\r\n") {
                break;
            }
        }
    };
    timeout(WAIT, read).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

async fn assert_echoes(ws: &mut WebSocket<TcpStream>, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    let echoed = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::text(text));
}

async fn close(mut ws: WebSocket<TcpStream>) {
    timeout(WAIT, ws.close(CloseCode::NormalClosure, ""))
        .await
        .unwrap()
        .unwrap();
}

/// Connects from `source` until admitted: the server gives a slot back
/// just after the connection's end, which the client may see first.
async fn echo_client_once_admitted(hub: &Hub, source: &str) -> WebSocket<TcpStream> {
    let admitted = async {
        loop {
            if let Ok(ws) = try_echo_client(hub, source, &[]).await {
                return ws;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(WAIT, admitted).await.expect("a slot freed in time")
}

fn assert_503(answer: &str, retry_after: &str, body: &str) {
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains(&format!("\r\nRetry-After: {retry_after}\r\n")),
        "{answer}"
    );
    assert!(answer.ends_with(body), "{answer}");
}

#[tokio::test]
async fn at_the_per_ip_cap_the_next_connection_gets_503_and_the_open_ones_still_echo() {
    let hub = start(limits(|a| {
        a.max_connections_per_ip = 2;
    }))
    .await;
    let mut a = echo_client(&hub, "127.0.0.1").await;
    let mut b = echo_client(&hub, "127.0.0.1").await;
    let answer = upgrade_answer(&hub, "127.0.0.1", &[]).await;
    assert_503(&answer, "5", "too many connections from your address\n");
    // Another address is not held to the first one's count.
    let mut c = echo_client(&hub, "127.0.0.2").await;
    for ws in [&mut a, &mut b, &mut c] {
        assert_echoes(ws, "still here").await;
    }
    close(a).await;
    let mut d = echo_client_once_admitted(&hub, "127.0.0.1").await;
    assert_echoes(&mut d, "freed").await;
    assert_echoes(&mut b, "b too").await;
}

#[tokio::test]
async fn at_the_global_cap_the_next_connection_gets_503_whatever_its_address() {
    let hub = start(limits(|a| {
        a.max_connections = 2;
    }))
    .await;
    let a = echo_client(&hub, "127.0.0.1").await;
    let mut b = echo_client(&hub, "127.0.0.2").await;
    let answer = upgrade_answer(&hub, "127.0.0.3", &[]).await;
    assert_503(&answer, "5", "the server is at its connection limit\n");
    assert!(try_echo_client(&hub, "127.0.0.1", &[]).await.is_err());
    assert_echoes(&mut b, "still here").await;
    close(a).await;
    let mut c = echo_client_once_admitted(&hub, "127.0.0.3").await;
    assert_echoes(&mut c, "freed").await;
    assert_echoes(&mut b, "b too").await;
}

#[tokio::test]
async fn past_the_handshake_burst_an_address_gets_503_with_retry_after() {
    // 1 per second: a burst of 2.
    let hub = start(limits(|a| {
        a.handshakes_per_ip = 1;
    }))
    .await;
    let mut a = echo_client(&hub, "127.0.0.1").await;
    let mut b = echo_client(&hub, "127.0.0.1").await;
    // Each request takes a token, refused or not, and one comes back per
    // second: of five in a row, a slow machine may see one more admitted,
    // never all.
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(upgrade_answer(&hub, "127.0.0.1", &[]).await);
    }
    let refused = answers
        .iter()
        .find(|a| !a.starts_with("HTTP/1.1 101"))
        .expect("a request past the burst refused");
    assert_503(
        refused,
        "1",
        "too many requests from your address; retry later\n",
    );
    let mut c = echo_client(&hub, "127.0.0.2").await;
    for ws in [&mut a, &mut b, &mut c] {
        assert_echoes(ws, "still here").await;
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_is_the_forwarded_address() {
    let hub = start(limits(|a| {
        a.max_connections_per_ip = 1;
        a.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    }))
    .await;
    // Two clients through the proxy at 127.0.0.1: one connection each.
    let client = |ip| [("X-Forwarded-For", ip)];
    let mut a = try_echo_client(&hub, "127.0.0.1", &client("203.0.113.5"))
        .await
        .unwrap();
    let mut b = try_echo_client(&hub, "127.0.0.1", &client("203.0.113.6"))
        .await
        .unwrap();
    let answer = upgrade_answer(&hub, "127.0.0.1", &client("198.51.100.9, 203.0.113.5")).await;
    assert_503(&answer, "5", "too many connections from your address\n");
    for ws in [&mut a, &mut b] {
        assert_echoes(ws, "still here").await;
    }
}

#[tokio::test]
async fn from_a_peer_not_trusted_forwarded_for_is_ignored() {
    let hub = start(limits(|a| {
        a.max_connections_per_ip = 1;
        a.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    }))
    .await;
    let mut a = try_echo_client(&hub, "127.0.0.2", &[("X-Forwarded-For", "203.0.113.5")])
        .await
        .unwrap();
    let answer = upgrade_answer(&hub, "127.0.0.2", &[("X-Forwarded-For", "203.0.113.6")]).await;
    assert_503(&answer, "5", "too many connections from your address\n");
    assert_echoes(&mut a, "still here").await;
}
