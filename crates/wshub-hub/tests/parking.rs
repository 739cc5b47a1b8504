//! Parking of quiet `/echo` connections (src/parker.rs): a connection that
//! has gone quiet leaves its task for the hub's parker, and comes back
//! whole when it speaks, when its keepalive is due, when it leaves, and on
//! shutdown. The parker polls the sockets itself (epoll), which tokio's
//! paused time cannot drive: these tests use short real durations and wait
//! on what `/metrics` shows, every wait bounded.

mod common;

use std::time::Duration;

use common::{Hub, WAIT};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};
use wshub::{Incoming, Message, WebSocket};
use wshub_hub::{HubConfig, MetricsEndpoint};

type Client = WebSocket<wshub::ClientStream>;

fn config() -> HubConfig {
    let mut config = HubConfig::default();
    config.metrics = MetricsEndpoint::Main;
    config
}

async fn echo_client(hub: &Hub) -> Client {
    timeout(WAIT, wshub::connect(&format!("ws://{}/echo", hub.addr)))
        .await
        .expect("connected in time")
        .unwrap()
}

/// `/metrics` as text.
async fn metrics(hub: &Hub) -> String {
    let mut tcp = TcpStream::connect(hub.addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    timeout(WAIT, tcp.read_to_string(&mut answer))
        .await
        .expect("metrics in time")
        .unwrap();
    answer
}

/// The value of the series `name` (with its labels), 0 when absent.
fn value(metrics: &str, name: &str) -> i64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap())
}

const PARKED: &str = "wshub_connections_parked";
const OPEN_ECHO: &str = "wshub_connections_open{route=\"/echo\"}";

