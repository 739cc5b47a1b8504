//! Fairness (issue 12): a member of busy rooms still has its own requests
//! read and answered while room messages keep arriving for it; its session
//! does not drain its queue for ever before looking at its socket.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::timeout;
use wshub::Message;
use wshub_hub::HubConfig;

/// Rooms of the busy member, each with a publisher of its own, so frames
/// reach the member faster than its task can take them one batch at a time.
const ROOMS: usize = 4;
/// Most messages each publisher sends.
const CAP: u64 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_busy_rooms_gets_its_own_requests_answered_while_messages_flow() {
    let mut config = HubConfig::default();
    // Publishing faster than a client may by default (100 messages a second)
    // is what this test is about, not the rate limit.
    config.message_rate = u32::MAX;
    config.message_burst = u32::MAX;
    // This member is not to be closed as a slow consumer while it reads
    // behind four floods: that is another test.
    config.send_queue = 1 << 20;
    config.send_queue_bytes = 1 << 30;
    let hub = start(config).await;
    let (mut busy, _) = member(&hub).await;
    for room in 0..ROOMS {
        join(&mut busy, &format!("r{room}"), "busy").await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let mut floods = Vec::new();
    for room in 0..ROOMS {
        let (mut ws, _) = member(&hub).await;
        let room = format!("r{room}");
        join(&mut ws, &room, "publisher").await;
        let (mut own, mut tx) = ws.split();
        let (stop, published) = (stop.clone(), published.clone());
        floods.push(tokio::spawn(async move {
            let drain = tokio::spawn(async move { while let Some(Ok(_)) = own.next().await {} });
            let text = json!({"op":"publish","room":room,"message":"x".repeat(200)}).to_string();
            for _ in 0..CAP {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if tx.send(Message::text(text.clone())).await.is_err() {
                    break;
                }
                published.fetch_add(1, Ordering::SeqCst);
            }
            drain.abort();
        }));
    }

    // Once the floods are under way, a request of the busy member's own.
    let mut seen = 0;
    while seen < 200 {
        if next_json(&mut busy).await["type"] == "message" {
            seen += 1;
        }
    }
    send(&mut busy, json!({"op":"join","room":"quiet","id":"mine"})).await;
    let answer = timeout(WAIT * 6, async {
        loop {
            let v = next_json(&mut busy).await;
            if v["type"] == "joined" || v["type"] == "error" {
                break v;
            }
        }
    })
    .await
    .expect("the answer arrives");
    let published_by_then = published.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    assert_eq!(
        (answer["type"].as_str(), answer["id"].as_str()),
        (Some("joined"), Some("mine"))
    );
    assert!(
        published_by_then < ROOMS as u64 * CAP,
        "answered only once the floods were over ({published_by_then} messages published)"
    );
    for flood in floods {
        timeout(WAIT, flood).await.unwrap().unwrap();
    }
}
