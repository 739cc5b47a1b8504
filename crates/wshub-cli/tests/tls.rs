//! `wshub serve --tls-cert --tls-key`, run as the real binary, with a test
//! CA and server certificates made here by rcgen: wss:// and https:// on
//! one port, the clients (the library, `wshub connect`), certificates that
//! must fail, handshakes that misbehave, the one handshake deadline, session
//! resumption, SIGHUP reload, and memory after a flood of bad handshakes.
#![cfg(unix)]

mod common;

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wshub::rustls::pki_types::{CertificateDer, ServerName};
use wshub::rustls::{ClientConfig, HandshakeKind, RootCertStore};
use wshub::tokio_rustls::TlsConnector;
use wshub::{ClientBuilder, ClientStream, Message, WebSocket};

use common::{assert_echoes, signal, Server, WAIT};

/// A test CA: its certificate, and what signs the servers' ones.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// Which names and dates a server certificate gets.
enum Leaf {
    /// `localhost` and 127.0.0.1, valid now.
    Good,
    /// Only `example.com`.
    OtherHost,
    /// `localhost` and 127.0.0.1, but expired in 2021.
    Expired,
}

impl Ca {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "wshub test CA");
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A server certificate and its key, as PEM files in `dir`; returns
    /// their paths.
    fn issue(&self, leaf: Leaf, dir: &Path) -> (PathBuf, PathBuf) {
        let names = match leaf {
            Leaf::OtherHost => vec!["example.com".to_owned()],
            Leaf::Good | Leaf::Expired => vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
        };
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "wshub test server");
        if let Leaf::Expired = leaf {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// The CA's certificate as a PEM file in `dir`.
    fn pem_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.cert.pem()).unwrap();
        path
    }

    /// A client configuration trusting this CA only.
    fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        Arc::new(wshub::tls::client_config(roots))
    }
}

/// A fresh directory for one test's files, removed when dropped.
struct Scratch(tempfile::TempDir);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

fn scratch(test: &str) -> Scratch {
    let dir = tempfile::Builder::new()
        .prefix(&format!("wshub-cli-tls-{test}-"))
        .tempdir()
        .unwrap();
    Scratch(dir)
}

/// A new CA, and `wshub serve` with `flags` and a good certificate of it
/// (files in the returned directory, `cert.pem` and `key.pem`).
fn good_server(test: &str, flags: &[&str]) -> (Ca, Server, Scratch) {
    let dir = scratch(test);
    let ca = Ca::new();
    let (cert, key) = ca.issue(Leaf::Good, &dir);
    let server = serve_tls(&cert, &key, flags);
    (ca, server, dir)
}

/// `wshub serve` over TLS with `cert` and `key`, and `flags`.
fn serve_tls(cert: &Path, key: &Path, flags: &[&str]) -> Server {
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    Server::start(&args)
}

fn wss(server: &Server, path: &str) -> String {
    format!("wss://{}{path}", server.addr)
}

/// The library's client on `path` of `server`, trusting `ca` only.
async fn open(
    server: &Server,
    ca: &Ca,
    path: &str,
) -> Result<WebSocket<ClientStream>, wshub::Error> {
    let connect = ClientBuilder::new(wss(server, path))
        .tls_config(ca.client_config())
        .connect();
    timeout(WAIT, connect)
        .await
        .expect("connected or failed in time")
}

/// A TLS session to `server` verified with `config`, over `io`.
async fn tls_over<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    config: Arc<ClientConfig>,
) -> io::Result<wshub::tokio_rustls::client::TlsStream<S>> {
    let name = ServerName::try_from("127.0.0.1").unwrap();
    timeout(WAIT, TlsConnector::from(config).connect(name, io))
        .await
        .expect("TLS handshake in time")
}

/// The bytes of a TLS ClientHello, as a client would send them first.
fn client_hello(config: Arc<ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = wshub::rustls::ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    hello
}

/// Reads until the peer closes or fails the connection; `Err` if that
/// takes longer than `WAIT`.
async fn read_until_closed<S: AsyncRead + Unpin>(io: &mut S) -> Result<Vec<u8>, ()> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    };
    timeout(WAIT, read).await.map_err(|_| ())?;
    Ok(all)
}

