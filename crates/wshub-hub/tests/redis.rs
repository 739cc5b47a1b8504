//! Several hub nodes on one Redis acting as one hub (issue 14 §3;
//! docs/design/redis-engine.md): a real `redis-server` (or a 3-master Redis
//! Cluster) started here, three `Hub`s in this process, each with its own
//! Redis connections, as three `wshub serve --engine redis` would be. The
//! cross-node tests run the same body on one server and on a cluster.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::time::timeout;
use wshub_hub::{Hub, HubConfig, PublishError, PublishOptions, RedisConfig};
use wshub_testkit::{Options, RedisCluster, RedisServer, Relay};

/// The engine's configuration for `redis`.
fn on_server(redis: &RedisServer) -> RedisConfig {
    RedisConfig::new(redis.url()).unwrap()
}

/// The engine's configuration for `cluster`, from two of its nodes as
/// seeds (it learns the third).
fn on_cluster(cluster: &RedisCluster) -> RedisConfig {
    RedisConfig::cluster(cluster.urls().into_iter().take(2)).unwrap()
}

/// A node on `redis`, served on a free port; its handle and address.
async fn node(redis: &RedisServer) -> (Hub, common::Hub) {
    node_on(on_server(redis)).await
}

/// A node with the engine on `redis`, served on a free port.
async fn node_on(redis: RedisConfig) -> (Hub, common::Hub) {
    let mut config = HubConfig::default();
    config.message_rate = 1_000_000;
    config.message_burst = 1_000_000;
    config.redis = Some(redis);
    let hub = Hub::new(config);
    let served = serve_handle(&hub).await;
    (hub, served)
}

/// The next room `message` of `ws`, skipping presence and answers.
async fn next_message(ws: &mut Ws) -> Value {
    next_of_type(ws, "message").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_three_nodes_get_every_message_in_order_once() {
    let redis = RedisServer::start(Options::default());
    every_message_in_order_once(&on_server(&redis), "lobby").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_members_on_three_nodes_get_every_message_in_order_once() {
    let cluster = RedisCluster::start(3);
    every_message_in_order_once(&on_cluster(&cluster), "lobby").await;
}

/// Rooms whose keys live on different masters each work: every master
/// holds two of them (checked with `CLUSTER KEYSLOT` and the masters'
/// slots), one gets its messages across nodes, the other resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_rooms_on_every_master_work() {
    let cluster = RedisCluster::start(3);
    let rooms = rooms_on_every_master(&cluster);
    let config = on_cluster(&cluster);
    for [live, resumed] in &rooms {
        every_message_in_order_once(&config, live).await;
        resumes_on_another_node(&config, resumed).await;
    }
}

/// A room's slot moves to another master while a node follows it (as in a
/// resharding): Redis ends the node's subscription on the old master
/// (`sunsubscribe`), the node takes it again on the new one, and its
/// member gets every message, those published around the move included,
/// in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_room_whose_slot_moves_keeps_delivering_in_order() {
    let cluster = RedisCluster::start(3);
    let config = on_cluster(&cluster);
    let (publisher, _) = node_on(config.clone()).await;
    let (_, b) = node_on(config).await;
    let (mut ws, _) = member(&b).await;
    join(&mut ws, "moving", "me").await;
    for n in 1..=3 {
        publisher
            .publish("moving", &json!(n), &PublishOptions::new())
            .await
            .unwrap();
    }
    for n in 1..=3 {
        assert_eq!(next_message(&mut ws).await["offset"], n);
    }
    move_slot_of(&cluster, "wshub:{moving}:meta");
    for n in 4..=6 {
        publisher
            .publish("moving", &json!(n), &PublishOptions::new())
            .await
            .unwrap();
    }
    for n in 4..=6 {
        let m = timeout(WAIT, next_message(&mut ws))
            .await
            .expect("delivered after the move");
        assert_eq!((&m["offset"], &m["message"]), (&json!(n), &json!(n)));
    }
    publisher
        .publish("moving", &json!(7), &PublishOptions::new())
        .await
        .unwrap();
    let m = next_message(&mut ws).await;
    assert_eq!(m["offset"], 7, "live, nothing repeated: {m}");
}

