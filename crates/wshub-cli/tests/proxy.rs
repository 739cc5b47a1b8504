//! `wshub connect` through a proxy: what it says to an HTTP proxy (the
//! CONNECT request, Basic credentials) and to a SOCKS5 one (RFC 1928/1929
//! bytes), and what it makes of a refusal. Real proxies (proxy.py, pproxy)
//! are in tests/interop/connect_test.py.

use std::process::{Command, Output, Stdio};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo WebSocket server for one connection; its address.
async fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = wshub::accept(tcp).await.unwrap();
        while let Some(Ok(message)) = ws.next().await {
            ws.send(message).await.unwrap();
        }
    });
    addr
}

/// `wshub connect ARGS` with `env` and no other proxy variable, run to
/// its end in a blocking thread.
async fn connect(args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wshub"));
        command.arg("connect").args(&args).stdin(Stdio::null());
        for name in [
            "http_proxy",
            "HTTP_PROXY",
            "all_proxy",
            "ALL_PROXY",
            "no_proxy",
            "NO_PROXY",
        ] {
            command.env_remove(name);
        }
        command.envs(env).output().unwrap()
    })
    .await
    .unwrap()
}

/// Reads an HTTP request head byte by byte, to its blank line.
async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn http_connect_with_basic_credentials_from_http_proxy() {
    let target = echo_server().await;
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let seen = tokio::spawn(async move {
        let (mut client, _) = proxy.accept().await.unwrap();
        let head = read_head(&mut client).await;
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .unwrap();
        let mut server = TcpStream::connect(target).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        head
    });
    let out = connect(
        vec![
            "-x".into(),
            "through".into(),
            "-1".into(),
            format!("ws://{target}/"),
        ],
        vec![("HTTP_PROXY", format!("http://al%20ice:p%40ss@{proxy_addr}"))],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through\n");
    let head = seen.await.unwrap();
    assert!(
        head.starts_with(&format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n")),
        "{head}"
    );
    // base64("al ice:p@ss")
    assert!(
        head.contains("\r\nProxy-Authorization: Basic YWwgaWNlOnBAc3M=\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn a_refusing_http_proxy_is_reported_with_its_status() {
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut client, _) = proxy.accept().await.unwrap();
        read_head(&mut client).await;
        let _ = client
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            .await;
    });
    let out = connect(
        vec![
            "--proxy".into(),
            format!("{proxy_addr}"),
            "ws://127.0.0.1:9/".into(),
        ],
        vec![],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "proxy {proxy_addr} (--proxy) to 127.0.0.1:9: the proxy refused CONNECT: 403 Forbidden"
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn socks5_with_user_name_and_password_sends_the_host_name() {
    let target = echo_server().await;
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let seen = tokio::spawn(async move {
        let (mut client, _) = proxy.accept().await.unwrap();
        let mut greeting = [0u8; 4];
        client.read_exact(&mut greeting).await.unwrap();
        client.write_all(&[5, 2]).await.unwrap(); // user name and password
        let mut auth = vec![0u8; 2];
        client.read_exact(&mut auth).await.unwrap();
        let mut user = vec![0u8; auth[1] as usize];
        client.read_exact(&mut user).await.unwrap();
        let mut password = vec![0u8; client.read_u8().await.unwrap() as usize];
        client.read_exact(&mut password).await.unwrap();
        client.write_all(&[1, 0]).await.unwrap();
        let mut request = [0u8; 5];
        client.read_exact(&mut request).await.unwrap();
        let mut host = vec![0u8; request[4] as usize];
        client.read_exact(&mut host).await.unwrap();
        let port = client.read_u16().await.unwrap();
        client
            .write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])
            .await
            .unwrap();
        let mut server = TcpStream::connect(target).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        (greeting, user, password, request, host, port)
    });
    let url = format!("ws://localhost:{}/", target.port());
    let out = connect(
        vec![
            "--proxy".into(),
            format!("socks5h://u:pw@{proxy_addr}"),
            "-x".into(),
            "hi".into(),
            "-1".into(),
            url,
        ],
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    let (greeting, user, password, request, host, port) = seen.await.unwrap();
    assert_eq!(
        greeting,
        [5, 2, 0, 2],
        "no authentication, or user name and password"
    );
    assert_eq!(
        (user.as_slice(), password.as_slice()),
        (&b"u"[..], &b"pw"[..])
    );
    assert_eq!(request[..4], [5, 1, 0, 3], "CONNECT to a domain name");
    assert_eq!((host.as_slice(), port), (&b"localhost"[..], target.port()));
}
