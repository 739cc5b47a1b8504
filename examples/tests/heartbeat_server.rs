//! The `heartbeat_server` example (seed 004): `something` on connect,
//! broadcast as-is, `ping` answered to its sender alone, a JSON ping to each
//! client.

mod common;

use std::time::Duration;

use common::{next, next_text, within, Server};
use wshub::Message;
use wshub_examples::heartbeat_server::{self, Config, GREETING};
use wshub_examples::Envelope;

#[tokio::test]
async fn ping_is_answered_to_the_sender_alone_and_the_rest_reaches_everyone() {
    let server = Server::start(|l| heartbeat_server::run(l, Config::default())).await;
    // The greeting comes once a client is a member of the broadcast.
    let mut a = within("connect a", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    assert_eq!(next_text(&mut a).await, GREETING);
    let mut b = within("connect b", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    assert_eq!(next_text(&mut b).await, GREETING);

    a.send(Message::text("ping")).await.unwrap();
    let pong = next_text(&mut a).await;
    assert_eq!(pong, r#"{"type":0,"message":"pong"}"#);
    assert_eq!(Envelope::parse(&pong).unwrap(), Envelope::new(0, "pong"));

    a.send(Message::text("hello")).await.unwrap();
    // Had the pong been broadcast, `b` would see it before the hello.
    assert_eq!(next(&mut b).await, Message::text("hello"));
    assert_eq!(next(&mut a).await, Message::text("hello"));

    b.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(next(&mut a).await, Message::binary(vec![1u8, 2, 3]));
    assert_eq!(next(&mut b).await, Message::binary(vec![1u8, 2, 3]));
}

#[tokio::test]
async fn the_server_pings_each_client_every_interval() {
    let config = Config {
        ping_interval: Duration::from_millis(50),
        ..Config::default()
    };
    let server = Server::start(|l| heartbeat_server::run(l, config)).await;
    let mut a = within("connect", wshub::connect(&server.url("/")))
        .await
        .unwrap();
    assert_eq!(next_text(&mut a).await, GREETING);
    for _ in 0..2 {
        assert_eq!(next_text(&mut a).await, r#"{"type":1,"message":"ping"}"#);
    }
}
