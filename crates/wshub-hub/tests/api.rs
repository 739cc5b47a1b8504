//! The HTTP API for backends (issue 14 §2; docs/protocol.md, "HTTP API"):
//! `POST /api/publish`, `GET /api/rooms/{room}` and its history, behind an
//! API key; the `Hub` handle that Rust code publishes through; and a
//! `/ws` publish with an `id` or a `key`.

mod common;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wshub_hub::{ApiKey, Hub, HubConfig, PublishError, PublishOptions};

const KEY: &str = "test-key-0123456789abcdef";

fn config() -> HubConfig {
    let mut config = HubConfig::default();
    config.api_key = Some(ApiKey::new(KEY).unwrap());
    config
}

/// One HTTP/1.1 request (`Connection: close`) with `headers` and `body`;
/// the status and the body as JSON (or as a string when it is not JSON).
async fn http(
    hub: &common::Hub,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut tcp = timeout(WAIT, TcpStream::connect(hub.addr))
        .await
        .unwrap()
        .unwrap();
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        hub.addr,
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
    (status, body)
}

const AUTH: (&str, &str) = ("Authorization", "Bearer test-key-0123456789abcdef");

async fn api_publish(hub: &common::Hub, body: Value) -> (u16, Value) {
    http(hub, "POST", "/api/publish", &[AUTH], &body.to_string()).await
}

#[tokio::test]
async fn a_publish_through_the_api_reaches_members_and_answers_its_offset() {
    let hub = start(config()).await;
    let (mut ws, _) = member(&hub).await;
    let joined = join(&mut ws, "lobby", "alice").await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();

    let (status, answer) =
        api_publish(&hub, json!({"room":"lobby","message":{"deploy":"done"}})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"room":"lobby","epoch":epoch,"offset":1,"duplicate":false})
    );
    let m = next_of_type(&mut ws, "message").await;
    assert_eq!(
        (&m["from"], &m["from_id"], &m["offset"], &m["message"]),
        (
            &json!("api"),
            &json!(0),
            &json!(1),
            &json!({"deploy":"done"})
        )
    );

    let body = json!({"room":"lobby","message":"hi","from":"deploy-bot"});
    let (status, answer) = api_publish(&hub, body).await;
    assert_eq!((status, &answer["offset"]), (200, &json!(2)));
    let m = next_of_type(&mut ws, "message").await;
    assert_eq!(
        (&m["from"], &m["offset"]),
        (&json!("deploy-bot"), &json!(2))
    );
}

#[tokio::test]
async fn a_room_without_members_keeps_what_the_api_published_for_those_who_resume() {
    let hub = start(config()).await;
    let (status, first) = api_publish(&hub, json!({"room":"news","message":"one"})).await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = api_publish(&hub, json!({"room":"news","message":"two"})).await;
    assert_eq!(
        second["epoch"], first["epoch"],
        "the room was kept between publishes"
    );
    assert_eq!(second["offset"], 2);

    let (mut ws, _) = member(&hub).await;
    let since = json!({"epoch": first["epoch"], "offset": 0});
    send(&mut ws, json!({"op":"join","room":"news","since":since})).await;
    let joined = next_of_type(&mut ws, "joined").await;
    assert_eq!(
        (&joined["recovered"], &joined["offset"]),
        (&json!(true), &json!(2))
    );
    for expected in ["one", "two"] {
        assert_eq!(next_of_type(&mut ws, "message").await["message"], expected);
    }
}

#[tokio::test]
async fn an_idempotency_key_publishes_once_within_the_history() {
    let hub = start(config()).await;
    let (mut ws, _) = member(&hub).await;
    join(&mut ws, "r", "a").await;
    let body = json!({"room":"r","message":"once","idempotency_key":"order-17"});
    let (_, first) = api_publish(&hub, body.clone()).await;
    let (status, again) = api_publish(&hub, body).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&again["offset"], &again["duplicate"], &again["epoch"]),
        (&first["offset"], &json!(true), &first["epoch"])
    );
    let (_, other) = api_publish(&hub, json!({"room":"r","message":"next"})).await;
    assert_eq!(other["offset"], 2, "the duplicate took no offset");
    assert_eq!(next_of_type(&mut ws, "message").await["message"], "once");
    assert_eq!(
        next_of_type(&mut ws, "message").await["message"],
        "next",
        "the duplicate was not delivered"
    );
}

