//! Display names without auth (issue 12): unique in a room, `anon-<digits>`
//! only for the connection it names, no characters that disguise a name;
//! messages carry the sender's connection id, by which the chat page tells
//! its own messages.

mod common;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use wshub_hub::HubConfig;

async fn refused(ws: &mut Ws, request: serde_json::Value) -> serde_json::Value {
    send(ws, request).await;
    next_of_type(ws, "error").await
}

#[tokio::test]
async fn a_name_taken_in_a_room_is_refused_there_and_free_elsewhere() {
    let hub = start(HubConfig::default()).await;
    let (mut first, _) = member(&hub).await;
    let (mut second, _) = member(&hub).await;
    join(&mut first, "r", "alice").await;
    let e = refused(
        &mut second,
        json!({"op":"join","room":"r","name":"alice","id":1}),
    )
    .await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("name_taken"), Some(1))
    );
    // Nothing changed: not a member, and its name is still its own.
    let e = refused(&mut second, json!({"op":"publish","room":"r","message":1})).await;
    assert_eq!(e["code"], "not_joined");
    assert_eq!(
        join(&mut second, "elsewhere", "alice").await["name"],
        "alice"
    );
    let joined = join(&mut second, "r", "alice2").await;
    assert_eq!(joined["members"], json!(["alice", "alice2"]));
    // A name is freed when its holder leaves.
    send(&mut first, json!({"op":"leave","room":"r"})).await;
    next_of_type(&mut first, "left").await;
    assert_eq!(join(&mut second, "r", "alice").await["name"], "alice");
}

#[tokio::test]
async fn anon_names_belong_to_their_connection_and_disguised_names_are_refused() {
    let hub = start(HubConfig::default()).await;
    let (mut ws, id) = member(&hub).await;
    let other = format!("anon-{}", id + 1000);
    let e = refused(&mut ws, json!({"op":"join","room":"r","name":other})).await;
    assert_eq!(e["code"], "bad_request");
    let own = format!("anon-{id}");
    assert_eq!(join(&mut ws, "r", &own).await["name"], own.as_str());
    for name in ["ad\u{200B}min", "\u{202E}nimda", "x\u{2066}y"] {
        let e = refused(&mut ws, json!({"op":"join","room":"s","name":name})).await;
        assert_eq!(e["code"], "bad_request", "{name:?}");
    }
}

#[tokio::test]
async fn messages_carry_the_senders_connection_id_and_the_page_marks_its_own_by_it() {
    let hub = start(HubConfig::default()).await;
    let (mut a, a_id) = member(&hub).await;
    let (mut b, _) = member(&hub).await;
    join(&mut a, "r", "same").await;
    join(&mut b, "r", "other").await;
    send(&mut a, json!({"op":"publish","room":"r","message":"hi"})).await;
    let m = next_of_type(&mut b, "message").await;
    assert_eq!(
        (m["from"].as_str(), m["from_id"].as_u64()),
        (Some("same"), Some(a_id))
    );

    let mut tcp = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    timeout(WAIT, tcp.read_to_string(&mut page))
        .await
        .unwrap()
        .unwrap();
    assert!(
        page.contains("m.from_id === hub.clientId"),
        "own messages marked by id"
    );
    assert!(!page.contains("m.from === myName"), "not by name");
}
