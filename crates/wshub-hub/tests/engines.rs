//! The behavioural suite both engines pass (issue 14 §3): each test here
//! runs twice, `<test>::memory` on the in-memory engine and `<test>::redis`
//! on the Redis engine with a real `redis-server` started for it — rooms,
//! publish and its answers, idempotency keys, presence, the HTTP API's
//! `Hub` handle, and history and resume over `/ws` (docs/protocol.md,
//! "History and resume": a `join` with `since` gets exactly the messages it
//! missed, right after `joined` and before the live ones, or, when the room
//! no longer has them all, `recovered: false` and none of them). Behaviours
//! of one engine only are at the end, marked so.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::time::timeout;
use wshub_hub::{Hub, HubConfig, PublishOptions, RedisConfig};
use wshub_testkit::{Options, RedisServer};

/// The engine a test runs on.
enum Engine {
    /// The in-memory default.
    Memory,
    /// Redis, on this server, started for the test (and stopped with it).
    Redis(RedisServer),
}

impl Engine {
    fn redis() -> Self {
        Self::Redis(RedisServer::start(Options::default()))
    }

    /// A hub with `config` on this engine, served on a free port: its
    /// handle and its address.
    async fn start(&self, mut config: HubConfig) -> (Hub, common::Hub) {
        if let Self::Redis(server) = self {
            config.redis = Some(RedisConfig::new(server.url()).unwrap());
        }
        let hub = Hub::new(config);
        let served = serve_handle(&hub).await;
        (hub, served)
    }
}

/// Runs each test named on both engines, as `<test>::memory` and
/// `<test>::redis`.
macro_rules! on_both_engines {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$test(super::Engine::Memory).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$test(super::Engine::redis()).await
            }
        }
    )*};
}

on_both_engines!(
    publish_reaches_every_member_in_order_and_an_id_is_answered,
    publishes_sent_back_to_back_are_answered_and_delivered_in_order,
    answers_keep_request_order_behind_publishes,
    an_idempotency_key_publishes_once,
    presence_lists_the_members_tells_joins_and_leaves_and_keeps_names_unique,
    leaving_ends_delivery_and_publishing_needs_membership,
    the_api_publishes_into_a_room_without_members_for_those_who_resume,
    resuming_under_a_busy_publisher_loses_nothing_and_repeats_nothing,
    a_resume_the_room_cannot_serve_whole_replays_nothing,
    a_room_without_members_keeps_its_history_and_its_offsets,
    a_malformed_since_is_a_bad_request_and_the_connection_stays,
);

/// A hub whose clients may publish as fast as they like.
fn config() -> HubConfig {
    let mut config = HubConfig::default();
    config.message_rate = 1_000_000;
    config.message_burst = 1_000_000;
    config
}

/// `join` of `room` with `since` (`epoch`, `offset`); the `joined` answer.
async fn resume(ws: &mut Ws, room: &str, epoch: &str, offset: u64) -> Value {
    let since = json!({"epoch": epoch, "offset": offset});
    send(ws, json!({"op":"join","room":room,"since":since})).await;
    next_of_type(ws, "joined").await
}

/// The next room message or answer, skipping presence notices.
async fn next_frame(ws: &mut Ws) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] != "presence" {
            return v;
        }
    }
}

/// Publishes `message` to `room` and waits for its own copy; returns its
/// offset.
async fn publish(ws: &mut Ws, room: &str, message: Value) -> u64 {
    send(ws, json!({"op":"publish","room":room,"message":message})).await;
    loop {
        let v = next_of_type(ws, "message").await;
        if v["message"] == message {
            assert_eq!(v["seq"], v["offset"], "seq is offset's alias");
            return v["offset"].as_u64().unwrap();
        }
    }
}

/// Asserts that the next frame `ws` gets is the room message `marker`, so
/// that nothing was replayed before it.
async fn next_is(ws: &mut Ws, marker: &str) {
    let v = next_frame(ws).await;
    assert_eq!(
        (v["type"].as_str(), &v["message"]),
        (Some("message"), &json!(marker)),
        "nothing before the live message: {v}"
    );
}

