//! Helpers shared by the hub's integration tests: a hub on 127.0.0.1:0,
//! clients of `/ws`, JSON in and out, every wait bounded.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use wshub::{Message, WebSocket};
use wshub_hub::HubConfig;

/// The bound on every single wait.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Hub {
    pub addr: SocketAddr,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

pub async fn start(config: HubConfig) -> Hub {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(wshub_hub::serve(listener, config, async {
        let _ = stopped.await;
    }));
    Hub {
        addr,
        stop: Some(stop),
        task,
    }
}

/// Serves `hub` (a handle, as Rust code that embeds the hub has) on a
/// free port until the test ends; its address.
pub async fn serve_handle(hub: &wshub_hub::Hub) -> Hub {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn({
        let hub = hub.clone();
        async move { hub.serve(listener, std::future::pending()).await }
    });
    Hub {
        addr,
        stop: None,
        task,
    }
}

pub type Ws = WebSocket<wshub::ClientStream>;

/// A `/ws` client past its `welcome`; returns it and its connection id.
pub async fn member(hub: &Hub) -> (Ws, u64) {
    let mut ws = timeout(WAIT, wshub::connect(&format!("ws://{}/ws", hub.addr)))
        .await
        .expect("connected in time")
        .unwrap();
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome");
    (ws, welcome["id"].as_u64().unwrap())
}

/// A `/ws` client with a 4 KiB receive buffer, so that its socket fills
/// quickly once it stops reading. Its `welcome` is left unread.
pub async fn non_reader(hub: &Hub) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = timeout(WAIT, socket.connect(hub.addr))
        .await
        .unwrap()
        .unwrap();
    timeout(
        WAIT,
        wshub::ClientBuilder::new(format!("ws://{}/ws", hub.addr))
            .connect_on(wshub::ClientStream::from(tcp)),
    )
    .await
    .unwrap()
    .unwrap()
}

pub async fn next_json(ws: &mut Ws) -> Value {
    let message = timeout(WAIT, ws.next()).await.expect("a message in time");
    let Some(message) = message else {
        panic!("connection closed: {:?}", ws.close_event());
    };
    match message.expect("no error") {
        Message::Text(t) => serde_json::from_str(t.as_str()).expect("hub sends JSON"),
        Message::Binary(_) => panic!("hub sent binary"),
    }
}

pub async fn next_of_type(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

pub async fn send(ws: &mut Ws, v: Value) {
    timeout(WAIT, ws.send(Message::text(v.to_string())))
        .await
        .expect("sent in time")
        .unwrap();
}

pub async fn join(ws: &mut Ws, room: &str, name: &str) -> Value {
    send(ws, json!({"op":"join","room":room,"name":name})).await;
    next_of_type(ws, "joined").await
}

/// Reads until the connection ends (bounded); returns its close code.
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    timeout(WAIT, async {
        while let Some(m) = ws.next().await {
            if m.is_err() {
                break;
            }
        }
    })
    .await
    .expect("connection ended in time");
    ws.close_event().map(|e| e.code.as_u16())
}
