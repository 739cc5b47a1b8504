//! `wshub serve --engine redis`: two real nodes on one real Redis, or on a
//! real 3-master Redis Cluster, serve the same rooms (README "Scale out");
//! a bad Redis URL stops `serve` at start.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::time::timeout;
use wshub::Message;
use wshub_testkit::{Options, RedisCluster, RedisServer};

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
    two_nodes_serve_the_same_room(&["--engine", "redis", "--redis-url", &redis.url()]).await;
}

#[tokio::test]
async fn two_nodes_on_a_redis_cluster_serve_the_same_room() {
    let cluster = RedisCluster::start(3);
    let urls = cluster.urls();
    // Two seeds, as a user would give them; the third master is found.
    let flags = [
        "--engine",
        "redis",
        "--redis-cluster",
        &urls[0],
        "--redis-cluster",
        &urls[1],
    ];
    two_nodes_serve_the_same_room(&flags).await;
}

/// Two `wshub serve` with `flags`: a message published on either reaches
/// the member on the other, both with the same offsets and epoch.
async fn two_nodes_serve_the_same_room(flags: &[&str]) {
    let a = Server::start(flags);
    let b = Server::start(flags);
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
    // Its own copy of the message may come before the answer or after it:
    // the answer comes from the publish, the copy through the room's
    // subscription (docs/protocol.md).
    let mut early = Vec::new();
    let published = loop {
        let v = next_json(&mut on_a).await;
        match v["type"].as_str() {
            Some("published") => break v,
            Some("message") => early.push(v),
            _ => {}
        }
    };
    assert_eq!(published["offset"], 1, "{published}");
    send(
        &mut on_b,
        json!({"op":"publish","room":"lobby","message":"from b"}),
    )
    .await;
    for (ws, mut seen) in [(&mut on_a, early), (&mut on_b, Vec::new())] {
        while seen.len() < 2 {
            seen.push(next_of_type(ws, "message").await);
        }
        let (first, second) = (&seen[0], &seen[1]);
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
    assert_redis_serve_refused(&[flag, value], &[flag, fix]);
}

/// `wshub serve --engine redis FLAGS…` exits 2 with a message that says
/// each of `says`.
fn assert_redis_serve_refused(flags: &[&str], says: &[&str]) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--engine", "redis"];
    args.extend_from_slice(flags);
    let (code, stderr) = run(&args);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(says.iter().all(|s| stderr.contains(s)), "{stderr}");
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

#[test]
fn redis_cluster_and_redis_url_together_stop_serve_with_the_fix() {
    assert_redis_serve_refused(
        &[
            "--redis-url",
            "redis://127.0.0.1:6379",
            "--redis-cluster",
            "redis://127.0.0.1:7000",
        ],
        &["--redis-cluster", "--redis-url"],
    );
}

#[test]
fn a_redis_ca_that_is_not_pem_stops_serve_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    assert_redis_serve_refused(
        &[
            "--redis-url",
            "rediss://127.0.0.1:6379",
            "--redis-ca",
            ca.to_str().unwrap(),
        ],
        &["--redis-ca", "PEM"],
    );
}

/// `rediss://` to a Redis whose certificate the given `--redis-ca` did not
/// sign: `serve` runs but is not ready, says why in its log (rustls' error),
/// and a join is answered `unavailable`.
#[tokio::test]
async fn rediss_with_another_ca_is_not_ready_and_logs_the_tls_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let server = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let args = [
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &file("redis.pem", &server.cert.pem()),
        "--tls-key-file",
        &file("redis.key", &server.key_pair.serialize_pem()),
        "--tls-auth-clients",
        "no",
    ];
    let _redis = RedisServer::start(Options {
        args: args.map(String::from).to_vec(),
        ..Options::default()
    });
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let ca = file("other-ca.pem", &other.cert.pem());
    let flags = ["--engine", "redis", "--redis-url", &url, "--redis-ca", &ca];
    let node = Server::start(&flags);
    let line = node.log.wait_for("subscriber cannot connect");
    assert!(line.contains("certificate"), "{line}");
    assert!(node.get("/readyz").await.contains("503"));
    let mut ws = hub_client(&node).await;
    send(&mut ws, json!({"op":"join","room":"r","name":"ann"})).await;
    let answer = next_of_type(&mut ws, "error").await;
    assert_eq!(answer["code"], "unavailable", "{answer}");
}
