//! Overload is not a slow consumer (issue 12): a publisher that sends as
//! fast as its own copies come back, into a room whose members all read as
//! fast as they can, loses no member and no message. When the fan-out
//! outruns the members' tasks, the hub stops reading requests until they
//! catch up (docs/protocol.md, "Back-pressure").

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::timeout;
use wshub::Message;
use wshub_hub::HubConfig;

/// Members besides the publisher: about 800 sockets in this process, under
/// a 1024 file-descriptor limit.
const MEMBERS: usize = 400;
/// Messages published.
const COUNT: u64 = 2000;
/// Publishes in flight: the publisher sends the next one as each of its own
/// copies comes back.
const IN_FLIGHT: u64 = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_paced_by_its_own_copies_costs_no_member_and_no_message() {
    let mut config = HubConfig::default();
    // Publishing faster than a client may by default (100 messages a second)
    // is what this test is about, not the rate limit.
    config.message_rate = u32::MAX;
    config.message_burst = u32::MAX;
    // With 400 members rather than thousands a member falls fewer frames
    // behind when the fan-out outruns it; a queue of 64 frames (about
    // 8 KiB of these messages) stands for the default's 1024 at scale.
    config.send_queue = 64;
    let hub = start(config).await;

    let disconnected = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::with_capacity(MEMBERS);
    for n in 0..MEMBERS {
        let (mut ws, _) = member(&hub).await;
        join(&mut ws, "big", &format!("m{n}")).await;
        let (disconnected, lost) = (disconnected.clone(), lost.clone());
        readers.push(tokio::spawn(async move {
            let mut last = 0;
            while last < COUNT {
                match timeout(Duration::from_secs(30), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        // The offset read without parsing the JSON: 400
                        // readers parse 800,000 messages, which in a debug
                        // build is most of this test's CPU.
                        if let Some(seq) = message_seq(t.as_str()) {
                            lost.fetch_add(seq - last - 1, Ordering::Relaxed);
                            last = seq;
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => {
                        disconnected.fetch_add(1, Ordering::Relaxed);
                        lost.fetch_add(COUNT - last, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }));
    }

    let (mut publisher, _) = member(&hub).await;
    join(&mut publisher, "big", "publisher").await;
    let publish = |n: u64| {
        Message::text(json!({"op":"publish","room":"big","message":format!("m{n:04}")}).to_string())
    };
    let mut sent = 0;
    while sent < IN_FLIGHT {
        publisher.send(publish(sent)).await.unwrap();
        sent += 1;
    }
    let mut copies = 0;
    while copies < COUNT {
        let v = timeout(
            Duration::from_secs(30),
            next_of_type(&mut publisher, "message"),
        )
        .await
        .expect("the publisher's copies keep coming");
        copies += 1;
        assert_eq!(v["seq"], copies, "the publisher's own copies in order");
        if sent < COUNT {
            publisher.send(publish(sent)).await.unwrap();
            sent += 1;
        }
    }

    for reader in readers {
        timeout(Duration::from_secs(60), reader)
            .await
            .expect("every member got to the last message")
            .unwrap();
    }
    assert_eq!(
        (
            disconnected.load(Ordering::Relaxed),
            lost.load(Ordering::Relaxed)
        ),
        (0, 0),
        "members disconnected, messages lost"
    );
}

/// The `seq` of a room `message` frame (`{"type":"message",…,"seq":N,…}`),
/// `None` for any other frame.
fn message_seq(text: &str) -> Option<u64> {
    if !text.starts_with(r#"{"type":"message""#) {
        return None;
    }
    let digits = &text[text.find(r#""seq":"#)? + 6..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}
