//! Slow consumers (issue 12): a member whose socket stops draining is
//! closed with 1008 once its write has stalled for the write timeout, while
//! the members that read lose nothing; and a member blocked on a write still
//! ends when the hub shuts down.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::timeout;
use wshub::Message;
use wshub_hub::HubConfig;

/// Messages published, of [`SIZE`] bytes: 16 MiB in all, more than the
/// kernel buffers of a loopback connection hold (up to 4 MiB on Linux), so
/// the write to the member that does not read blocks.
const COUNT: u64 = 1000;
const SIZE: usize = 16 * 1024;

/// Reads every message of the room in order, reporting the least progress
/// of all readers to the publisher; `true` if the slow member's leave was
/// among them.
async fn read_all(
    ws: &mut Ws,
    counts: &[AtomicU64; 2],
    slot: usize,
    progress: &tokio::sync::watch::Sender<u64>,
) -> bool {
    let mut slow_left = false;
    let mut expected = 1;
    while expected <= COUNT {
        let m = next_json(ws).await;
        if m["type"] == "presence" && m["name"] == "slow" && m["event"] == "leave" {
            slow_left = true;
        }
        if m["type"] != "message" {
            continue;
        }
        assert_eq!(m["seq"], expected, "no loss, no reordering for a reader");
        assert_eq!(m["message"].as_str().map(str::len), Some(SIZE));
        counts[slot].store(expected, Ordering::SeqCst);
        let least = counts.iter().map(|c| c.load(Ordering::SeqCst)).min();
        let _ = progress.send(least.unwrap_or(0));
        expected += 1;
    }
    slow_left
}

fn payload() -> String {
    "x".repeat(SIZE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_socket_stops_draining_is_closed_with_1008_and_readers_lose_nothing() {
    let mut config = HubConfig::default();
    // Publishing faster than a client may by default (100 messages a second)
    // is what this test is about, not the rate limit.
    config.message_rate = u32::MAX;
    config.message_burst = u32::MAX;
    config.write_timeout = Duration::from_secs(2);
    // Queue limits out of reach: only the write timeout may end the member
    // that does not read.
    config.send_queue = 1 << 20;
    config.send_queue_bytes = 1 << 30;
    // Its Close waits behind megabytes it reads only once the others are
    // done: give it time.
    config.websocket.close_timeout = Duration::from_secs(60);
    let hub = start(config).await;
    let (mut publisher, _) = member(&hub).await;
    join(&mut publisher, "r", "publisher").await;
    let mut readers = Vec::new();
    for n in 0..2 {
        let (mut reader, _) = member(&hub).await;
        join(&mut reader, "r", &format!("reader{n}")).await;
        readers.push(reader);
    }
    let mut slow = non_reader(&hub).await;
    slow.send(Message::text(
        json!({"op":"join","room":"r","name":"slow"}).to_string(),
    ))
    .await
    .unwrap();
    loop {
        let p = next_of_type(&mut readers[0], "presence").await;
        if p["name"] == "slow" {
            break;
        }
    }

    // The publisher stays at most 16 messages ahead of the slower reader,
    // and reads its own copies in another task.
    let (mut own_rx, mut tx) = publisher.split();
    let own = tokio::spawn(async move {
        let mut seen = 0u64;
        while seen < COUNT {
            match timeout(WAIT, own_rx.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == "message" {
                        assert_eq!(v["seq"], seen + 1, "the publisher's own copies in order");
                        seen += 1;
                    }
                }
                other => panic!("publisher's stream: {other:?}"),
            }
        }
    });
    let (progress_tx, progress) = tokio::sync::watch::channel(0u64);
    let publish = async move {
        let mut progress = progress;
        for i in 0..COUNT {
            timeout(WAIT, progress.wait_for(|read| read + 16 >= i))
                .await
                .expect("readers keep up")
                .unwrap();
            let text = json!({"op":"publish","room":"r","message":payload()}).to_string();
            timeout(WAIT, tx.send(Message::text(text)))
                .await
                .unwrap()
                .unwrap();
        }
    };
    let [mut reader0, mut reader1] = <[Ws; 2]>::try_from(readers).ok().unwrap();
    let counts = [AtomicU64::new(0), AtomicU64::new(0)];
    let (_, slow_left, _) = tokio::join!(
        publish,
        read_all(&mut reader0, &counts, 0, &progress_tx),
        read_all(&mut reader1, &counts, 1, &progress_tx),
    );
    timeout(WAIT, own).await.unwrap().unwrap();

    // The member that does not read is closed by the write timeout (2 s
    // here), while the messages flow or after, and the room hears it leave.
    if !slow_left {
        timeout(WAIT, async {
            while {
                let p = next_of_type(&mut reader0, "presence").await;
                !(p["name"] == "slow" && p["event"] == "leave")
            } {}
        })
        .await
        .expect("the slow member leaves within the write timeout");
    }
    // When it reads again, it finds what was written before the stall, then
    // the Close: 1008, policy violation.
    assert_eq!(close_code(&mut slow).await, Some(1008));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_blocked_on_a_write_still_ends_when_the_hub_shuts_down() {
    let mut config = HubConfig::default();
    // Publishing faster than a client may by default (100 messages a second)
    // is what this test is about, not the rate limit.
    config.message_rate = u32::MAX;
    config.message_burst = u32::MAX;
    // Neither the write timeout nor the shutdown timeout may be what ends it.
    config.write_timeout = Duration::from_secs(600);
    config.shutdown_timeout = Duration::from_secs(600);
    config.websocket.close_timeout = Duration::from_secs(1);
    config.send_queue_bytes = 1 << 30;
    let mut hub = start(config).await;
    let (mut publisher, _) = member(&hub).await;
    join(&mut publisher, "r", "publisher").await;
    let mut slow = non_reader(&hub).await;
    slow.send(Message::text(
        json!({"op":"join","room":"r","name":"slow"}).to_string(),
    ))
    .await
    .unwrap();
    next_of_type(&mut publisher, "presence").await;
    // 8 MiB: more than the kernel buffers hold, within the queue limits. The
    // publisher sends the next as each of its copies comes back.
    for seq in 1..=512u64 {
        send(
            &mut publisher,
            json!({"op":"publish","room":"r","message":payload()}),
        )
        .await;
        assert_eq!(next_of_type(&mut publisher, "message").await["seq"], seq);
    }
    // A few round trips, so the slow member's task has queued what it could
    // on its socket and waits on the write.
    for _ in 0..20 {
        publisher.send(Message::text("ping")).await.unwrap();
        let pong = timeout(WAIT, publisher.next()).await.unwrap();
        assert_eq!(pong.unwrap().unwrap(), Message::text("pong"));
    }

    hub.stop.take().unwrap().send(()).unwrap();
    timeout(WAIT, hub.task)
        .await
        .expect("every session ended, the blocked one included")
        .unwrap()
        .unwrap();
    assert_eq!(close_code(&mut publisher).await, Some(1001));
    // The blocked member's Close could not get through its full socket in
    // the close timeout; the connection is dropped.
    assert!(close_code(&mut slow).await.is_some());
}
