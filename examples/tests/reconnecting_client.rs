//! The `reconnecting_client` example: callback, keepalive, reconnect with
//! backoff, `close_myself`.

mod common;
// The example files themselves, so the code tested is the code shown. Their
// `main`s are not called here.
#[allow(dead_code)]
#[path = "../heartbeat_server.rs"]
pub mod heartbeat_server;
#[allow(dead_code)]
#[path = "../reconnecting_client.rs"]
pub mod reconnecting_client;

use std::time::Duration;

use common::{within, Server};
use reconnecting_client::{Options, WebSocketClient};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use wshub::reconnect::Backoff;
use wshub::{CloseEvent, Message, State};

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
async fn keeps_its_connection_through_many_keepalive_rounds() {
    let server =
        Server::start(|l| heartbeat_server::run(l, heartbeat_server::Config::default())).await;
    let options = Options {
        ping_interval: Duration::from_millis(20),
        pong_timeout: Duration::from_millis(250),
        ..quick_options()
    };
    let (client, mut rx) = client(server.url("/"), "hello", options);
    callback_sees(&mut rx, heartbeat_server::GREETING).await;
    callback_sees(&mut rx, "hello").await;
    // Thirty ping intervals, two pong timeouts: a connection dropped and
    // replaced would show as a second greeting.
    let quiet = tokio::time::timeout(Duration::from_millis(600), rx.recv()).await;
    assert!(quiet.is_err(), "{quiet:?}");
    assert_eq!(client.ready_state(), State::Open);
    client.send("still here").await.unwrap();
    assert_eq!(
        within("echo", rx.recv()).await,
        Some(Message::text("still here"))
    );
    within("close_myself", client.close_myself()).await;
}

/// A server that reports every message it receives and how each connection
/// ended. A `frozen` one stops reading after a connection's first message, so
/// from then on it answers no Ping: a peer that hung without closing.
async fn reporting_server(
    frozen: bool,
) -> (
    Server,
    mpsc::UnboundedReceiver<Option<CloseEvent>>,
    mpsc::UnboundedReceiver<Message>,
) {
    let (received_tx, received) = mpsc::unbounded_channel();
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
            let received_tx: mpsc::UnboundedSender<Message> = received_tx.clone();
            tokio::spawn(async move {
                while let Some(Ok(message)) = ws.recv().await {
                    let _ = received_tx.send(message);
                    if frozen {
                        std::future::pending::<()>().await;
                    }
                }
                let _ = ended_tx.send(ws.close_event());
            });
        }
    })
    .await;
    (server, ended, received)
}

#[tokio::test]
async fn a_connection_whose_pings_go_unanswered_is_replaced() {
    let (server, _ended, mut received) = reporting_server(true).await;
    let options = Options {
        ping_interval: Duration::from_millis(20),
        pong_timeout: Duration::from_millis(100),
        ..quick_options()
    };
    let (client, _rx) = client(server.url("/"), "opening message", options);
    assert_eq!(
        within("first open", received.recv()).await,
        Some(Message::text("opening message"))
    );
    // The server never closes the frozen connection: only the client's
    // keepalive giving up on it can bring a second one.
    assert_eq!(
        within("second open", received.recv()).await,
        Some(Message::text("opening message"))
    );
    // Not `close_myself`: a close handshake with the frozen server would
    // wait out the close timeout.
    drop(client);
}

#[tokio::test]
async fn close_myself_closes_with_1000_and_never_reconnects() {
    let (server, mut ended, mut received) = reporting_server(false).await;
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