/// Reads `ws` until it has both the `published` answer to `id` and the
/// room `message` carrying `marker`; returns them.
async fn answer_and_copy(ws: &mut Ws, id: u64, marker: &Value) -> (Value, Value) {
    let (mut answer, mut copy) = (None, None);
    while answer.is_none() || copy.is_none() {
        let v = next_frame(ws).await;
        match v["type"].as_str() {
            Some("published") if v["id"] == id => answer = Some(v),
            Some("message") if v["message"] == *marker => copy = Some(v),
            _ => panic!("unexpected before the answer and the copy: {v}"),
        }
    }
    (answer.unwrap(), copy.unwrap())
}

async fn publish_reaches_every_member_in_order_and_an_id_is_answered(engine: Engine) {
    let (_, hub) = engine.start(config()).await;
    let (mut ann, ann_id) = member(&hub).await;
    let joined = join(&mut ann, "r", "ann").await;
    assert_eq!(
        (&joined["offset"], &joined["seq"], &joined["name"]),
        (&json!(0), &json!(0), &json!("ann")),
        "{joined}"
    );
    let epoch = joined["epoch"].clone();
    assert!(epoch.as_str().is_some_and(|e| !e.is_empty()), "{joined}");
    let (mut bob, _) = member(&hub).await;
    join(&mut bob, "r", "bob").await;
    for n in 1..=20u64 {
        let marker = json!({ "n": n });
        send(
            &mut ann,
            json!({"op":"publish","room":"r","message":marker,"id":n}),
        )
        .await;
        let (answer, copy) = answer_and_copy(&mut ann, n, &marker).await;
        assert_eq!(
            (&answer["room"], &answer["offset"], &answer["epoch"]),
            (&json!("r"), &json!(n), &epoch),
            "{answer}"
        );
        assert_eq!(copy["offset"], n, "{copy}");
    }
    for n in 1..=20u64 {
        let m = next_of_type(&mut bob, "message").await;
        assert_eq!(
            (&m["room"], &m["from"], &m["from_id"], &m["message"]),
            (
                &json!("r"),
                &json!("ann"),
                &json!(ann_id),
                &json!({ "n": n })
            ),
        );
        assert_eq!(
            (&m["offset"], &m["seq"], &m["epoch"]),
            (&json!(n), &json!(n), &epoch)
        );
        assert!(m["ts"].as_u64().is_some_and(|ts| ts > 0), "{m}");
    }
}

/// A publisher that does not wait for answers: every publish is answered,
/// in the order sent, under consecutive offsets, and delivered in that
/// order (what a Redis engine that pipelines publishes must keep).
async fn publishes_sent_back_to_back_are_answered_and_delivered_in_order(engine: Engine) {
    const COUNT: u64 = 300;
    let (_, hub) = engine.start(config()).await;
    let (mut publisher, _) = member(&hub).await;
    let (mut reader, _) = member(&hub).await;
    join(&mut publisher, "burst", "pub").await;
    join(&mut reader, "burst", "reader").await;
    for n in 1..=COUNT {
        send(
            &mut publisher,
            json!({"op":"publish","room":"burst","message":n,"id":n}),
        )
        .await;
    }
    let mut answered = 0;
    while answered < COUNT {
        let v = next_json(&mut publisher).await;
        if v["type"] == "published" {
            answered += 1;
            assert_eq!(
                (&v["id"], &v["offset"]),
                (&json!(answered), &json!(answered)),
                "answers in the order sent: {v}"
            );
        } else {
            assert!(v["type"] == "message" || v["type"] == "presence", "{v}");
        }
    }
    for n in 1..=COUNT {
        let m = next_of_type(&mut reader, "message").await;
        assert_eq!((&m["offset"], &m["message"]), (&json!(n), &json!(n)));
    }
}

