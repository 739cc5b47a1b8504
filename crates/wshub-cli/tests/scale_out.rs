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
    // Each node numbers its connections from 1, so its first anonymous
    // member is anon-1 on both: two members, not a name taken.
    let (mut anonymous, mut members) = (Vec::new(), Vec::new());
    for server in [&a, &b] {
        let mut ws = hub_client(server).await;
        send(&mut ws, json!({"op":"join","room":"lobby"})).await;
        let joined = next_of_type(&mut ws, "joined").await;
        anonymous.push((joined["name"].clone(), joined["member_count"].clone()));
        members.push(ws);
    }
    assert_eq!(
        anonymous,
        [(json!("anon-1"), json!(1)), (json!("anon-1"), json!(2))]
    );
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

/// `wshub serve --engine redis FLAG VALUE` exits 2 with a message naming
/// the flag and saying `fix`.
fn assert_redis_flag_refused(flag: &str, value: &str, fix: &str) {
    let (code, stderr) = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--engine",
        "redis",
        flag,
        value,
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(flag) && stderr.contains(fix), "{stderr}");
}

#[test]
fn a_url_that_is_not_redis_stops_serve_with_the_fix() {
    assert_redis_flag_refused("--redis-url", "http://example.com", "redis://host:port");
}

#[test]
fn a_presence_ttl_out_of_range_stops_serve_with_the_fix() {
    assert_redis_flag_refused("--presence-ttl", "100ms", "300ms to 1d");
}

#[tokio::test]
async fn the_members_of_a_node_killed_with_sigkill_leave_for_the_other_nodes() {
    let redis = RedisServer::start(Options::default());
    let url = redis.url();
    let flags = [
        "--engine",
        "redis",
        "--redis-url",
        &url,
        "--presence-ttl",
        "1500ms",
    ];
    let a = Server::start(&flags);
    let mut b = Server::start(&flags);
    let mut on_a = hub_client(&a).await;
    send(&mut on_a, json!({"op":"join","room":"lobby","name":"ann"})).await;
    next_of_type(&mut on_a, "joined").await;
    let mut on_b = hub_client(&b).await;
    send(&mut on_b, json!({"op":"join","room":"lobby","name":"bob"})).await;
    let joined = next_of_type(&mut on_b, "joined").await;
    assert_eq!(joined["members"], json!(["ann", "bob"]), "{joined}");
    let notice = next_of_type(&mut on_a, "presence").await;
    assert_eq!(
        (&notice["event"], &notice["name"]),
        (&json!("join"), &json!("bob"))
    );

    // kill -9: no leave is ever sent for bob.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let notice = next_of_type(&mut on_a, "presence").await;
    assert_eq!(
        (&notice["event"], &notice["name"]),
        (&json!("leave"), &json!("bob")),
        "bob's entry expired with its node"
    );
    let mut again = hub_client(&a).await;
    send(&mut again, json!({"op":"join","room":"lobby","name":"bob"})).await;
    let joined = next_of_type(&mut again, "joined").await;
    assert_eq!(
        joined["members"],
        json!(["ann", "bob"]),
        "the name is free: {joined}"
    );
}
