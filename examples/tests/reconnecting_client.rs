//! The `reconnecting_client` example (seed 003): callback, heartbeat,
//! reconnect with backoff, `close_myself`.

mod common;

use std::time::Duration;

use common::{within, Server};
use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use wshub::reconnect::Backoff;
use wshub::{CloseEvent, Message, State};
use wshub_examples::heartbeat_server;
use wshub_examples::reconnecting_client::{Options, WebSocketClient};

fn quick_options() -> Options {
    Options {
        backoff: Backoff::new(Duration::from_millis(20), Duration::from_millis(200)),
        ..Options::default()
    }
}

/// A client whose callback forwards every message into a channel.
fn client(
    url: String,
    data: &str,
    options: Options,
) -> (WebSocketClient, mpsc::UnboundedReceiver<Message>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = WebSocketClient::connect(url, Some(data.to_owned()), options, move |m| {
        let _ = tx.send(m);
    });
    (client, rx)
}

/// Waits until the callback sees the text `want`, skipping other messages.
async fn callback_sees(rx: &mut mpsc::UnboundedReceiver<Message>, want: &str) {
    within(&format!("callback gets {want:?}"), async {
        while let Some(message) = rx.recv().await {
            if message == Message::text(want) {
                return;
            }
        }
        panic!("the client stopped");
    })
    .await;
}

#[tokio::test]
async fn reconnects_when_the_server_comes_back_on_the_same_port() {
    let server =
        Server::start(|l| heartbeat_server::run(l, heartbeat_server::Config::default())).await;
    let addr = server.addr;
    let (client, mut rx) = client(server.url("/"), "hello", quick_options());
    // The server greets, then broadcasts the client's opening message back.
    callback_sees(&mut rx, heartbeat_server::GREETING).await;
    callback_sees(&mut rx, "hello").await;
    assert_eq!(client.ready_state(), State::Open);
    client.send("again").await.unwrap();
    callback_sees(&mut rx, "again").await;

    server.stop().await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let _server = Server::on(listener, |l| {
        heartbeat_server::run(l, heartbeat_server::Config::default())
    });
    // Only a new connection can deliver these: the old server is gone.
    callback_sees(&mut rx, heartbeat_server::GREETING).await;
    callback_sees(&mut rx, "hello").await;
    client.send("after the restart").await.unwrap();
    callback_sees(&mut rx, "after the restart").await;
    within("close_myself", client.close_myself()).await;
}

#[tokio::test]
async fn keeps_its_heartbeat_with_the_heartbeat_server() {
    let server =
        Server::start(|l| heartbeat_server::run(l, heartbeat_server::Config::default())).await;
    let options = Options {
        ping_interval: Duration::from_millis(30),
        pong_timeout: Duration::from_millis(2000),
        ..quick_options()
    };
    let (client, mut rx) = client(server.url("/"), "hello", options);
    callback_sees(&mut rx, r#"{"type":0,"message":"pong"}"#).await;
    callback_sees(&mut rx, r#"{"type":0,"message":"pong"}"#).await;
    within("close_myself", client.close_myself()).await;
}

/// A server that reads and ignores everything, reporting each connection
/// opened and how it ended.
async fn silent_server() -> (
    Server,
    mpsc::UnboundedReceiver<Option<CloseEvent>>,
    mpsc::UnboundedReceiver<Message>,
) {
    let (opened_tx, opened) = mpsc::unbounded_channel();
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let server = Server::start(|listener| async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let Ok(mut ws) = wshub::accept(tcp).await else {
                continue;
            };
            let ended_tx = ended_tx.clone();
            let opened_tx: mpsc::UnboundedSender<Message> = opened_tx.clone();
            tokio::spawn(async move {
                while let Some(Ok(message)) = ws.next().await {
                    let _ = opened_tx.send(message);
                }
                let _ = ended_tx.send(ws.close_event());
            });
        }
    })
    .await;
    (server, ended, opened)
}

#[tokio::test]
async fn a_connection_without_pong_is_replaced() {
    let (server, mut ended, mut received) = silent_server().await;
    let options = Options {
        ping_interval: Duration::from_millis(20),
        pong_timeout: Duration::from_millis(100),
        ..quick_options()
    };
    let (client, _rx) = client(server.url("/"), "first open", options);
    assert_eq!(
        within("first open", received.recv()).await,
        Some(Message::text("first open"))
    );
    // The client gives up on the silent connection and drops it ...
    let first = within("first connection ends", ended.recv()).await.unwrap();
    assert!(!first.unwrap().was_clean, "dropped, not closed");
    // ... then opens another, which sends its opening message again.
    let again = within("second open", async {
        loop {
            match received.recv().await {
                Some(m) if m == Message::text("first open") => return,
                Some(_) => {}
                None => panic!("server gone"),
            }
        }
    });
    again.await;
    within("close_myself", client.close_myself()).await;
}

#[tokio::test]
async fn close_myself_closes_with_1000_and_never_reconnects() {
    let (server, mut ended, mut received) = silent_server().await;
    let (client, _rx) = client(server.url("/"), "hi", quick_options());
    assert_eq!(
        within("open", received.recv()).await,
        Some(Message::text("hi"))
    );
    assert_eq!(client.ready_state(), State::Open);

    within("close_myself", client.close_myself()).await;
    let event = within("server sees the close", ended.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((event.code.as_u16(), event.was_clean), (1000, true));
    // `close_myself` returned after the client's task ended, so nothing can
    // reconnect; check the server anyway.
    let reconnect = tokio::time::timeout(Duration::from_millis(300), received.recv()).await;
    assert!(matches!(reconnect, Err(_) | Ok(None)), "{reconnect:?}");
}
