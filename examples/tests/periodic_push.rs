//! The `periodic_push` example: the `/websocket/test` route, its greeting,
//! its pushed numbers and its echo.

mod common;
// The example file itself, so the code tested is the code shown. Its `main`
// is not called here.
#[allow(dead_code)]
#[path = "../periodic_push.rs"]
pub mod periodic_push;

use common::{next_text, within, Server};
use periodic_push::{Config, GREETING, PATH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wshub::{Error, Message};

/// A number in `[0, 1]` with two decimals: `^0\.\d\d$|^1\.00$`.
fn is_number(text: &str) -> bool {
    let b = text.as_bytes();
    text == "1.00"
        || (b.len() == 4 && text.starts_with("0.") && b[2..].iter().all(u8::is_ascii_digit))
}

#[test]
fn random_numbers_have_two_decimals_between_zero_and_one() {
    for _ in 0..1000 {
        let n = periodic_push::random_number();
        assert!(is_number(&n), "{n}");
    }
}

#[tokio::test]
async fn greets_then_pushes_numbers_and_echoes() {
    let server = Server::start(|l| periodic_push::run(l, Config::default())).await;
    let mut ws = within("connect", wshub::connect(&server.url(PATH)))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, GREETING);

    // The first push is due one second after connecting.
    let number = next_text(&mut ws).await;
    assert!(is_number(&number), "{number:?}");

    ws.send(Message::text("echo me")).await.unwrap();
    let echoed = loop {
        let text = next_text(&mut ws).await;
        if !is_number(&text) {
            break text;
        }
    };
    assert_eq!(echoed, "echo me");
}

#[tokio::test]
async fn a_query_string_does_not_change_the_route() {
    let server = Server::start(|l| periodic_push::run(l, Config::default())).await;
    let url = server.url(&format!("{PATH}?token=abc"));
    let mut ws = within("connect", wshub::connect(&url)).await.unwrap();
    assert_eq!(next_text(&mut ws).await, GREETING);
}

#[tokio::test]
async fn other_paths_get_404() {
    let server = Server::start(|l| periodic_push::run(l, Config::default())).await;
    for path in ["/", "/websocket", "/websocket/test/more"] {
        let refused = within("connect", wshub::connect(&server.url(path))).await;
        assert!(
            matches!(&refused, Err(Error::Http(response)) if response.status == 404),
            "{path}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn a_plain_http_get_of_the_route_gets_426() {
    let server = Server::start(|l| periodic_push::run(l, Config::default())).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!("GET {PATH} HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    within("response", tcp.read_to_string(&mut response))
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 426 "), "{response}");
    assert!(
        response.contains("Sec-WebSocket-Version: 13\r\n"),
        "{response}"
    );
}
