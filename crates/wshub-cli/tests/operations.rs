//! What operators use, against the real binary: `/metrics`, `/healthz`,
//! `/readyz`, and the drain on SIGTERM.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wshub::Message;

use common::{assert_echoes, exit_within, get, sigterm, Server, WAIT};

/// The value of the sample `series` (name and labels, as written) in a
/// `/metrics` answer.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The address `--metrics-listen 127.0.0.1:0` got, from the log.
fn metrics_addr(server: &Server) -> SocketAddr {
    let line = server.log.wait_for("metrics, healthz and readyz listening");
    let addr = line.split("addr=").nth(1).expect("addr= in the line");
    addr.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn metrics_count_requests_connections_echoes_and_fan_out() {
    let server = Server::start(&["--metrics"]);
    let mut echo = server.echo_client().await.unwrap();
    for text in ["one", "two", "three"] {
        assert_echoes(&mut echo, text).await;
    }
    let url = format!("ws://{}/ws", server.addr);
    let mut hub = timeout(WAIT, wshub::connect(&url)).await.unwrap().unwrap();
    let join = r#"{"op":"join","room":"lobby","name":"ada"}"#;
    hub.send(Message::text(join)).await.unwrap();
    hub.send(Message::text(
        r#"{"op":"publish","room":"lobby","message":"hi"}"#,
    ))
    .await
    .unwrap();
    // welcome, joined, then the message itself.
    for _ in 0..3 {
        timeout(WAIT, hub.next()).await.unwrap().unwrap().unwrap();
    }
    assert_eq!(
        server.get("/nope").await.lines().next(),
        Some("HTTP/1.1 404 Not Found")
    );

    let metrics = server.get("/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
    assert!(
        metrics.contains(
            "\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"
        ),
        "{metrics}"
    );
    for (series, value) in [
        (r#"wshub_http_requests_total{status="101"}"#, 2.0),
        (r#"wshub_http_requests_total{status="404"}"#, 1.0),
        (r#"wshub_connections_open{route="/echo"}"#, 1.0),
        (r#"wshub_connections_open{route="/ws"}"#, 1.0),
        ("wshub_echo_messages_total", 3.0),
        ("wshub_echo_bytes_total", 11.0),
        ("wshub_hub_requests_received_total", 2.0),
        ("wshub_rooms", 1.0),
        ("wshub_room_members", 1.0),
        ("wshub_fanout_deliveries_total", 1.0),
        ("wshub_publish_fanout_seconds_count", 1.0),
    ] {
        assert_eq!(
            sample(&metrics, series),
            Some(value),
            "{series} in\n{metrics}"
        );
    }

    echo.close(wshub::CloseCode::NormalClosure, "")
        .await
        .unwrap();
    while timeout(WAIT, echo.next()).await.unwrap().is_some() {}
    let closed = r#"wshub_connections_closed_total{route="/echo",code="1000"}"#;
    let waited = Instant::now();
    let metrics = loop {
        let metrics = server.get("/metrics").await;
        if sample(&metrics, closed) == Some(1.0) || waited.elapsed() > WAIT {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sample(&metrics, closed), Some(1.0), "{metrics}");
    assert_eq!(
        sample(&metrics, r#"wshub_connections_open{route="/echo"}"#),
        Some(0.0)
    );
}

#[tokio::test]
async fn without_metrics_flags_metrics_is_404_and_a_metrics_listener_serves_it_apart() {
    let server = Server::start(&[]);
    assert!(server.get("/metrics").await.starts_with("HTTP/1.1 404 "));
    assert!(server.get("/healthz").await.starts_with("HTTP/1.1 200 "));
    assert!(server.get("/readyz").await.ends_with("\r\n\r\nready\n"));

    let server = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    let ops = metrics_addr(&server);
    assert!(server.get("/metrics").await.starts_with("HTTP/1.1 404 "));
    let metrics = get(ops, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200 "), "{metrics}");
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    assert!(get(ops, "/healthz").await.starts_with("HTTP/1.1 200 "));
    assert!(get(ops, "/ws").await.starts_with("HTTP/1.1 404 "));
}

/// An `/echo` connection opened by hand: the upgrade request and its 101.
async fn raw_upgrade(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tcp.read(&mut byte).await.unwrap(), 1, "the server closed");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    tcp
}

/// Reads the server's Close frame on `tcp` and answers it (masked, as a
/// client must); returns its code and when it came.
async fn await_close(mut tcp: TcpStream) -> (u16, Instant) {
    let mut header = [0u8; 2];
    tcp.read_exact(&mut header).await.unwrap();
    let came = Instant::now();
    assert_eq!(header[0], 0x88, "a Close frame first");
    let mut payload = vec![0u8; usize::from(header[1] & 0x7f)];
    tcp.read_exact(&mut payload).await.unwrap();
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    // The echo: code 1001, masked with a zero key.
    let _ = tcp.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe9]).await;
    (code, came)
}

/// SIGTERM with 10,000 connections: `/readyz` turns 503, every connection
/// gets Close 1001, a batch at a time across `--drain-spread`, and the
/// process exits 0 within `--shutdown-timeout`.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_10_000_connections_with_1001_in_batches_and_exits_in_time() {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    // This test binary runs other tests at the same time: leave room.
    let count = 10_000.min(
        usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(512),
    );
    let mut server = Server::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--max-connections-per-ip",
        "0",
        "--handshakes-per-ip",
        "0",
        "--drain-spread",
        "3s",
        "--shutdown-timeout",
        "8s",
        // Not a line per connection; the metrics listener's address.
        "--log",
        "warn,wshub_hub::ops=info",
    ]);
    let ops = metrics_addr(&server);
    let mut conns = Vec::with_capacity(count);
    while conns.len() < count {
        let batch = (count - conns.len()).min(500);
        let opening: Vec<_> = (0..batch)
            .map(|_| tokio::spawn(raw_upgrade(server.addr)))
            .collect();
        for conn in opening {
            conns.push(conn.await.unwrap());
        }
    }
    let metrics = get(ops, "/metrics").await;
    assert_eq!(
        sample(&metrics, r#"wshub_connections_open{route="/echo"}"#),
        Some(count as f64)
    );
    let closes: Vec<_> = conns
        .into_iter()
        .map(|tcp| tokio::spawn(timeout(Duration::from_secs(20), await_close(tcp))))
        .collect();

    let signalled = Instant::now();
    sigterm(server.pid());
    let readyz = loop {
        let readyz = get(ops, "/readyz").await;
        if readyz.starts_with("HTTP/1.1 503 ") || signalled.elapsed() > WAIT {
            break readyz;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(readyz.starts_with("HTTP/1.1 503 "), "{readyz}");
    assert!(get(ops, "/healthz").await.starts_with("HTTP/1.1 200 "));

    let mut first = None::<Instant>;
    let mut last = None::<Instant>;
    for close in closes {
        let (code, came) = close.await.unwrap().expect("a Close within 20 s");
        assert_eq!(code, 1001);
        first = Some(first.map_or(came, |f| f.min(came)));
        last = Some(last.map_or(came, |l| l.max(came)));
    }
    let (first, last) = (first.unwrap(), last.unwrap());
    let spread = last - first;
    eprintln!(
        "{count} connections: first 1001 {:?} after SIGTERM, last {:?} after it (spread {spread:?})",
        first - signalled,
        last - signalled
    );
    // 10 batches over 3 s: the last one 2.7 s after the first.
    assert!(
        spread >= Duration::from_millis(2000),
        "all at once: {spread:?}"
    );
    let status = exit_within(&mut server, Duration::from_secs(8 + 10)).await;
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(8 + 5),
        "exited {:?} after SIGTERM",
        signalled.elapsed()
    );
}