#[tokio::test]
async fn wss_echo_and_hub_and_the_https_page_with_a_trusted_ca() {
    let (ca, server, _dir) = good_server("basic", &[]);
    let mut echo = open(&server, &ca, "/echo").await.unwrap();
    assert_echoes(&mut echo, "hello over TLS").await;
    let big = "x".repeat(200_000);
    assert_echoes(&mut echo, &big).await;

    let mut hub = open(&server, &ca, "/ws").await.unwrap();
    let welcome = timeout(WAIT, hub.next()).await.unwrap().unwrap().unwrap();
    let Message::Text(welcome) = welcome else {
        panic!("{welcome:?}")
    };
    assert!(
        welcome.as_str().contains("\"welcome\""),
        "{}",
        welcome.as_str()
    );

    let config = ca.client_config();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut tls = tls_over(tcp, config.clone()).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let page = String::from_utf8(read_until_closed(&mut tls).await.unwrap()).unwrap();
    assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
    assert!(page.contains("<html"), "{page}");

    // The session tickets that came with the page resume the next session.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = tls_over(tcp, config).await.unwrap();
    assert_eq!(
        tls.get_ref().1.handshake_kind(),
        Some(HandshakeKind::Resumed)
    );
}

/// `wshub connect` with stdin `input` and `flags`: exit code, stdout,
/// stderr.
fn wshub_connect(flags: &[&str], input: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wshub"))
        .arg("connect")
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

#[tokio::test]
async fn wshub_connect_trusts_ca_or_skips_verification_with_a_warning() {
    let dir = scratch("connect");
    let ca = Ca::new();
    let (cert, key) = ca.issue(Leaf::Good, &dir);
    let ca_file = ca.pem_file(&dir);
    let server = serve_tls(&cert, &key, &[]);
    let url = wss(&server, "/echo");

    let with_ca = ["--ca", ca_file.to_str().unwrap(), url.as_str()];
    let (code, out, err) = wshub_connect(&with_ca, "hello\n");
    assert_eq!((code, out.as_str()), (Some(0), "hello\n"), "{err}");
    assert!(!err.contains("warning"), "{err}");

    let (code, out, err) = wshub_connect(&["--insecure", &url], "hi\n");
    assert_eq!((code, out.as_str()), (Some(0), "hi\n"), "{err}");
    assert!(
        err.contains("warning: --insecure: the server's certificate is not verified"),
        "{err}"
    );

    // Without either, the system's roots do not know the test CA.
    let (code, _, err) = wshub_connect(&[&url], "hi\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("TLS handshake failed: invalid peer certificate: UnknownIssuer"),
        "{err}"
    );

    let (code, _, err) = wshub_connect(&["--ca", "/nonexistent/ca.pem", &url], "");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--ca /nonexistent/ca.pem: cannot read"),
        "{err}"
    );
}

/// A TLS echo server that requires a client certificate issued by `ca`
/// (rustls' `WebPkiClientVerifier`), on a free port; each connection is
/// upgraded by the wshub library and echoes one message. Returns its port.
async fn mutual_tls_echo(ca: &Ca, cert: &Path, key: &Path) -> u16 {
    use wshub::rustls::server::WebPkiClientVerifier;
    use wshub::rustls::ServerConfig;
    let provider = wshub::tls::crypto_provider();
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            wshub::tls::load_certificates(cert).unwrap(),
            wshub::tls::load_private_key(key).unwrap(),
        )
        .unwrap();
    let acceptor = wshub::tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = wshub::accept(tls).await else {
                    return;
                };
                if let Some(Ok(message)) = ws.next().await {
                    let _ = ws.send(message).await;
                }
                let _ = ws.close(wshub::CloseCode::NormalClosure, "").await;
            });
        }
    });
    port
}

/// `wshub connect --cert --key` presents a client certificate (mutual TLS):
/// a server that requires one echoes with it, and without it the
/// connection fails with an error that says a certificate was required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wshub_connect_presents_a_client_certificate_to_a_server_that_requires_one() {
    let dir = scratch("client-cert");
    let ca = Ca::new();
    let (cert, key) = ca.issue(Leaf::Good, &dir);
    let client_dir = dir.join("client");
    std::fs::create_dir_all(&client_dir).unwrap();
    let (client_cert, client_key) = ca.issue(Leaf::Good, &client_dir);
    let ca_file = ca.pem_file(&dir);
    let port = mutual_tls_echo(&ca, &cert, &key).await;
    let url = format!("wss://localhost:{port}/");
    let path = |p: &Path| p.to_str().unwrap().to_owned();

    let flags = [
        "--ca".to_owned(),
        path(&ca_file),
        "--cert".to_owned(),
        path(&client_cert),
        "--key".to_owned(),
        path(&client_key),
        url.clone(),
    ];
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        wshub_connect(&flags, "with a certificate\n")
    })
    .await
    .unwrap();
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "with a certificate\n"),
        "{err}"
    );

    let flags = ["--ca".to_owned(), path(&ca_file), url];
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        wshub_connect(&flags, "without\n")
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1), "{out} {err}");
    assert!(err.contains("CertificateRequired"), "{err}");
}

