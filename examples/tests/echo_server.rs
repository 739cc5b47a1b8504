//! The `echo_server` example: every message comes back as it was sent.

mod common;
// The example file itself, so the code tested is the code shown. Its `main`
// is not called here.
#[allow(dead_code)]
#[path = "../echo_server.rs"]
pub mod echo_server;

use common::{next, within, Server};
use wshub::{CloseCode, Message};

#[tokio::test]
async fn text_comes_back_as_text_and_binary_as_binary() {
    let server = Server::start(echo_server::run).await;
    let mut ws = within("connect", wshub::connect(&server.url("/")))
        .await
        .unwrap();

    ws.send(Message::text("Hello Server!")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("Hello Server!"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(vec![0u8, 1, 2, 255]));
    ws.send(Message::text("")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text(""));

    let closed = within("close", ws.close(CloseCode::NormalClosure, "bye"))
        .await
        .unwrap();
    assert!(closed.was_clean);
    assert_eq!(closed.code.as_u16(), 1000);
}

#[tokio::test]
async fn clients_are_served_independently() {
    let server = Server::start(echo_server::run).await;
    let mut a = within("connect a", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    let mut b = within("connect b", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    a.send(Message::text("from a")).await.unwrap();
    b.send(Message::text("from b")).await.unwrap();
    assert_eq!(next(&mut b).await, Message::text("from b"));
    assert_eq!(next(&mut a).await, Message::text("from a"));
}
