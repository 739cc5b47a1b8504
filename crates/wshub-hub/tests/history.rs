//! Room history and resume over `/ws` (issue 14; docs/protocol.md,
//! "History and resume"): a `join` with `since` gets exactly the messages
//! it missed, right after `joined` and before the live ones, or, when the
//! room no longer has them all, `recovered: false` and none of them.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::time::timeout;
use wshub_hub::HubConfig;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_under_a_busy_publisher_loses_nothing_and_repeats_nothing() {
    const MESSAGES: u64 = 1500;
    let mut config = config();
    // Big enough that every disconnection here is recovered: the test is
    // of ordering, not of the window.
    config.history_size = 10_000;
    config.history_max_replay = 10_000;
    let hub = start(config).await;

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

#[tokio::test]
async fn a_resume_the_room_cannot_serve_whole_replays_nothing() {
    let mut config = config();
    config.history_size = 10;
    config.history_max_replay = 5;
    let hub = start(config).await;
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

#[tokio::test]
async fn a_room_without_members_keeps_its_history_and_its_offsets() {
    let hub = start(config()).await;
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

#[tokio::test]
async fn without_history_only_a_client_that_missed_nothing_recovers() {
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

#[tokio::test]
async fn a_malformed_since_is_a_bad_request_and_the_connection_stays() {
    let hub = start(config()).await;
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