/// Every master holds a subscription to one of the node's watchdog
/// channels, so every subscriber connection is watched; when the slot of
/// one master's channel moves away, that master gets a new one (the
/// watchdog looks again every 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_every_master_keeps_a_watchdog_channel() {
    let cluster = RedisCluster::start(3);
    let (_hub, served) = node_on(on_cluster(&cluster)).await;
    // The first join makes the subscriber connect.
    let (mut ws, _) = member(&served).await;
    join(&mut ws, "r", "me").await;
    let watched = |n: usize| -> Vec<String> {
        cluster.nodes()[n]
            .command(&["PUBSUB", "SHARDCHANNELS", "wshub:node:*"])
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    };
    for n in 0..3 {
        assert_eq!(watched(n).len(), 1, "master {n}: {:?}", watched(n));
    }
    let moved = watched(0).remove(0);
    move_slot_of(&cluster, &moved);
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    while watched(0).is_empty() || watched(0).contains(&moved) {
        assert!(
            std::time::Instant::now() < deadline,
            "master 0 has no watchdog channel: {:?}",
            watched(0)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!watched(1).is_empty() && !watched(2).is_empty());
    assert_eq!(http_status(served.addr, "/readyz").await, 200);
}

/// Moves the slot of `key`, with its keys, from its master to another one
/// (`CLUSTER SETSLOT … IMPORTING/MIGRATING`, `MIGRATE`, `SETSLOT … NODE`
/// on every master), as `redis-cli --cluster reshard` does.
fn move_slot_of(cluster: &RedisCluster, key: &str) {
    let nodes = cluster.nodes();
    let slot = nodes[0]
        .command(&["CLUSTER", "KEYSLOT", key])
        .as_integer()
        .unwrap()
        .to_string();
    let id = |n: usize| {
        nodes[n]
            .command(&["CLUSTER", "MYID"])
            .as_str()
            .unwrap()
            .to_owned()
    };
    let owner = slot_owners(cluster)
        .into_iter()
        .find(|(first, last, _)| (*first..=*last).contains(&slot.parse().unwrap()))
        .map(|(_, _, port)| port)
        .expect("every slot is assigned");
    let from = (0..nodes.len())
        .find(|&n| i64::from(nodes[n].port()) == owner)
        .unwrap();
    let to = (from + 1) % nodes.len();
    let (from_id, to_id) = (id(from), id(to));
    let ok = |n: usize, args: &[&str]| {
        let reply = nodes[n].command(args);
        assert_eq!(reply.as_str(), Some("OK"), "{args:?}: {reply:?}");
    };
    ok(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
    ok(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
    let keys = nodes[from].command(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
    let keys: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    let port = nodes[to].port().to_string();
    let mut migrate = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
    migrate.extend(&keys);
    if !keys.is_empty() {
        ok(from, &migrate);
    }
    for n in [to, from, (to + 1) % nodes.len()] {
        ok(n, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
    }
}

/// A master of the cluster dies (kill -9, no replica): a publish to a room
/// on it fails within the engine's bound instead of hanging, and `/readyz`
/// turns 503 (its subscriber connection is lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_publish_to_a_dead_master_fails_closed() {
    let mut cluster = RedisCluster::start(3);
    let rooms = rooms_on_every_master(&cluster);
    let (hub, served) = node_on(on_cluster(&cluster)).await;
    let (mut ws, _) = member(&served).await;
    join(&mut ws, &rooms[2][0], "me").await;
    for [room, _] in &rooms {
        hub.publish(room, &json!(1), &PublishOptions::new())
            .await
            .unwrap();
    }
    // The rooms are in the order of the masters' ports, as the nodes are.
    let mut ports: Vec<u16> = cluster.nodes().iter().map(|n| n.port()).collect();
    ports.sort_unstable();
    let dead = ports[0];
    let node = cluster
        .nodes_mut()
        .iter_mut()
        .find(|n| n.port() == dead)
        .unwrap();
    node.kill9();
    let started = std::time::Instant::now();
    let failed = hub
        .publish(&rooms[0][0], &json!(2), &PublishOptions::new())
        .await;
    assert!(
        matches!(failed, Err(PublishError::Unavailable(_))),
        "{failed:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let mut ready = 200;
    for _ in 0..150 {
        ready = http_status(served.addr, "/readyz").await;
        if ready == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, 503);
}

/// (first slot, last slot, master's port) of each range of `cluster`.
fn slot_owners(cluster: &RedisCluster) -> Vec<(i64, i64, i64)> {
    cluster.nodes()[0]
        .command(&["CLUSTER", "SLOTS"])
        .as_array()
        .expect("CLUSTER SLOTS answers an array")
        .iter()
        .map(|range| {
            let range = range.as_array().unwrap();
            let master = range[2].as_array().unwrap();
            (
                range[0].as_integer().unwrap(),
                range[1].as_integer().unwrap(),
                master[1].as_integer().unwrap(),
            )
        })
        .collect()
}

/// Two room names for each master of `cluster` whose keys
/// (`wshub:{room}:…`) that master owns.
fn rooms_on_every_master(cluster: &RedisCluster) -> Vec<[String; 2]> {
    let redis = &cluster.nodes()[0];
    let ranges = slot_owners(cluster);
    let mut by_master = std::collections::BTreeMap::new();
    for n in 0..1000 {
        let room = format!("room-{n}");
        let key = format!("wshub:{{{room}}}:meta");
        let slot = redis
            .command(&["CLUSTER", "KEYSLOT", &key])
            .as_integer()
            .unwrap();
        let (_, _, port) = ranges
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .expect("every slot is assigned");
        let rooms: &mut Vec<String> = by_master.entry(*port).or_default();
        if rooms.len() < 2 {
            rooms.push(room);
        }
        if by_master.len() == 3 && by_master.values().all(|rooms| rooms.len() == 2) {
            break;
        }
    }
    assert_eq!(by_master.len(), 3, "{by_master:?}");
    by_master
        .into_values()
        .map(|rooms| rooms.try_into().expect("two rooms on each master"))
        .collect()
}

/// Three nodes on `redis`, two members of `room` on each and a publisher:
/// each member gets every message, published on any node through `/ws`
/// or the `Hub` handle, in offset order, once.
async fn every_message_in_order_once(redis: &RedisConfig, room: &str) {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node_on(redis.clone()).await);
    }
    // Two subscribers per node, and one publisher on the first.
    let mut subscribers = Vec::new();
    for (i, (_, served)) in nodes.iter().enumerate() {
        for j in 0..2 {
            let (mut ws, _) = member(served).await;
            let joined = join(&mut ws, room, &format!("s{i}{j}")).await;
            assert_eq!(joined["type"], "joined", "{joined}");
            subscribers.push(ws);
        }
    }
    let (mut publisher, _) = member(&nodes[0].1).await;
    join(&mut publisher, room, "pub").await;
    const MESSAGES: u64 = 200;
    for n in 1..=MESSAGES {
        if n % 2 == 0 {
            // Every other one through the second node's Hub handle (the
            // HTTP API's path).
            let published = nodes[1]
                .0
                .publish(room, &json!(n), &PublishOptions::new())
                .await
                .unwrap();
            assert!(!published.duplicate);
        } else {
            let request = json!({"op":"publish","room":room,"message":n,"id":n});
            send(&mut publisher, request).await;
            let answer = next_of_type(&mut publisher, "published").await;
            assert_eq!(answer["id"], n, "{answer}");
        }
    }
    let epoch = {
        let first = next_message(&mut subscribers[0]).await;
        assert_eq!(
            (&first["offset"], &first["message"]),
            (&json!(1), &json!(1))
        );
        first["epoch"].as_str().unwrap().to_owned()
    };
    for (k, ws) in subscribers.iter_mut().enumerate() {
        let start = if k == 0 { 2 } else { 1 };
        for n in start..=MESSAGES {
            let m = timeout(WAIT, next_message(ws)).await.expect("in time");
            assert_eq!(
                (&m["offset"], &m["message"], m["epoch"].as_str()),
                (&json!(n), &json!(n), Some(epoch.as_str())),
                "subscriber {k}"
            );
        }
    }
    // Nothing more, and no duplicate, arrived meanwhile.
    for ws in &mut subscribers {
        send(
            ws,
            json!({"op":"publish","room":room,"message":"end","id":"end"}),
        )
        .await;
    }
    for ws in &mut subscribers {
        let m = next_message(ws).await;
        assert_eq!(
            m["offset"],
            MESSAGES + 1,
            "no duplicate before the next: {m}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_node_with_nothing_lost_or_repeated() {
    let redis = RedisServer::start(Options::default());
    resumes_on_another_node(&on_server(&redis), "r").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_client_resumes_on_another_node() {
    let cluster = RedisCluster::start(3);
    resumes_on_another_node(&on_cluster(&cluster), "r").await;
}

/// A member of `room` on one node leaves, messages are published on that
/// node, and it resumes on another: the missed ones, in order, then live,
/// nothing repeated; another epoch says `recovered: false`.
async fn resumes_on_another_node(redis: &RedisConfig, room: &str) {
    let (a_hub, a) = node_on(redis.clone()).await;
    let (_, b) = node_on(redis.clone()).await;
    let (mut ws, _) = member(&a).await;
    join(&mut ws, room, "me").await;
    for n in 1..=5 {
        a_hub
            .publish(room, &json!(n), &PublishOptions::new())
            .await
            .unwrap();
    }
    let mut last = Value::Null;
    for _ in 1..=5 {
        last = next_message(&mut ws).await;
    }
    drop(ws);
    // While away: published on the node it left.
    for n in 6..=9 {
        a_hub
            .publish(room, &json!(n), &PublishOptions::new())
            .await
            .unwrap();
    }
    let (mut back, _) = member(&b).await;
    let since = json!({"epoch": last["epoch"], "offset": last["offset"]});
    send(&mut back, json!({"op":"join","room":room,"since":since})).await;
    let joined = next_of_type(&mut back, "joined").await;
    assert_eq!(
        (&joined["recovered"], &joined["offset"]),
        (&json!(true), &json!(9)),
        "{joined}"
    );
    for n in 6..=9 {
        let m = next_message(&mut back).await;
        assert_eq!((&m["offset"], &m["message"]), (&json!(n), &json!(n)));
    }
    a_hub
        .publish(room, &json!(10), &PublishOptions::new())
        .await
        .unwrap();
    let m = next_message(&mut back).await;
    assert_eq!(m["offset"], 10, "live after the replay, no repeat: {m}");

    // Another epoch recovers nothing, and says so.
    let (mut other, _) = member(&b).await;
    let since = json!({"epoch": "not-this-one", "offset": 3});
    send(&mut other, json!({"op":"join","room":room,"since":since})).await;
    let joined = next_of_type(&mut other, "joined").await;
    assert_eq!(joined["recovered"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_publishes_fail_readyz_says_so_and_members_catch_up_after() {
    let mut redis = RedisServer::start(Options {
        appendonly: true,
        ..Options::default()
    });
    let (hub, served) = node(&redis).await;
    let (mut ws, _) = member(&served).await;
    join(&mut ws, "r", "me").await;
    hub.publish("r", &json!(1), &PublishOptions::new())
        .await
        .unwrap();
    assert_eq!(next_message(&mut ws).await["offset"], 1);

    redis.kill9();
    let failed = hub
        .publish("r", &json!("lost"), &PublishOptions::new())
        .await;
    assert!(
        matches!(failed, Err(PublishError::Unavailable(_))),
        "{failed:?}"
    );
    send(
        &mut ws,
        json!({"op":"publish","room":"r","message":"x","id":1}),
    )
    .await;
    let answer = next_of_type(&mut ws, "error").await;
    assert_eq!(
        (&answer["code"], &answer["id"]),
        (&json!("unavailable"), &json!(1))
    );
    // The subscriber notices; /readyz turns 503.
    let mut ready = 200;
    for _ in 0..100 {
        ready = http_status(served.addr, "/readyz").await;
        if ready == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, 503);

    // Back (with its data): a message published while the member's node
    // was away from Redis reaches it, after the ones before it.
    redis.restart();
    let other = RedisConfig::new(redis.url()).unwrap();
    let mut config = HubConfig::default();
    config.redis = Some(other);
    let elsewhere = Hub::new(config);
    let mut published = None;
    for _ in 0..100 {
        match elsewhere
            .publish("r", &json!(2), &PublishOptions::new())
            .await
        {
            Ok(p) => {
                published = Some(p);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(published.expect("Redis back").offset, 2);
    let m = timeout(WAIT, next_message(&mut ws))
        .await
        .expect("caught up");
    assert_eq!((&m["offset"], &m["message"]), (&json!(2), &json!(2)));
    // The node's own command connection is back too.
    let mut again = None;
    for _ in 0..100 {
        match hub.publish("r", &json!(3), &PublishOptions::new()).await {
            Ok(p) => {
                again = Some(p);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(again.expect("the node publishes again").offset, 3);
    for _ in 0..100 {
        if http_status(served.addr, "/readyz").await == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz stayed 503 after Redis came back");
}

/// The status of `GET path` on `addr`.
async fn http_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&answer[9..12]).parse().unwrap()
}

/// A subscription connection that stays open but stops delivering (here a
/// relay in front of it that stalls) is found by the watchdog within 10 s
/// (the node turns not ready), and once Redis can be reached again the
/// node's members get what was published meanwhile, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_subscription_is_detected_within_10_s_and_repaired_without_a_gap() {
    let redis = RedisServer::start(Options::default());
    let relay = Relay::start(redis.addr());
    let relayed = format!("redis://{}", relay.addr());
    let mut config = HubConfig::default();
    config.redis = Some(
        RedisConfig::new(redis.url())
            .unwrap()
            .with_subscriber_url(relayed)
            .unwrap(),
    );
    let starved = Hub::new(config);
    let served = serve_handle(&starved).await;
    let addr = served.addr;
    let (publisher, _) = node(&redis).await;
    let (mut ws, _) = member(&served).await;
    join(&mut ws, "r", "me").await;
    publisher
        .publish("r", &json!(1), &PublishOptions::new())
        .await
        .unwrap();
    assert_eq!(next_message(&mut ws).await["offset"], 1);
    assert_eq!(http_status(addr, "/readyz").await, 200);

    relay.stall();
    let stalled = std::time::Instant::now();
    for n in 2..=4 {
        publisher
            .publish("r", &json!(n), &PublishOptions::new())
            .await
            .unwrap();
    }
    while http_status(addr, "/readyz").await != 503 {
        assert!(
            stalled.elapsed() < Duration::from_secs(10),
            "the starved subscription was not found within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    relay.resume();
    for n in 2..=4 {
        let m = timeout(Duration::from_secs(15), next_message(&mut ws))
            .await
            .expect("repaired");
        assert_eq!((&m["offset"], &m["message"]), (&json!(n), &json!(n)));
    }
    publisher
        .publish("r", &json!(5), &PublishOptions::new())
        .await
        .unwrap();
    let m = next_message(&mut ws).await;
    assert_eq!(m["offset"], 5, "live again, nothing repeated: {m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_the_rooms_on_every_node_and_a_dead_nodes_members_leave_it() {
    let redis = RedisServer::start(Options::default());
    let ttl = Duration::from_millis(900);
    let config = |url: String| {
        RedisConfig::new(url)
            .unwrap()
            .with_presence_ttl(ttl)
            .unwrap()
    };
    let (a_hub, a) = node_on(config(redis.url())).await;
    let (_, b) = node_on(config(redis.url())).await;
    // The third node sends its commands through a relay: stalled, it can
    // no longer renew its members' presence, as if it had died.
    let relay = Relay::start(redis.addr());
    let (_, c) = node_on(
        config(format!("redis://{}", relay.addr()))
            .with_subscriber_url(redis.url())
            .unwrap(),
    )
    .await;

    let (mut ann, _) = member(&a).await;
    let joined = join(&mut ann, "r", "ann").await;
    assert_eq!(joined["members"], json!(["ann"]), "{joined}");
    let (mut bob, _) = member(&b).await;
    let joined = join(&mut bob, "r", "bob").await;
    assert_eq!(
        (&joined["members"], &joined["member_count"]),
        (&json!(["ann", "bob"]), &json!(2)),
        "the members of every node: {joined}"
    );
    let notice = next_of_type(&mut ann, "presence").await;
    assert_eq!(
        (&notice["event"], &notice["name"]),
        (&json!("join"), &json!("bob"))
    );

    let info = a_hub.room("r").await.unwrap();
    assert_eq!(
        (info.members, info.member_count),
        (vec!["ann".to_owned(), "bob".to_owned()], 2)
    );

    send(&mut bob, json!({"op":"leave","room":"r"})).await;
    let notice = next_of_type(&mut ann, "presence").await;
    assert_eq!(
        (&notice["event"], &notice["name"]),
        (&json!("leave"), &json!("bob"))
    );

    let (mut ghost, _) = member(&c).await;
    let joined = join(&mut ghost, "r", "ghost").await;
    assert_eq!(joined["members"], json!(["ann", "ghost"]), "{joined}");
    let notice = next_of_type(&mut ann, "presence").await;
    assert_eq!(
        (&notice["event"], &notice["name"]),
        (&json!("join"), &json!("ghost"))
    );
    relay.stall();
    // Found by a renewal of the first node, within a few ttls.
    let notice = timeout(Duration::from_secs(10), next_of_type(&mut ann, "presence"))
        .await
        .expect("the dead node's member left");
    assert_eq!(
        (&notice["event"], &notice["name"]),
        (&json!("leave"), &json!("ghost"))
    );
    let info = a_hub.room("r").await.unwrap();
    assert_eq!(
        (info.members, info.member_count),
        (vec!["ann".to_owned()], 1)
    );
    // Reachable again, the node puts its member back, and says so.
    relay.resume();
    let notice = timeout(Duration::from_secs(10), next_of_type(&mut ann, "presence"))
        .await
        .expect("the member came back");
    assert_eq!(
        (&notice["event"], &notice["name"]),
        (&json!("join"), &json!("ghost"))
    );
    let info = a_hub.room("r").await.unwrap();
    assert_eq!(info.member_count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_restarts_empty_a_join_answers_the_new_epoch_before_its_first_message() {
    let mut redis = RedisServer::start(Options::default());
    let (hub, served) = node(&redis).await;
    let (mut ws, _) = member(&served).await;
    let old = join(&mut ws, "r", "me").await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 1..=3 {
        hub.publish("r", &json!(n), &PublishOptions::new())
            .await
            .unwrap();
    }
    assert_eq!(next_message(&mut ws).await["offset"], 1);

    redis.kill9();
    redis.restart_empty();
    // Once the node is back on Redis (a publish goes through), the room's
    // head has been read again: the new life, with nothing in it yet.
    timeout(WAIT, async {
        while http_status(served.addr, "/readyz").await != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("ready again");
    let (mut back, _) = member(&served).await;
    let since = json!({"epoch": old, "offset": 3});
    send(&mut back, json!({"op":"join","room":"r","since":since})).await;
    let joined = next_of_type(&mut back, "joined").await;
    assert_ne!(joined["epoch"], json!(old), "not the lost epoch: {joined}");
    assert_eq!(
        (&joined["offset"], &joined["recovered"]),
        (&json!(0), &json!(false)),
        "{joined}"
    );
}

/// A test CA (rcgen) and what it signs.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A certificate for 127.0.0.1 and its key, both PEM.
    fn issue(&self) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wshub test redis");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A `redis-server` that also listens with TLS, on the port returned, with
/// a certificate of `ca`, asking clients for none, and password `pw` (set
/// once started: the testkit's probes speak plain RESP without AUTH).
fn tls_redis(ca: &Ca, dir: &std::path::Path) -> (RedisServer, u16) {
    tls_redis_asking(ca, dir, "no")
}

/// [`tls_redis`] with `--tls-auth-clients` = `auth_clients` (`yes`: a
/// client certificate of `ca` is required).
fn tls_redis_asking(ca: &Ca, dir: &std::path::Path, auth_clients: &str) -> (RedisServer, u16) {
    let (cert, key) = ca.issue();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args = [
        "--tls-port".to_owned(),
        tls_port.to_string(),
        "--tls-cert-file".to_owned(),
        write("redis.pem", &cert),
        "--tls-key-file".to_owned(),
        write("redis.key", &key),
        "--tls-ca-cert-file".to_owned(),
        write("ca.pem", &ca.cert.pem()),
        "--tls-auth-clients".to_owned(),
        auth_clients.to_owned(),
    ];
    let redis = RedisServer::start(Options {
        args: args.to_vec(),
        ..Options::default()
    });
    assert_eq!(
        redis
            .command(&["CONFIG", "SET", "requirepass", "pw"])
            .as_str(),
        Some("OK")
    );
    (redis, tls_port)
}

/// `rediss://` with a password, the server's CA given beside the
/// platform's roots: the cross-node test passes as on plain TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_password_members_on_three_nodes_get_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wshub test CA");
    let (_redis, port) = tls_redis(&ca, dir.path());
    let config = RedisConfig::new(format!("rediss://:pw@127.0.0.1:{port}"))
        .unwrap()
        .with_ca_pem(ca.cert.pem().into_bytes())
        .unwrap();
    every_message_in_order_once(&config, "lobby").await;
}

/// A server whose certificate another CA signed: nothing is acknowledged
/// (publishes answer `unavailable`, naming the TLS error), and `/readyz`
/// stays 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_certificate_of_another_ca_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (_redis, port) = tls_redis(&Ca::new("the server's CA"), dir.path());
    let config = RedisConfig::new(format!("rediss://:pw@127.0.0.1:{port}"))
        .unwrap()
        .with_ca_pem(Ca::new("another CA").cert.pem().into_bytes())
        .unwrap();
    let (hub, served) = node_on(config).await;
    let started = std::time::Instant::now();
    let failed = hub.publish("r", &json!(1), &PublishOptions::new()).await;
    let Err(PublishError::Unavailable(why)) = failed else {
        panic!("{failed:?}")
    };
    assert!(why.contains("certificate"), "{why}");
    // Failed at the first attempt's handshake, not after every retry.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(http_status(served.addr, "/readyz").await, 503);
}

/// A Redis that asks for a client certificate gets the one configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_client_certificate_is_shown_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wshub test CA");
    let (_redis, port) = tls_redis_asking(&ca, dir.path(), "yes");
    let (cert, key) = ca.issue();
    let config = RedisConfig::new(format!("rediss://:pw@127.0.0.1:{port}"))
        .unwrap()
        .with_ca_pem(ca.cert.pem().into_bytes())
        .unwrap()
        .with_client_identity(cert.into_bytes(), key.into_bytes())
        .unwrap();
    let (hub, _) = node_on(config).await;
    let published = hub.publish("r", &json!(1), &PublishOptions::new()).await;
    assert_eq!(published.unwrap().offset, 1);
}

/// An ACL user and its password in the URL (`redis://user:password@…`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_in_the_url_is_used() {
    let redis = RedisServer::start(Options::default());
    let user = [
        "ACL", "SETUSER", "hub", "on", ">s3cret", "~*", "&*", "+@all",
    ];
    assert_eq!(redis.command(&user).as_str(), Some("OK"));
    assert_eq!(
        redis
            .command(&["ACL", "SETUSER", "default", "off"])
            .as_str(),
        Some("OK")
    );
    let url = redis.url().replace("redis://", "redis://hub:s3cret@");
    every_message_in_order_once(&RedisConfig::new(url).unwrap(), "lobby").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_let_go_of_costs_the_other_rooms_nothing() {
    let redis = RedisServer::start(Options::default());
    let (hub, served) = node(&redis).await;
    let (mut stays, _) = member(&served).await;
    join(&mut stays, "stays", "s").await;
    // The last member here of `brief` leaves: the node lets the room go.
    let (mut brief, _) = member(&served).await;
    join(&mut brief, "brief", "b").await;
    send(&mut brief, json!({"op":"leave","room":"brief"})).await;
    next_of_type(&mut brief, "left").await;
    // The subscription stays healthy for the room still held: it stays
    // ready, and messages keep coming, in order, for 3 s (an unsubscribe
    // that costs the connection fails both at about 2 s).
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let mut n = 0;
    while std::time::Instant::now() < until {
        n += 1;
        hub.publish("stays", &json!(n), &PublishOptions::new())
            .await
            .unwrap();
        let m = timeout(Duration::from_millis(1500), next_message(&mut stays))
            .await
            .expect("delivered without a stall");
        assert_eq!(m["offset"], n);
        assert_eq!(http_status(served.addr, "/readyz").await, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And the room let go of can be joined again and delivers.
    join(&mut brief, "brief", "b").await;
    hub.publish("brief", &json!("back"), &PublishOptions::new())
        .await
        .unwrap();
    assert_eq!(next_message(&mut brief).await["message"], "back");
}
