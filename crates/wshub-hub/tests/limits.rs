//! Per-member limits on `/ws` (issue 12), on default settings: the message
//! rate (a flooder is answered `rate_limited`, then closed with 1008, while
//! the room carries on), the rooms one connection may be in, and the hub's
//! message size (1009), which `/echo` does not share.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::time::timeout;
use wshub::Message;
use wshub_hub::HubConfig;

const MEMBERS: usize = 100;
const ORDINARY: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooder_is_rate_limited_then_closed_while_ordinary_members_lose_nothing() {
    let hub = start(HubConfig::default()).await;
    let mut members = Vec::new();
    for n in 0..MEMBERS {
        let (mut ws, _) = member(&hub).await;
        join(&mut ws, "r", &format!("m{n}")).await;
        members.push(tokio::spawn(async move {
            // Every message of the room, gap-free, until the publisher's last.
            let mut last_seq = 0;
            let mut ordinary = Vec::new();
            loop {
                let v = timeout(Duration::from_secs(40), next_of_type(&mut ws, "message"))
                    .await
                    .expect("the room keeps flowing");
                let seq = v["seq"].as_u64().unwrap();
                assert_eq!(seq, last_seq + 1, "member m{n}: no gap");
                last_seq = seq;
                if v["from"] == "ordinary" {
                    if v["message"] == "last" {
                        return ordinary;
                    }
                    ordinary.push(v["message"].as_u64().unwrap());
                }
            }
        }));
    }
    let (mut ordinary, _) = member(&hub).await;
    join(&mut ordinary, "r", "ordinary").await;

    let (flooder, _) = member(&hub).await;
    let (mut flooder_rx, mut flooder_tx) = flooder.split();
    let refused = Arc::new(AtomicU64::new(0));
    let watch = {
        let refused = refused.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = flooder_rx.next().await {
                if let Message::Text(t) = m {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["code"] == "rate_limited" {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            flooder_rx.close_event().map(|e| e.code.as_u16())
        })
    };
    let flood = tokio::spawn(async move {
        let join = json!({"op":"join","room":"r","name":"flooder"}).to_string();
        if flooder_tx.send(Message::text(join)).await.is_err() {
            return;
        }
        let publish = json!({"op":"publish","room":"r","message":"flood"}).to_string();
        // 2,000 messages a second, twenty times the default rate.
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        loop {
            tick.tick().await;
            for _ in 0..10 {
                if flooder_tx
                    .send(Message::text(publish.clone()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });

    // An ordinary publisher carries on meanwhile, one message at a time.
    for i in 0..ORDINARY {
        send(
            &mut ordinary,
            json!({"op":"publish","room":"r","message":i}),
        )
        .await;
        loop {
            let v = timeout(
                Duration::from_secs(30),
                next_of_type(&mut ordinary, "message"),
            )
            .await
            .unwrap();
            if v["from"] == "ordinary" {
                break;
            }
        }
    }
    // The flooder is closed once it has stayed over the rate for the grace
    // period (10 s by default).
    let code = timeout(Duration::from_secs(30), watch)
        .await
        .expect("the flooder is closed")
        .unwrap();
    assert_eq!(code, Some(1008));
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the flooder heard rate_limited"
    );
    timeout(WAIT, flood).await.unwrap().unwrap();

    send(
        &mut ordinary,
        json!({"op":"publish","room":"r","message":"last"}),
    )
    .await;
    for member in members {
        let got = timeout(Duration::from_secs(40), member)
            .await
            .expect("every member reads to the last message")
            .unwrap();
        assert_eq!(got, (0..ORDINARY as u64).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_connection_may_be_in_100_rooms() {
    let hub = start(HubConfig::default()).await;
    let (mut ws, _) = member(&hub).await;
    for room in 0..100 {
        join(&mut ws, &format!("r{room}"), "many").await;
    }
    send(&mut ws, json!({"op":"join","room":"one-more","id":7})).await;
    let e = next_of_type(&mut ws, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("too_many_rooms"), Some(7))
    );
    // Joining a room it is in is no new room; leaving one makes space.
    join(&mut ws, "r5", "renamed").await;
    send(&mut ws, json!({"op":"leave","room":"r0"})).await;
    next_of_type(&mut ws, "left").await;
    join(&mut ws, "one-more", "many").await;
}

#[tokio::test]
async fn the_hub_takes_messages_of_64_kib_and_closes_with_1009_above_while_echo_takes_more() {
    let hub = start(HubConfig::default()).await;
    let (mut ws, _) = member(&hub).await;
    join(&mut ws, "r", "big").await;
    // A request of just under 64 KiB is carried out.
    let message = "x".repeat((64 << 10) - 100);
    send(
        &mut ws,
        json!({"op":"publish","room":"r","message":message}),
    )
    .await;
    assert_eq!(next_of_type(&mut ws, "message").await["message"], message);
    ws.send(Message::text("x".repeat((64 << 10) + 1)))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));

    let mut echo = timeout(WAIT, wshub::connect(&format!("ws://{}/echo", hub.addr)))
        .await
        .unwrap()
        .unwrap();
    let big = Message::binary(vec![7; 1 << 20]);
    echo.send(big.clone()).await.unwrap();
    assert_eq!(
        timeout(WAIT, echo.next()).await.unwrap().unwrap().unwrap(),
        big
    );
}
