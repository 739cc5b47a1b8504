//! The `client` example against the `echo_server` example.

mod common;
// The example files themselves, so the code tested is the code shown. Their
// `main`s are not called here.
#[allow(dead_code)]
#[path = "../client.rs"]
pub mod client;
#[allow(dead_code)]
#[path = "../echo_server.rs"]
pub mod echo_server;

use std::time::Duration;

use client::Config;
use common::{within, Server};
use wshub::Error;

#[tokio::test]
async fn says_hello_prints_the_echo_and_closes_normally() {
    let server = Server::start(echo_server::run).await;
    let config = Config {
        listen_for: Duration::from_millis(200),
    };
    let mut out = Vec::new();
    let event = within("client", client::run(&server.url("/"), &config, &mut out))
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        (event.code.as_u16(), event.was_clean),
        (1000, true),
        "{out}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("open: readyState=1 (Open)"), "{out}");
    assert!(lines.contains(&"message (text): Hello Server!"), "{out}");
    assert!(
        lines.last().unwrap().starts_with("closed: code=1000") && out.contains("wasClean=true"),
        "{out}"
    );
}

/// `wss://` to a server that speaks plain HTTP: its answer to the TLS
/// ClientHello is no TLS record, so the handshake fails as TLS.
#[tokio::test]
async fn wss_to_a_plain_http_server_is_a_tls_error() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("wss://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    });
    let mut out = Vec::new();
    let result = within("client", client::run(&url, &Config::default(), &mut out)).await;
    assert!(matches!(result, Err(Error::Tls(_))), "{result:?}");
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("error: TLS handshake failed: "), "{out}");
}