/// Publishes sent back to back, then a request answered at once (a
/// publish to a room not joined), a `ping`, a publish again and a `join`:
/// every answer comes in request order (the Redis engine keeps publishes
/// in flight and must hold the others' answers behind theirs).
async fn answers_keep_request_order_behind_publishes(engine: Engine) {
    const COUNT: u64 = 100;
    let (_, hub) = engine.start(config()).await;
    let (mut ws, _) = member(&hub).await;
    join(&mut ws, "r", "ann").await;
    for n in 1..=COUNT {
        send(
            &mut ws,
            json!({"op":"publish","room":"r","message":n,"id":n}),
        )
        .await;
    }
    send(
        &mut ws,
        json!({"op":"publish","room":"elsewhere","message":0,"id":"x"}),
    )
    .await;
    ws.send(wshub::Message::text("ping")).await.unwrap();
    send(
        &mut ws,
        json!({"op":"publish","room":"r","message":"last","id":"y"}),
    )
    .await;
    send(&mut ws, json!({"op":"join","room":"s","id":"j"})).await;
    let mut answers = Vec::new();
    while answers.last() != Some(&json!("j")) {
        let message = timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer in time")
            .expect("open")
            .expect("valid");
        if message.as_bytes() == b"pong" {
            answers.push(json!("pong"));
            continue;
        }
        let v: Value = serde_json::from_slice(message.as_bytes()).unwrap();
        if let Some("published" | "error" | "joined") = v["type"].as_str() {
            answers.push(v["id"].clone());
        }
    }
    let mut expected: Vec<Value> = (1..=COUNT).map(|n| json!(n)).collect();
    expected.extend([json!("x"), json!("pong"), json!("y"), json!("j")]);
    assert_eq!(answers, expected, "answers in request order");
}

async fn an_idempotency_key_publishes_once(engine: Engine) {
    let (handle, hub) = engine.start(config()).await;
    let (mut ws, _) = member(&hub).await;
    join(&mut ws, "r", "ann").await;
    let request = |id: u64| json!({"op":"publish","room":"r","message":"once","key":"k1","id":id});
    send(&mut ws, request(1)).await;
    let (first, copy) = answer_and_copy(&mut ws, 1, &json!("once")).await;
    assert_eq!(copy["offset"], 1);
    send(&mut ws, request(2)).await;
    let again = next_of_type(&mut ws, "published").await;
    assert_eq!(
        (&first["offset"], &first["duplicate"]),
        (&json!(1), &json!(false))
    );
    assert_eq!(
        (&again["offset"], &again["duplicate"], &again["id"]),
        (&json!(1), &json!(true), &json!(2)),
        "the first publish's offset"
    );
    let options = PublishOptions::new().idempotency_key("k2");
    let api = handle.publish("r", &json!("api"), &options).await.unwrap();
    let api_again = handle.publish("r", &json!("api"), &options).await.unwrap();
    assert_eq!((api.offset, api.duplicate), (2, false));
    assert_eq!((api_again.offset, api_again.duplicate), (2, true));
    handle
        .publish("r", &json!("end"), &PublishOptions::new())
        .await
        .unwrap();
    for (offset, message) in [(2, "api"), (3, "end")] {
        let m = next_of_type(&mut ws, "message").await;
        assert_eq!(
            (&m["offset"], &m["message"]),
            (&json!(offset), &json!(message)),
            "each once"
        );
    }
}

async fn presence_lists_the_members_tells_joins_and_leaves_and_keeps_names_unique(engine: Engine) {
    let (handle, hub) = engine.start(config()).await;
    let (mut ann, _) = member(&hub).await;
    let joined = join(&mut ann, "r", "ann").await;
    assert_eq!(
        (&joined["members"], &joined["member_count"]),
        (&json!(["ann"]), &json!(1))
    );
    let (mut bob, _) = member(&hub).await;
    let joined = join(&mut bob, "r", "bob").await;
    assert_eq!(
        (&joined["members"], &joined["member_count"]),
        (&json!(["ann", "bob"]), &json!(2))
    );
    let notice = next_of_type(&mut ann, "presence").await;
    assert_eq!(
        (&notice["room"], &notice["event"], &notice["name"]),
        (&json!("r"), &json!("join"), &json!("bob"))
    );
    assert!(notice["ts"].as_u64().is_some(), "{notice}");

    let (mut impostor, _) = member(&hub).await;
    send(
        &mut impostor,
        json!({"op":"join","room":"r","name":"ann","id":9}),
    )
    .await;
    let refused = next_of_type(&mut impostor, "error").await;
    assert_eq!(
        (&refused["code"], &refused["id"]),
        (&json!("name_taken"), &json!(9))
    );
    let info = handle.room("r").await.unwrap();
    assert_eq!(
        (info.members, info.member_count),
        (vec!["ann".to_owned(), "bob".to_owned()], 2)
    );

    send(&mut bob, json!({"op":"leave","room":"r"})).await;
    assert_eq!(next_of_type(&mut bob, "left").await["room"], "r");
    let notice = next_of_type(&mut ann, "presence").await;
    assert_eq!(
        (&notice["event"], &notice["name"]),
        (&json!("leave"), &json!("bob"))
    );
    // A member whose connection ends leaves too.
    let joined = join(&mut impostor, "r", "cat").await;
    assert_eq!(joined["member_count"], 2, "{joined}");
    assert_eq!(next_of_type(&mut ann, "presence").await["name"], "cat");
    drop(impostor);
    let notice = next_of_type(&mut ann, "presence").await;
    assert_eq!(
        (&notice["event"], &notice["name"]),
        (&json!("leave"), &json!("cat"))
    );
    // The names of those who left are free.
    let joined = join(&mut bob, "r", "cat").await;
    assert_eq!(joined["members"], json!(["ann", "cat"]), "{joined}");
}

