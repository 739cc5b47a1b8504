//! Parking of quiet connections, `/echo` and `/ws` (src/parker.rs): a
//! connection that has gone quiet leaves its task for the hub's parker, and
//! comes back whole when it speaks, when its rooms deliver to it, when its
//! auth deadline passes, when it leaves, and on shutdown; keepalive rounds
//! are answered while parked. The parker polls the sockets itself (epoll), which tokio's
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
const OPEN_HUB: &str = "wshub_connections_open{route=\"/ws\"}";

/// Waits until `/metrics` shows `parked` parked and `open` open `/echo`
/// connections.
async fn wait_for(hub: &Hub, parked: i64, open: i64) {
    wait_for_route(hub, parked, OPEN_ECHO, open).await;
}

/// Waits until `/metrics` shows `parked` parked connections and `open`
/// as the value of the series `route` (`OPEN_ECHO` or `OPEN_HUB`).
async fn wait_for_route(hub: &Hub, parked: i64, route: &str, open: i64) {
    let waited = timeout(WAIT, async {
        loop {
            let text = metrics(hub).await;
            if value(&text, PARKED) == parked && value(&text, route) == open {
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
            value(&text, route)
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

const RESUMED: &str = "wshub_connections_resumed_total";

enum Control {
    Ping,
    Pong,
}

/// The payload of the next Ping or Pong `ws` receives (it answers Pings as
/// it reads), messages skipped; fails if the connection ends first.
async fn next_control(ws: &mut Client, kind: Control) -> bytes::Bytes {
    let wanted = timeout(WAIT, async {
        loop {
            match (ws.recv_incoming().await, &kind) {
                (Some(Ok(Incoming::Ping(payload))), Control::Ping)
                | (Some(Ok(Incoming::Pong(payload))), Control::Pong) => return payload,
                (Some(Ok(_)), _) => {}
                (other, _) => panic!("connection ended: {other:?}"),
            }
        }
    });
    wanted.await.expect("a Ping or Pong in time")
}

/// Lets `ws`, the hub's one parked connection, answer `rounds` keepalive
/// Pings (it answers while it is polled here), and checks that the parker
/// took the Pongs without resuming it; returns the resume count.
async fn keepalive_rounds_resume_nothing(hub: &Hub, ws: &mut Client, rounds: usize) -> i64 {
    let resumed = value(&metrics(hub).await, RESUMED);
    for _ in 0..rounds {
        assert_eq!(&next_control(ws, Control::Ping).await[..], b"wshub");
    }
    // The last Pong is taken by now or soon; the pong timeout is far.
    sleep(Duration::from_millis(300)).await;
    let text = metrics(hub).await;
    assert_eq!(value(&text, PARKED), 1, "{text}");
    assert_eq!(
        value(&text, RESUMED),
        resumed,
        "resumed for a keepalive round"
    );
    resumed
}

#[tokio::test]
async fn keepalive_rounds_are_answered_while_parked_rfc_6455_section_5_5_2() {
    let mut config = config();
    config.websocket.ping_interval = Some(Duration::from_millis(700));
    config.websocket.pong_timeout = Duration::from_secs(5);
    let hub = common::start(config).await;
    let mut ws = echo_client(&hub).await;
    assert_echoes(&mut ws, Message::text("hi")).await;
    wait_for(&hub, 1, 1).await;
    let resumed = keepalive_rounds_resume_nothing(&hub, &mut ws, 3).await;
    assert_echoes(&mut ws, Message::text("still here")).await;
    // The message resumed it, and it parks again.
    assert_eq!(value(&metrics(&hub).await, RESUMED), resumed + 1);
    wait_for(&hub, 1, 1).await;
}

#[tokio::test]
async fn a_ping_from_a_parked_client_resumes_it_for_its_pong() {
    let hub = common::start(config()).await;
    let mut ws = echo_client(&hub).await;
    assert_echoes(&mut ws, Message::text("hi")).await;
    wait_for(&hub, 1, 1).await;
    ws.ping(b"are you there").await.unwrap();
    let pong = next_control(&mut ws, Control::Pong).await;
    assert_eq!(&pong[..], b"are you there");
    wait_for(&hub, 1, 1).await;
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

/// `/ws` members, as the chat page is: they join and then mostly listen.
mod members {
    use super::*;
    use common::{close_code, join, member, next_of_type, send};
    use serde_json::json;

    async fn wait_for(hub: &Hub, parked: i64, open: i64) {
        wait_for_route(hub, parked, OPEN_HUB, open).await;
    }

    #[tokio::test]
    async fn a_parked_member_is_resumed_by_its_rooms_and_keeps_its_name_and_rooms() {
        let hub = common::start(config()).await;
        let (mut ada, _) = member(&hub).await;
        join(&mut ada, "lobby", "ada").await;
        wait_for(&hub, 1, 1).await;
        // A join lists the parked member, and tells it of the newcomer.
        let (mut bob, _) = member(&hub).await;
        let joined = join(&mut bob, "lobby", "bob").await;
        assert!(joined["members"].to_string().contains("ada"), "{joined}");
        let presence = next_of_type(&mut ada, "presence").await;
        assert_eq!(presence["name"], "bob");
        wait_for(&hub, 2, 2).await;
        // Bob speaks (his socket resumes him), the room delivers to Ada
        // (her send queue resumes her), under her name and in her room.
        send(
            &mut bob,
            json!({"op":"publish","room":"lobby","message":"hi ada"}),
        )
        .await;
        let message = next_of_type(&mut ada, "message").await;
        assert_eq!(message["message"], "hi ada");
        assert_eq!(message["from"], "bob");
        wait_for(&hub, 2, 2).await;
        send(
            &mut ada,
            json!({"op":"publish","room":"lobby","message":"hi bob"}),
        )
        .await;
        // Bob hears his own message first (a room delivers to its sender too).
        assert_eq!(next_of_type(&mut bob, "message").await["message"], "hi ada");
        let message = next_of_type(&mut bob, "message").await;
        assert_eq!(message["from"], "ada");
        assert_eq!(message["message"], "hi bob");
        wait_for(&hub, 2, 2).await;
    }

    #[tokio::test]
    async fn keepalive_rounds_are_answered_while_members_stay_parked() {
        let mut config = config();
        config.websocket.ping_interval = Some(Duration::from_millis(600));
        config.websocket.pong_timeout = Duration::from_secs(5);
        let hub = common::start(config).await;
        let (mut ada, _) = member(&hub).await;
        join(&mut ada, "lobby", "ada").await;
        wait_for(&hub, 1, 1).await;
        keepalive_rounds_resume_nothing(&hub, &mut ada, 2).await;
    }

    #[tokio::test]
    async fn a_member_that_disconnects_while_parked_leaves_its_rooms() {
        let hub = common::start(config()).await;
        let (mut ada, _) = member(&hub).await;
        join(&mut ada, "lobby", "ada").await;
        let (mut bob, _) = member(&hub).await;
        join(&mut bob, "lobby", "bob").await;
        next_of_type(&mut ada, "presence").await;
        wait_for(&hub, 2, 2).await;
        drop(ada);
        let left = next_of_type(&mut bob, "presence").await;
        assert_eq!(left["name"], "ada");
        assert_eq!(left["event"], "leave");
        wait_for(&hub, 1, 1).await;
    }

    #[tokio::test]
    async fn shutdown_closes_parked_members_with_1001() {
        let mut hub = common::start(config()).await;
        let (mut ada, _) = member(&hub).await;
        join(&mut ada, "lobby", "ada").await;
        wait_for(&hub, 1, 1).await;
        let _ = hub.stop.take().unwrap().send(());
        assert_eq!(close_code(&mut ada).await, Some(1001));
    }

    /// The auth timeout is a deadline of the session's own: a member parked
    /// before it authenticates is resumed at it and closed with 4001
    /// (docs/protocol.md, "Authentication").
    #[tokio::test]
    async fn a_parked_member_that_never_authenticates_is_closed_at_its_deadline() {
        let mut config = config();
        config.auth.verifier = Some(wshub_hub::TokenVerifier::hs256(&[7; 32]).unwrap());
        config.auth.require = true;
        config.auth.timeout = Duration::from_millis(1500);
        let hub = common::start(config).await;
        let (mut ada, _) = member(&hub).await;
        wait_for(&hub, 1, 1).await;
        assert_eq!(close_code(&mut ada).await, Some(4001));
        wait_for(&hub, 0, 0).await;
    }
}
