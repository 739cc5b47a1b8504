//! `wshub serve --engine redis`: two real nodes on one real Redis serve the
//! same rooms (README "Scale out"); a bad Redis URL stops `serve` at start.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::time::timeout;
use wshub::Message;
use wshub_testkit::{Options, RedisServer};

type Ws = wshub::WebSocket<wshub::ClientStream>;

async fn hub_client(server: &Server) -> Ws {
    let url = format!("ws://{}/ws", server.addr);
    let mut ws = timeout(WAIT, wshub::connect(&url)).await.unwrap().unwrap();
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome");
    ws
}

async fn next_json(ws: &mut Ws) -> Value {
    let message = timeout(WAIT, ws.next())
        .await
        .expect("a message in time")
        .expect("open")
        .expect("valid");
    serde_json::from_slice(message.as_bytes()).unwrap()
}

async fn next_of_type(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

#[tokio::test]
async fn two_nodes_on_one_redis_serve_the_same_room() {
    let redis = RedisServer::start(Options::default());
    let flags = ["--engine", "redis", "--redis-url", &redis.url()];
    let a = Server::start(&flags);
    let b = Server::start(&flags);
    let mut on_a = hub_client(&a).await;
    let mut on_b = hub_client(&b).await;
    for (ws, name) in [(&mut on_a, "ann"), (&mut on_b, "bob")] {
        send(ws, json!({"op":"join","room":"lobby","name":name})).await;
        next_of_type(ws, "joined").await;
    }
    send(
        &mut on_a,
        json!({"op":"publish","room":"lobby","message":"from a","id":1}),
    )
    .await;
    let published = next_of_type(&mut on_a, "published").await;
    assert_eq!(published["offset"], 1, "{published}");
    send(
        &mut on_b,
        json!({"op":"publish","room":"lobby","message":"from b"}),
    )
    .await;
    for ws in [&mut on_a, &mut on_b] {
        let first = next_of_type(ws, "message").await;
        let second = next_of_type(ws, "message").await;
        assert_eq!(
            (
                &first["message"],
                &first["offset"],
                &second["message"],
                &second["offset"]
            ),
            (&json!("from a"), &json!(1), &json!("from b"), &json!(2))
        );
        assert_eq!(first["epoch"], second["epoch"]);
    }
    assert!(a.get("/readyz").await.contains("200"));
}

#[test]
fn a_url_that_is_not_redis_stops_serve_with_the_fix() {
    let (code, stderr) = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--engine",
        "redis",
        "--redis-url",
        "http://example.com",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--redis-url") && stderr.contains("redis://host:port"),
        "{stderr}"
    );
}