async fn leaving_ends_delivery_and_publishing_needs_membership(engine: Engine) {
    let (_, hub) = engine.start(config()).await;
    let (mut ann, _) = member(&hub).await;
    let (mut bob, _) = member(&hub).await;
    join(&mut ann, "r", "ann").await;
    join(&mut bob, "r", "bob").await;
    send(&mut bob, json!({"op":"leave","room":"r","id":1})).await;
    let left = next_of_type(&mut bob, "left").await;
    assert_eq!((&left["room"], &left["id"]), (&json!("r"), &json!(1)));
    publish(&mut ann, "r", json!("after bob left")).await;
    send(
        &mut bob,
        json!({"op":"publish","room":"r","message":"x","id":2}),
    )
    .await;
    // Nothing of the room came before the answer.
    let refused = next_frame(&mut bob).await;
    assert_eq!(
        (&refused["type"], &refused["code"], &refused["id"]),
        (&json!("error"), &json!("not_joined"), &json!(2)),
        "{refused}"
    );
    send(&mut bob, json!({"op":"leave","room":"r","id":3})).await;
    assert_eq!(next_frame(&mut bob).await["code"], "not_joined");
}

async fn the_api_publishes_into_a_room_without_members_for_those_who_resume(engine: Engine) {
    let (handle, hub) = engine.start(config()).await;
    let mut epoch = String::new();
    for n in 1..=3 {
        let published = handle
            .publish("empty", &json!(n), &PublishOptions::new().from("backend"))
            .await
            .unwrap();
        assert_eq!(published.offset, n);
        epoch = published.epoch.to_string();
    }
    let page = handle.history("empty", None, 10).await.unwrap();
    assert_eq!(
        (page.epoch.as_deref(), page.offset, page.messages.len()),
        (Some(epoch.as_str()), 3, 3)
    );
    let since = wshub_hub::protocol::Since {
        epoch: epoch.clone(),
        offset: 1,
    };
    let page = handle.history("empty", Some(&since), 10).await.unwrap();
    assert_eq!((page.recovered, page.messages.len()), (Some(true), 2));
    let first: Value = serde_json::from_slice(page.messages[0].payload()).unwrap();
    assert_eq!(
        (&first["offset"], &first["from"], &first["from_id"]),
        (&json!(2), &json!("backend"), &json!(0))
    );

    let (mut ws, _) = member(&hub).await;
    let joined = resume(&mut ws, "empty", &epoch, 1).await;
    assert_eq!(
        (&joined["recovered"], &joined["offset"]),
        (&json!(true), &json!(3)),
        "{joined}"
    );
    for offset in [2, 3] {
        assert_eq!(next_frame(&mut ws).await["offset"], offset);
    }
    let info = handle.room("empty").await.unwrap();
    assert_eq!(
        (info.member_count, info.offset, info.epoch),
        (1, 3, Some(epoch))
    );
}