/// Waits until `/metrics` shows `parked` parked and `open` open `/echo`
/// connections.
async fn wait_for(hub: &Hub, parked: i64, open: i64) {
    let waited = timeout(WAIT, async {
        loop {
            let text = metrics(hub).await;
            if value(&text, PARKED) == parked && value(&text, OPEN_ECHO) == open {
                return;
            }
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if waited.is_err() {
        let text = metrics(hub).await;
        panic!(
            "not {parked} parked of {open} open: {} parked of {} open",
            value(&text, PARKED),
            value(&text, OPEN_ECHO)
        );
    }
}

async fn assert_echoes(ws: &mut Client, message: Message) {
    timeout(WAIT, ws.send(message.clone()))
        .await
        .expect("sent in time")
        .unwrap();
    let echoed = timeout(WAIT, ws.next()).await.expect("echo in time");
    assert_eq!(echoed.unwrap().unwrap(), message);
}

#[tokio::test]
async fn a_quiet_connection_parks_and_echoes_text_and_binary_when_it_speaks_again() {
    let hub = common::start(config()).await;
    let mut ws = echo_client(&hub).await;
    assert_echoes(&mut ws, Message::text("before")).await;
    wait_for(&hub, 1, 1).await;

    assert_echoes(&mut ws, Message::text("héllo, parked")).await;
    assert_echoes(&mut ws, Message::binary(vec![0u8, 1, 2, 255])).await;
    // Quiet again, parked again.
    wait_for(&hub, 1, 1).await;
    assert_echoes(&mut ws, Message::binary(vec![7u8; 70_000])).await;
}

#[tokio::test]
async fn a_connection_that_never_spoke_parks_too() {
    let hub = common::start(config()).await;
    let mut ws = echo_client(&hub).await;
    wait_for(&hub, 1, 1).await;
    assert_echoes(&mut ws, Message::text("first words")).await;
}

#[tokio::test]
async fn half_a_frame_unparks_the_connection_and_the_rest_completes_it() {
    let hub = common::start(config()).await;
    let mut ws = echo_client(&hub).await;
    wait_for(&hub, 1, 1).await;
    // "Hello", masked, as in RFC 6455 §5.7, written raw in two parts.
    let frame = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    ws.get_mut().write_all(&frame[..4]).await.unwrap();
    ws.get_mut().flush().await.unwrap();
    // Resumed, and not parkable while the frame is half received.
    wait_for(&hub, 0, 1).await;
    ws.get_mut().write_all(&frame[4..]).await.unwrap();
    ws.get_mut().flush().await.unwrap();
    let echoed = timeout(WAIT, ws.next()).await.expect("echo in time");
    assert_eq!(echoed.unwrap().unwrap(), Message::text("Hello"));
    wait_for(&hub, 1, 1).await;
}

#[tokio::test]
async fn keepalive_pings_reach_a_parked_client_that_stays_open() {
    let mut config = config();
    config.websocket.ping_interval = Some(Duration::from_millis(1500));
    config.websocket.pong_timeout = Duration::from_secs(5);
    let hub = common::start(config).await;
    let mut ws = echo_client(&hub).await;
    assert_echoes(&mut ws, Message::text("hi")).await;
    wait_for(&hub, 1, 1).await;
    // The client answers while it is polled here.
    for _ in 0..2 {
        let ping = timeout(WAIT, async {
            loop {
                match ws.recv_incoming().await {
                    Some(Ok(Incoming::Ping(payload))) => return payload,
                    Some(Ok(_)) => {}
                    other => panic!("connection ended: {other:?}"),
                }
            }
        })
        .await
        .expect("a keepalive Ping in time");
        assert_eq!(&ping[..], b"wshub");
    }
    // Answered: parked again, still open, still echoing.
    wait_for(&hub, 1, 1).await;
    assert_echoes(&mut ws, Message::text("still here")).await;
}

#[tokio::test]
async fn a_parked_client_silent_past_the_pong_timeout_is_dropped() {
    let mut config = config();
    config.websocket.ping_interval = Some(Duration::from_millis(1000));
    config.websocket.pong_timeout = Duration::from_millis(700);
    let hub = common::start(config).await;
    // Never polled after this exchange: it answers no Ping.
    let mut ws = echo_client(&hub).await;
    assert_echoes(&mut ws, Message::text("hi")).await;
    wait_for(&hub, 1, 1).await;
    wait_for(&hub, 0, 0).await;
    let text = metrics(&hub).await;
    assert_eq!(
        value(
            &text,
            "wshub_connections_closed_total{route=\"/echo\",code=\"1006\"}"
        ),
        1,
        "{text}"
    );
}

#[tokio::test]
async fn shutdown_closes_parked_connections_with_1001() {
    let mut hub = common::start(config()).await;
    let mut parked = Vec::new();
    for _ in 0..3 {
        let mut ws = echo_client(&hub).await;
        assert_echoes(&mut ws, Message::text("hi")).await;
        parked.push(ws);
    }
    wait_for(&hub, 3, 3).await;
    hub.stop.take().unwrap().send(()).unwrap();
    for ws in &mut parked {
        let ended = timeout(WAIT, async {
            while let Some(m) = ws.next().await {
                if m.is_err() {
                    break;
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "connection ended in time");
        let event = ws.close_event().expect("closed");
        assert_eq!(event.code.as_u16(), 1001);
        assert_eq!(event.reason, "server shutting down");
    }
    timeout(WAIT, hub.task)
        .await
        .expect("server stopped in time")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_client_that_closes_while_parked_is_released() {
    let hub = common::start(config()).await;
    let mut ws = echo_client(&hub).await;
    assert_echoes(&mut ws, Message::text("hi")).await;
    wait_for(&hub, 1, 1).await;
    let event = timeout(WAIT, ws.close(wshub::CloseCode::NormalClosure, "bye"))
        .await
        .expect("closed in time")
        .unwrap();
    assert!(event.was_clean, "{event:?}");
    wait_for(&hub, 0, 0).await;
    let text = metrics(&hub).await;
    assert_eq!(
        value(
            &text,
            "wshub_connections_closed_total{route=\"/echo\",code=\"1000\"}"
        ),
        1,
        "{text}"
    );
}

#[tokio::test]
async fn a_client_that_disconnects_while_parked_is_released() {
    let hub = common::start(config()).await;
    let mut ws = echo_client(&hub).await;
    assert_echoes(&mut ws, Message::text("hi")).await;
    let mut other = echo_client(&hub).await;
    wait_for(&hub, 2, 2).await;
    drop(ws);
    wait_for(&hub, 1, 1).await;
    // The other one is untouched.
    assert_echoes(&mut other, Message::text("still here")).await;
}