#[tokio::test]
async fn the_api_refuses_with_a_status_and_a_code_for_each_mistake() {
    let hub = start(config()).await;
    let publish = |headers: Vec<(&'static str, &'static str)>, body: &'static str| {
        let hub = &hub;
        async move { http(hub, "POST", "/api/publish", &headers, body).await }
    };
    let good = r#"{"room":"r","message":1}"#;
    let (status, answer) = publish(vec![], good).await;
    assert_eq!((status, &answer["error"]), (401, &json!("unauthorized")));
    let wrong = ("Authorization", "Bearer test-key-0123456789abcdeX");
    let (status, answer) = publish(vec![wrong], good).await;
    assert_eq!((status, &answer["error"]), (401, &json!("unauthorized")));
    assert_eq!(answer["message"], "the API key is wrong");

    for (body, code) in [
        ("not json", "bad_json"),
        (r#"{"message":1}"#, "bad_json"),
        (r#"{"room":"r","message":1,"extra":2}"#, "bad_json"),
        (r#"{"room":"","message":1}"#, "bad_request"),
        (
            r#"{"room":"r","message":1,"from":"a\u202eb"}"#,
            "bad_request",
        ),
        (
            r#"{"room":"r","message":1,"idempotency_key":""}"#,
            "bad_request",
        ),
    ] {
        let (status, answer) = publish(vec![AUTH], body).await;
        assert_eq!(
            (status, &answer["error"]),
            (400, &json!(code)),
            "{body}: {answer}"
        );
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let big = format!(r#"{{"room":"r","message":"{}"}}"#, "x".repeat(64 << 10));
    let (status, answer) = http(&hub, "POST", "/api/publish", &[AUTH], &big).await;
    assert_eq!((status, &answer["error"]), (413, &json!("too_large")));

    let (status, _) = http(&hub, "GET", "/api/publish", &[AUTH], "").await;
    assert_eq!(status, 405);
    let (status, _) = http(&hub, "POST", "/api/rooms/r", &[AUTH], "").await;
    assert_eq!(status, 405);
    let (status, answer) = http(&hub, "GET", "/api/nope", &[AUTH], "").await;
    assert_eq!((status, &answer["error"]), (404, &json!("not_found")));
    let (status, answer) = http(&hub, "GET", "/api/rooms/r/history?offset=3", &[AUTH], "").await;
    assert_eq!((status, &answer["error"]), (400, &json!("bad_request")));

    // Nothing above was published.
    let (_, info) = http(&hub, "GET", "/api/rooms/r", &[AUTH], "").await;
    assert_eq!(info["offset"], 0, "{info}");
}

#[tokio::test]
async fn without_a_key_configured_the_api_is_not_there() {
    let hub = start(HubConfig::default()).await;
    let (status, _) = http(
        &hub,
        "POST",
        "/api/publish",
        &[AUTH],
        r#"{"room":"r","message":1}"#,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn room_info_and_history_read_what_members_and_publishes_left() {
    let hub = start(config()).await;
    let (mut a, _) = member(&hub).await;
    join(&mut a, "a/b", "alice").await;
    let (mut b, _) = member(&hub).await;
    join(&mut b, "a/b", "bob").await;
    for n in 1..=5 {
        api_publish(&hub, json!({"room":"a/b","message":n})).await;
    }
    let (status, info) = http(&hub, "GET", "/api/rooms/a%2Fb", &[AUTH], "").await;
    assert_eq!(status, 200, "{info}");
    let epoch = info["epoch"].as_str().unwrap().to_owned();
    assert_eq!(
        info,
        json!({"room":"a/b","member_count":2,"members":["alice","bob"],"epoch":epoch,"offset":5})
    );
    let (_, none) = http(&hub, "GET", "/api/rooms/empty", &[AUTH], "").await;
    assert_eq!(
        none,
        json!({"room":"empty","member_count":0,"members":[],"epoch":null,"offset":0})
    );

    let history = |query: String| {
        let hub = &hub;
        async move {
            let target = format!("/api/rooms/a%2Fb/history{query}");
            http(hub, "GET", &target, &[AUTH], "").await.1
        }
    };
    let numbers = |page: &Value| -> Vec<u64> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message"].as_u64().unwrap())
            .collect()
    };
    let all = history(String::new()).await;
    assert_eq!(
        (numbers(&all), &all["recovered"]),
        (vec![1, 2, 3, 4, 5], &Value::Null)
    );
    assert_eq!(
        all["messages"][0]["type"], "message",
        "the frames members got"
    );
    assert_eq!(numbers(&history("?limit=2".into()).await), vec![4, 5]);
    let since = history(format!("?epoch={epoch}&offset=3")).await;
    assert_eq!(
        (numbers(&since), &since["recovered"]),
        (vec![4, 5], &json!(true))
    );
    let other = history("?epoch=another-1&offset=3".into()).await;
    assert_eq!(
        (numbers(&other), &other["recovered"]),
        (vec![], &json!(false))
    );
}

#[tokio::test]
async fn rust_code_publishes_through_the_hub_handle() {
    let hub = Hub::new(HubConfig::default());
    let common = serve_handle(&hub).await;
    let (mut ws, _) = member(&common).await;
    join(&mut ws, "lobby", "alice").await;

    let options = PublishOptions::new().from("backend").idempotency_key("k1");
    let published = hub
        .publish("lobby", &json!("from rust"), &options)
        .await
        .unwrap();
    assert_eq!((published.offset, published.duplicate), (1, false));
    let again = hub
        .publish("lobby", &json!("from rust"), &options)
        .await
        .unwrap();
    assert_eq!((again.offset, again.duplicate), (1, true));
    let m = next_of_type(&mut ws, "message").await;
    assert_eq!(
        (&m["from"], &m["message"]),
        (&json!("backend"), &json!("from rust"))
    );
    assert_eq!(hub.room("lobby").await.unwrap().member_count, 1);
    assert_eq!(
        hub.history("lobby", None, 10).await.unwrap().messages.len(),
        1
    );

    let bad = hub.publish("", &json!(1), &PublishOptions::new()).await;
    assert_eq!(bad.unwrap_err(), PublishError::InvalidRoom);
    let bad = hub
        .publish("r", &json!(1), &PublishOptions::new().from(""))
        .await;
    assert_eq!(bad.unwrap_err(), PublishError::InvalidFrom);
    common.task.abort();
}

#[tokio::test]
async fn a_websocket_publish_with_an_id_is_answered_and_a_key_deduplicates() {
    let hub = start(config()).await;
    let (mut ws, _) = member(&hub).await;
    let joined = join(&mut ws, "r", "alice").await;
    let publish = json!({"op":"publish","room":"r","message":"m","key":"k","id":"p1"});
    send(&mut ws, publish.clone()).await;
    let answer = next_of_type(&mut ws, "published").await;
    assert_eq!(
        answer,
        json!({"type":"published","room":"r","epoch":joined["epoch"],"offset":1,"duplicate":false,"id":"p1"})
    );
    send(&mut ws, publish).await;
    let answer = next_of_type(&mut ws, "published").await;
    assert_eq!(
        (&answer["offset"], &answer["duplicate"]),
        (&json!(1), &json!(true))
    );
    // Without an id, no answer: the next frame is the own copy of "n".
    send(&mut ws, json!({"op":"publish","room":"r","message":"n"})).await;
    let m = next_of_type(&mut ws, "message").await;
    let m = if m["message"] == "m" {
        next_of_type(&mut ws, "message").await
    } else {
        m
    };
    assert_eq!((&m["message"], &m["offset"]), (&json!("n"), &json!(2)));
}

/// A room kept only for its history is freed once that expires, with no
/// join or leave to trigger it: the served hub sweeps every second.
#[tokio::test(start_paused = true)]
async fn an_expired_room_is_freed_by_the_sweep_without_other_traffic() {
    let mut config = HubConfig::default();
    config.history_ttl = std::time::Duration::from_secs(5);
    let hub = Hub::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = tokio::spawn({
        let hub = hub.clone();
        async move { hub.serve(listener, std::future::pending()).await }
    });
    let first = hub
        .publish("quiet", &json!("x"), &PublishOptions::new())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        hub.room("quiet").await.unwrap().epoch.as_deref(),
        Some(&*first.epoch),
        "kept"
    );
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(
        hub.room("quiet").await.unwrap().epoch,
        None,
        "freed once expired"
    );
    server.abort();
}