async fn resuming_under_a_busy_publisher_loses_nothing_and_repeats_nothing(engine: Engine) {
    const MESSAGES: u64 = 1500;
    let mut config = config();
    // Big enough that every disconnection here is recovered: the test is
    // of ordering, not of the window.
    config.history_size = 10_000;
    config.history_max_replay = 10_000;
    let (_, hub) = engine.start(config).await;

    let (mut subscriber, _) = member(&hub).await;
    let first = join(&mut subscriber, "race", "sub").await;
    assert_eq!(first["offset"], 0);
    let epoch = first["epoch"].as_str().unwrap().to_owned();

    let (mut publisher, _) = member(&hub).await;
    join(&mut publisher, "race", "pub").await;
    let publishing = tokio::spawn(async move {
        // Paced by its own copies, so it never outruns its send queue,
        // and keeps publishing through every reconnection below.
        for n in 1..=MESSAGES {
            assert_eq!(publish(&mut publisher, "race", json!(n)).await, n);
        }
        publisher
    });

    // Every offset as it arrived, across connections, not de-duplicated.
    let mut seen: Vec<u64> = Vec::new();
    let mut resumes = 0;
    // Resumes that had messages to replay: the hub went on while the
    // subscriber was away.
    let mut replayed = 0;
    let mut ws = subscriber;
    'connections: loop {
        // A different number of messages on each connection, then the
        // connection is dropped without a Close, as a network would.
        let quota = 37 + 53 * resumes;
        for _ in 0..quota {
            let v = timeout(Duration::from_secs(30), next_frame(&mut ws))
                .await
                .expect("the room keeps flowing");
            assert_eq!(v["type"], "message", "{v}");
            assert_eq!(v["epoch"], epoch.as_str());
            let offset = v["offset"].as_u64().unwrap();
            seen.push(offset);
            if offset == MESSAGES {
                break 'connections;
            }
        }
        drop(ws);
        resumes += 1;
        let (mut fresh, _) = member(&hub).await;
        let last = seen.last().copied().unwrap_or(0);
        let joined = resume(&mut fresh, "race", &epoch, last).await;
        assert_eq!(joined["recovered"], true, "{joined}");
        assert_eq!(joined["epoch"], epoch.as_str());
        let offset = joined["offset"].as_u64().unwrap();
        assert!(offset >= last, "{joined}");
        replayed += usize::from(offset > last);
        ws = fresh;
    }
    let publisher = timeout(Duration::from_secs(60), publishing)
        .await
        .expect("publisher done")
        .unwrap();
    drop(publisher);
    assert!(resumes >= 5, "resumed {resumes} times");
    assert!(replayed >= 1, "no resume had anything to replay");
    let expected: Vec<u64> = (1..=MESSAGES).collect();
    assert!(
        seen == expected,
        "offsets seen are not exactly 1..={MESSAGES}: {} of them, first wrong at {:?}",
        seen.len(),
        seen.iter()
            .zip(1..)
            .find(|(got, want)| **got != *want)
            .map(|(got, want)| (want, *got)),
    );
}

async fn a_resume_the_room_cannot_serve_whole_replays_nothing(engine: Engine) {
    let mut config = config();
    config.history_size = 10;
    config.history_max_replay = 5;
    let (_, hub) = engine.start(config).await;
    let (mut publisher, _) = member(&hub).await;
    let joined = join(&mut publisher, "r", "pub").await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    for n in 1..=12 {
        publish(&mut publisher, "r", json!(n)).await;
    }
    // Kept: the last 10; at most 5 replayed. (rooms.rs tests the window
    // by size apart from max replay, and by age.)
    let mut last = 12;
    type Since = fn(u64) -> u64;
    let cases: [(&str, &str, Since); 4] = [
        ("another epoch", "0000000000000000-1", |last| last),
        ("ahead of the room", &epoch, |last| last + 1),
        ("more than max replay", &epoch, |last| last - 6),
        ("older than the history", &epoch, |last| last - 11),
    ];
    for (n, (why, since_epoch, offset)) in cases.into_iter().enumerate() {
        let (mut ws, _) = member(&hub).await;
        let joined = resume(&mut ws, "r", since_epoch, offset(last)).await;
        assert_eq!(joined["recovered"], false, "{why}: {joined}");
        assert_eq!(joined["epoch"], epoch.as_str(), "{why}");
        let marker = format!("live-{n}");
        let live = publish(&mut publisher, "r", json!(marker)).await;
        assert_eq!(
            (joined["offset"].as_u64(), live),
            (Some(last), last + 1),
            "{why}"
        );
        last = live;
        next_is(&mut ws, &marker).await;
    }

    // Within the window: exactly what was missed, then the live ones.
    let (mut ws, _) = member(&hub).await;
    let last = publish(&mut publisher, "r", json!("before")).await;
    let joined = resume(&mut ws, "r", &epoch, last - 3).await;
    assert_eq!(
        (&joined["recovered"], &joined["offset"]),
        (&json!(true), &json!(last))
    );
    for offset in last - 2..=last {
        let v = next_frame(&mut ws).await;
        assert_eq!(
            (&v["type"], &v["offset"]),
            (&json!("message"), &json!(offset))
        );
    }
    publish(&mut publisher, "r", json!("after")).await;
    next_is(&mut ws, "after").await;

    // A join without since has no `recovered`.
    let (mut plain, _) = member(&hub).await;
    let joined = join(&mut plain, "r", "plain").await;
    assert!(joined.get("recovered").is_none(), "{joined}");
}

