//! Several hub nodes on one Redis acting as one hub (issue 14 §3;
//! docs/design/redis-engine.md): a real `redis-server` started here, three
//! `Hub`s in this process, each with its own Redis connections, as three
//! `wshub serve --engine redis` would be.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::time::timeout;
use wshub_hub::{Hub, HubConfig, PublishError, PublishOptions, RedisConfig};
use wshub_testkit::{Options, RedisServer, Relay};

/// A node on `redis`, served on a free port; its handle and address.
async fn node(redis: &RedisServer) -> (Hub, common::Hub) {
    node_on(RedisConfig::new(redis.url()).unwrap()).await
}

/// A node with `redis`, served on a free port; its handle and address.
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
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(&redis).await);
    }
    // Two subscribers per node, and one publisher on the first.
    let mut subscribers = Vec::new();
    for (i, (_, served)) in nodes.iter().enumerate() {
        for j in 0..2 {
            let (mut ws, _) = member(served).await;
            let joined = join(&mut ws, "lobby", &format!("s{i}{j}")).await;
            assert_eq!(joined["type"], "joined", "{joined}");
            subscribers.push(ws);
        }
    }
    let (mut publisher, _) = member(&nodes[0].1).await;
    join(&mut publisher, "lobby", "pub").await;
    const MESSAGES: u64 = 200;
    for n in 1..=MESSAGES {
        if n % 2 == 0 {
            // Every other one through the second node's Hub handle (the
            // HTTP API's path).
            let published = nodes[1]
                .0
                .publish("lobby", &json!(n), &PublishOptions::new())
                .await
                .unwrap();
            assert!(!published.duplicate);
        } else {
            let request = json!({"op":"publish","room":"lobby","message":n,"id":n});
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
            json!({"op":"publish","room":"lobby","message":"end","id":"end"}),
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
    let (a_hub, a) = node(&redis).await;
    let (_, b) = node(&redis).await;
    let (mut ws, _) = member(&a).await;
    join(&mut ws, "r", "me").await;
    for n in 1..=5 {
        a_hub
            .publish("r", &json!(n), &PublishOptions::new())
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
            .publish("r", &json!(n), &PublishOptions::new())
            .await
            .unwrap();
    }
    let (mut back, _) = member(&b).await;
    let since = json!({"epoch": last["epoch"], "offset": last["offset"]});
    send(&mut back, json!({"op":"join","room":"r","since":since})).await;
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
        .publish("r", &json!(10), &PublishOptions::new())
        .await
        .unwrap();
    let m = next_message(&mut back).await;
    assert_eq!(m["offset"], 10, "live after the replay, no repeat: {m}");

    // Another epoch recovers nothing, and says so.
    let (mut other, _) = member(&b).await;
    let since = json!({"epoch": "not-this-one", "offset": 3});
    send(&mut other, json!({"op":"join","room":"r","since":since})).await;
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

    // A name is the room's on every node.
    let (mut impostor, _) = member(&c).await;
    send(
        &mut impostor,
        json!({"op":"join","room":"r","name":"ann","id":1}),
    )
    .await;
    let refused = next_of_type(&mut impostor, "error").await;
    assert_eq!(refused["code"], "name_taken", "{refused}");

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