#[tokio::test]
async fn a_wrong_host_or_expired_certificate_fails_with_an_error_that_says_so() {
    let ca = Ca::new();
    for (leaf, dir, expected) in [
        (
            Leaf::OtherHost,
            "other-host",
            "certificate not valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"example.com\")",
        ),
        (Leaf::Expired, "expired", "certificate expired: verification time"),
    ] {
        let dir = scratch(dir);
        let (cert, key) = ca.issue(leaf, &dir);
        let server = serve_tls(&cert, &key, &[]);
        let error = open(&server, &ca, "/echo").await.unwrap_err();
        let report = error.report().to_string();
        assert!(matches!(error, wshub::Error::Tls(_)), "{report}");
        assert!(
            report.starts_with("TLS handshake failed: invalid peer certificate: ")
                && report.contains(expected),
            "{report}"
        );
    }
}

/// A new wss:// echo connection to `server` works.
async fn still_serves(server: &Server, ca: &Ca) {
    let mut ws = open(server, ca, "/echo").await.unwrap();
    assert_echoes(&mut ws, "still serving").await;
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_closed_and_the_server_keeps_serving() {
    let (ca, server, _dir) = good_server("plain", &["--metrics-listen", "127.0.0.1:0"]);
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut tcp).await.expect("closed, not hung");
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    still_serves(&server, &ca).await;
    // Both handshakes counted, by result, on the metrics listener.
    let line = server.log.wait_for("metrics, healthz and readyz listening");
    let addr = line
        .split("addr=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let metrics = common::get(addr.parse().unwrap(), "/metrics").await;
    for series in [
        r#"wshub_tls_handshakes_total{result="failed"} 1"#,
        r#"wshub_tls_handshakes_total{result="ok"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} not in\n{metrics}");
    }
}

/// Writes at most one byte per write: every TLS record and the HTTP head
/// reach the server a byte at a time.
struct OneByteWrites(TcpStream);

impl AsyncRead for OneByteWrites {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for OneByteWrites {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let one = &buf[..buf.len().min(1)];
        Pin::new(&mut self.get_mut().0).poll_write(cx, one)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_client_hello_written_one_byte_at_a_time_completes() {
    let (ca, server, _dir) = good_server("one-byte", &[]);
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = tls_over(OneByteWrites(tcp), ca.client_config())
        .await
        .unwrap();
    let connect = ClientBuilder::new(wss(&server, "/echo")).connect_on(tls);
    let mut ws = timeout(WAIT, connect).await.unwrap().unwrap();
    ws.send(Message::text("trickled")).await.unwrap();
    let echoed = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::text("trickled"));
}

#[tokio::test]
async fn clients_that_leave_mid_handshake_leave_the_server_serving() {
    let (ca, server, _dir) = good_server("mid", &[]);
    let hello = client_hello(ca.client_config());
    for cut in [0, 1, 5, hello.len() / 2, hello.len()] {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(&hello[..cut]).await.unwrap();
        drop(tcp);
    }
    // A reset in the middle of the handshake, too.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.set_zero_linger().unwrap();
    let mut tcp = tcp;
    tcp.write_all(&hello).await.unwrap();
    drop(tcp);
    still_serves(&server, &ca).await;
}

#[tokio::test]
async fn the_tls_handshake_and_the_request_head_share_one_deadline() {
    let (ca, server, _dir) = good_server("deadline", &["--handshake-timeout", "2s"]);

    // Half a ClientHello, then nothing: cut at the deadline.
    let hello = client_hello(ca.client_config());
    let started = Instant::now();
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled.write_all(&hello[..hello.len() / 2]).await.unwrap();
    read_until_closed(&mut stalled)
        .await
        .expect("cut, not hung");
    let cut_after = started.elapsed();
    assert!(
        (Duration::from_millis(1800)..Duration::from_secs(5)).contains(&cut_after),
        "{cut_after:?}"
    );

    // 1.5 s before the ClientHello, then a quick TLS handshake and no
    // request head: the 408 comes 2 s after the accept, not 2 s after the
    // TLS handshake.
    let started = Instant::now();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut tls = tls_over(tcp, ca.client_config()).await.unwrap();
    let answer = String::from_utf8(read_until_closed(&mut tls).await.unwrap()).unwrap();
    let cut_after = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        (Duration::from_millis(1800)..Duration::from_millis(3300)).contains(&cut_after),
        "{cut_after:?}: two deadlines, not one"
    );
    still_serves(&server, &ca).await;
}

/// The certificate a new TLS connection to `server` is shown.
async fn served_certificate(server: &Server, ca: &Ca) -> CertificateDer<'static> {
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = tls_over(tcp, ca.client_config()).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

#[tokio::test]
async fn sighup_reloads_the_certificate_for_new_connections_and_keeps_open_ones() {
    let dir = scratch("reload");
    let ca = Ca::new();
    let (cert, key) = ca.issue(Leaf::Good, &dir);
    let first = std::fs::read(&cert).unwrap();
    let server = serve_tls(&cert, &key, &[]);
    let before = served_certificate(&server, &ca).await;
    let mut open = open(&server, &ca, "/echo").await.unwrap();
    assert_echoes(&mut open, "before").await;

    ca.issue(Leaf::Good, &dir);
    assert_ne!(std::fs::read(&cert).unwrap(), first);
    signal(server.pid(), "HUP");
    server.log.wait_for("TLS certificate and key reloaded");
    let after = served_certificate(&server, &ca).await;
    assert_ne!(before, after, "new connections see the new certificate");
    assert_echoes(&mut open, "after").await;

    // A broken key file: logged, and the certificate in use stays.
    std::fs::write(&key, "not a key\n").unwrap();
    signal(server.pid(), "HUP");
    let line = server.log.wait_for("not reloaded");
    assert!(line.contains("key.pem holds no private key"), "{line}");
    assert_eq!(served_certificate(&server, &ca).await, after);
    assert_echoes(&mut open, "still open").await;
}

#[test]
fn bad_tls_flags_exit_2_and_name_the_file() {
    let dir = scratch("flags");
    let ca = Ca::new();
    let (cert, key) = ca.issue(Leaf::Good, &dir);
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\n!!!\n").unwrap();
    let (cert, key, garbage) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        garbage.to_str().unwrap(),
    );
    for (flags, expected) in [
        (vec!["--tls-cert", cert], "--tls-key <FILE>".to_owned()),
        (vec!["--tls-key", key], "--tls-cert <FILE>".to_owned()),
        (
            vec!["--tls-cert", "/nonexistent.pem", "--tls-key", key],
            "error: --tls-cert /nonexistent.pem: cannot read /nonexistent.pem".to_owned(),
        ),
        (
            vec!["--tls-cert", garbage, "--tls-key", key],
            format!("error: --tls-cert {garbage}: {garbage} is not valid PEM"),
        ),
        (
            vec!["--tls-cert", cert, "--tls-key", cert],
            format!("error: --tls-key {cert}: {cert} holds no private key"),
        ),
    ] {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend(flags);
        let (code, err) = common::run(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(&expected), "{args:?}: {err}");
    }
}