async fn a_room_without_members_keeps_its_history_and_its_offsets(engine: Engine) {
    let (_, hub) = engine.start(config()).await;
    let (mut ws, _) = member(&hub).await;
    let epoch = join(&mut ws, "quiet", "a").await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 1..=3 {
        publish(&mut ws, "quiet", json!(n)).await;
    }
    drop(ws);

    // Everyone gone; the room is kept for its history (10 minutes by
    // default), so a new member resumes in the same epoch.
    let (mut back, _) = member(&hub).await;
    let joined = resume(&mut back, "quiet", &epoch, 1).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(
        (&joined["epoch"], &joined["offset"]),
        (&json!(epoch), &json!(3))
    );
    for offset in [2, 3] {
        assert_eq!(next_frame(&mut back).await["offset"], offset);
    }
    assert_eq!(publish(&mut back, "quiet", json!("on")).await, 4);
}

async fn a_malformed_since_is_a_bad_request_and_the_connection_stays(engine: Engine) {
    let (_, hub) = engine.start(config()).await;
    let (mut ws, _) = member(&hub).await;
    for since in [
        json!("5"),
        json!({"epoch":"e-1"}),
        json!({"epoch":"e-1","offset":-1}),
        json!({"epoch":["e"],"offset":1}),
    ] {
        send(
            &mut ws,
            json!({"op":"join","room":"r","since":since,"id":7}),
        )
        .await;
        let v = next_json(&mut ws).await;
        assert_eq!(
            (&v["type"], &v["code"], &v["id"]),
            (&json!("error"), &json!("bad_request"), &json!(7)),
            "{since}"
        );
        assert!(v["message"].as_str().unwrap().contains("since"), "{v}");
    }
    let joined = join(&mut ws, "r", "still-here").await;
    assert_eq!(joined["type"], "joined");
}

// Memory engine only: with the Redis engine the history is Redis's, and a
// room's keys last their ttl whatever the history size.
#[tokio::test]
async fn memory_without_history_only_a_client_that_missed_nothing_recovers() {
    let mut config = config();
    config.history_size = 0;
    let hub = start(config).await;
    let (mut publisher, _) = member(&hub).await;
    let epoch = join(&mut publisher, "r", "pub").await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let last = publish(&mut publisher, "r", json!("one")).await;

    let (mut current, _) = member(&hub).await;
    let joined = resume(&mut current, "r", &epoch, last).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    let (mut behind, _) = member(&hub).await;
    let joined = resume(&mut behind, "r", &epoch, last - 1).await;
    assert_eq!(joined["recovered"], false, "{joined}");
    publish(&mut publisher, "r", json!("two")).await;
    next_is(&mut current, "two").await;
    next_is(&mut behind, "two").await;

    // No history: once its members are gone the room is freed, and comes
    // back in a new epoch.
    drop((publisher, current, behind));
    let (mut again, _) = member(&hub).await;
    let joined = timeout(WAIT, async {
        loop {
            let joined = resume(&mut again, "r", &epoch, 2).await;
            if joined["epoch"] != epoch.as_str() {
                return joined;
            }
            // The hub has not yet seen every connection above end.
            send(&mut again, json!({"op":"leave","room":"r"})).await;
            next_of_type(&mut again, "left").await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the room is freed once its members are gone");
    assert_eq!(
        (&joined["recovered"], &joined["offset"]),
        (&json!(false), &json!(0))
    );
}
