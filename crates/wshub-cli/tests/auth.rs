//! Token authentication against the real binary: tokens in the handshake or
//! an `auth` request, `sub` as the name, `exp`, the `rooms` claim,
//! `--require-auth`, and bad key flags (docs/protocol.md, "Authentication").

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use tokio::time::timeout;
use wshub::{ClientStream, Message, WebSocket};

use common::{assert_flag_refused, run, send_head, Server, WAIT};

const SECRET: &str = "a test secret of thirty-two bytes or more";

/// A file holding `text`, named after `test`; removed when dropped.
fn temp_file(test: &str, text: &str) -> tempfile::TempPath {
    let file = tempfile::Builder::new()
        .prefix(&format!("wshub-auth-{test}-"))
        .tempfile()
        .unwrap();
    std::fs::write(file.path(), text).unwrap();
    file.into_temp_path()
}

fn token(claims: Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn in_secs(secs: u64) -> u64 {
    (SystemTime::now() + Duration::from_secs(secs))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A hub taking tokens signed with [`SECRET`], with `flags` added.
fn server(test: &str, flags: &[&str]) -> Server {
    // Read once, at start: the file may go when this returns.
    let path = temp_file(test, &format!("{SECRET}\n"));
    let mut args = vec!["--jwt-hs256-secret-file", path.to_str().unwrap()];
    args.extend_from_slice(flags);
    Server::start(&args)
}

async fn connect(server: &Server, query: &str) -> WebSocket<ClientStream> {
    let url = format!("ws://{}/ws{query}", server.addr);
    timeout(WAIT, wshub::connect(&url)).await.unwrap().unwrap()
}

/// The next text message as JSON.
async fn next_json(ws: &mut WebSocket<ClientStream>) -> Value {
    let message = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    serde_json::from_slice(message.as_bytes()).unwrap()
}

async fn request(ws: &mut WebSocket<ClientStream>, request: Value) -> Value {
    ws.send(Message::text(request.to_string())).await.unwrap();
    next_json(ws).await
}

/// Reads to the end of the stream and returns the close code.
async fn close_code(ws: &mut WebSocket<ClientStream>, within: Duration) -> u16 {
    timeout(within, async { while let Some(Ok(_)) = ws.next().await {} })
        .await
        .expect("closed in time");
    ws.close_event().expect("a Close").code.as_u16()
}

#[tokio::test]
async fn the_token_names_the_member_and_no_one_picks_a_verified_name() {
    let server = server("names", &[]);
    let mut ada = connect(&server, &format!("?token={}", token(json!({"sub": "ada"})))).await;
    assert_eq!(next_json(&mut ada).await["name"], "ada", "welcome");
    let joined = request(
        &mut ada,
        json!({"op": "join", "room": "r", "name": "admin"}),
    )
    .await;
    assert_eq!(
        (&joined["type"], &joined["name"]),
        (&json!("joined"), &json!("ada"))
    );

    // Anonymous on a hub that takes tokens: anon-<id>, whatever it asks.
    let mut eve = connect(&server, "").await;
    let welcome = next_json(&mut eve).await;
    let joined = request(&mut eve, json!({"op": "join", "room": "r", "name": "ada"})).await;
    assert_eq!(joined["name"], welcome["name"]);
    assert!(
        joined["name"].as_str().unwrap().starts_with("anon-"),
        "{joined}"
    );

    // The same user from a second connection joins under the same name.
    let mut ada2 = connect(&server, "").await;
    next_json(&mut ada2).await;
    let authed = request(
        &mut ada2,
        json!({"op": "auth", "token": token(json!({"sub": "ada"})), "id": 1}),
    )
    .await;
    assert_eq!(authed, json!({"type": "authed", "name": "ada", "id": 1}));
    let joined = request(&mut ada2, json!({"op": "join", "room": "r"})).await;
    assert_eq!(
        (&joined["type"], &joined["name"]),
        (&json!("joined"), &json!("ada"))
    );
    request(
        &mut ada2,
        json!({"op": "publish", "room": "r", "message": "hi"}),
    )
    .await;
    let message = loop {
        let m = next_json(&mut eve).await;
        if m["type"] == "message" {
            break m;
        }
    };
    assert_eq!(message["from"], "ada");
}

#[tokio::test]
async fn bad_tokens_get_401_in_the_handshake_and_an_error_in_auth() {
    let server = server("bad", &[]);
    let forged = encode(
        &Header::default(),
        &json!({"sub": "ada"}),
        &EncodingKey::from_secret(b"another secret of thirty-two bytes!"),
    )
    .unwrap();
    let head = format!(
        "GET /ws?token={forged} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let answer = send_head(server.addr, &head).await;
    assert!(
        answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\r\nWWW-Authenticate: Bearer error=\"invalid_token\""),
        "{answer}"
    );
    assert!(
        answer.ends_with("the token's signature does not verify\n"),
        "{answer}"
    );

    let mut ws = connect(&server, "").await;
    next_json(&mut ws).await;
    for (token, says) in [
        (forged.clone(), "signature does not verify"),
        (token(json!({"sub": "ada", "exp": 1})), "expired"),
        (token(json!({"exp": in_secs(60)})), "no sub"),
        ("garbage".to_owned(), "not a JWT"),
    ] {
        let answer = request(&mut ws, json!({"op": "auth", "token": token})).await;
        assert_eq!(answer["code"], "unauthorized", "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{answer}"
        );
    }
    // Still open, still anonymous.
    let joined = request(&mut ws, json!({"op": "join", "room": "r"})).await;
    assert_eq!(joined["type"], "joined");
}

#[tokio::test]
async fn require_auth_holds_requests_and_closes_with_4001_without_auth() {
    let server = server("require", &["--require-auth", "--auth-timeout", "1s"]);
    let mut ws = connect(&server, "").await;
    next_json(&mut ws).await;
    let refused = request(&mut ws, json!({"op": "join", "room": "r"})).await;
    assert_eq!(refused["code"], "unauthorized", "{refused}");
    assert_eq!(close_code(&mut ws, WAIT).await, 4001);

    // Authenticated in time: served.
    let mut ws = connect(&server, "").await;
    next_json(&mut ws).await;
    let authed = request(
        &mut ws,
        json!({"op": "auth", "token": token(json!({"sub": "bob"}))}),
    )
    .await;
    assert_eq!(authed["type"], "authed");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let joined = request(&mut ws, json!({"op": "join", "room": "r"})).await;
    assert_eq!(joined["type"], "joined", "{joined}");

    // /echo takes its token in the handshake only.
    let url = format!("ws://{}/echo", server.addr);
    let refused = timeout(WAIT, wshub::connect(&url)).await.unwrap();
    assert!(refused.is_err());
    let url = format!("{url}?token={}", token(json!({"sub": "bob"})));
    assert!(timeout(WAIT, wshub::connect(&url)).await.unwrap().is_ok());
}

#[tokio::test]
async fn an_expired_token_closes_with_4002_unless_a_fresh_one_came() {
    let server = server("expiry", &[]);
    let mut ws = connect(
        &server,
        &format!("?token={}", token(json!({"sub": "ada", "exp": in_secs(2)}))),
    )
    .await;
    next_json(&mut ws).await;
    assert_eq!(close_code(&mut ws, WAIT).await, 4002);

    let mut ws = connect(
        &server,
        &format!("?token={}", token(json!({"sub": "ada", "exp": in_secs(2)}))),
    )
    .await;
    next_json(&mut ws).await;
    let fresh = token(json!({"sub": "ada", "exp": in_secs(60)}));
    let authed = request(&mut ws, json!({"op": "auth", "token": fresh})).await;
    assert_eq!(authed["type"], "authed");
    // Another user's token is refused: one connection, one identity.
    let other = request(
        &mut ws,
        json!({"op": "auth", "token": token(json!({"sub": "eve"}))}),
    )
    .await;
    assert_eq!(other["code"], "unauthorized");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let joined = request(&mut ws, json!({"op": "join", "room": "r"})).await;
    assert_eq!(
        joined["type"], "joined",
        "still open after the first exp: {joined}"
    );
}

#[tokio::test]
async fn the_rooms_claim_limits_join_and_publish() {
    let server = server("rooms", &[]);
    let claims =
        json!({"sub": "ada", "rooms": {"join": ["team-*", "lobby"], "publish": ["team-*"]}});
    let mut ws = connect(&server, &format!("?token={}", token(claims))).await;
    next_json(&mut ws).await;
    let refused = request(&mut ws, json!({"op": "join", "room": "admin"})).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    assert_eq!(
        request(&mut ws, json!({"op": "join", "room": "lobby"})).await["type"],
        "joined"
    );
    let refused = request(
        &mut ws,
        json!({"op": "publish", "room": "lobby", "message": 1}),
    )
    .await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    assert_eq!(
        request(&mut ws, json!({"op": "join", "room": "team-a"})).await["type"],
        "joined"
    );
    let delivered = request(
        &mut ws,
        json!({"op": "publish", "room": "team-a", "message": 1}),
    )
    .await;
    assert_eq!(delivered["type"], "message", "{delivered}");
}

#[test]
fn bad_key_flags_exit_2_and_say_what_to_fix() {
    let short = temp_file("short", "short\n");
    assert_flag_refused(
        "--jwt-hs256-secret-file",
        short.to_str().unwrap(),
        "at least 32 bytes",
    );
    assert_flag_refused(
        "--jwt-public-key",
        short.to_str().unwrap(),
        "not a PEM public key",
    );
    assert_flag_refused("--jwks-file", short.to_str().unwrap(), "not a JWK Set");
    assert_flag_refused(
        "--jwt-hs256-secret-file",
        "/nonexistent/secret",
        "cannot read it",
    );
    let (code, stderr) = run(&["serve", "--listen", "127.0.0.1:0", "--require-auth"]);
    assert_eq!(code, Some(2), "{stderr}");
}