/// The server's memory after 10,000 TLS handshakes that fail in every way
/// a scanner makes them fail (garbage, half a ClientHello, a whole one then
/// gone) is what it was after the first 1,000: nothing is kept per failed
/// handshake. Measured (debug build, 2026-12-05): see the report of this
/// change; the slack allowed is 4 MiB.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_over_ten_thousand_bad_tls_handshakes() {
    let dir = scratch("flood");
    let ca = Ca::new();
    let (cert, key) = ca.issue(Leaf::Good, &dir);
    let mut command = Command::new(env!("CARGO_BIN_EXE_wshub"));
    // As in attacks.rs: freed pages go back to the kernel at once, so VmRSS
    // shows what the server holds.
    command.env("MIMALLOC_PURGE_DELAY", "0");
    let flags = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--runtime",
        "current-thread",
        "--max-connections-per-ip",
        "0",
        "--handshakes-per-ip",
        "0",
    ];
    let server = Server::start_with(command, &flags);
    let hello = Arc::new(client_hello(ca.client_config()));
    let flood = |count: usize| {
        let (addr, hello) = (server.addr, hello.clone());
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for worker in 0..50 {
                let hello = hello.clone();
                tasks.spawn(async move {
                    for i in (worker..count).step_by(50) {
                        let Ok(mut tcp) = TcpStream::connect(addr).await else {
                            continue;
                        };
                        let bytes: &[u8] = match i % 3 {
                            0 => b"\x16\x03\x01\xff\xffgarbage that is no ClientHello",
                            1 => &hello[..hello.len() / 2],
                            _ => &hello,
                        };
                        let _ = tcp.write_all(bytes).await;
                        if i % 3 == 0 {
                            let _ = read_until_closed(&mut tcp).await;
                        }
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        }
    };
    flood(1_000).await;
    still_serves(&server, &ca).await;
    let warm = server.rss_kib();
    flood(10_000).await;
    still_serves(&server, &ca).await;
    let after = server.rss_kib();
    eprintln!("server RSS: {warm} KiB after 1,000 bad handshakes, {after} KiB after 10,000 more");
    assert!(after <= warm + 4096, "{warm} KiB -> {after} KiB");
}
