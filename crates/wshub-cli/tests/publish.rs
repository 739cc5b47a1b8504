//! `wshub publish` (docs/protocol.md, "HTTP API"), run as the real binary:
//! against a fake hub started here (a listener that reads the request with
//! httparse, checks method, path, key, content type and JSON body, and
//! answers as told) for what it sends and how it reports each answer, and
//! end to end against `wshub serve --api-key-file`, over http and https,
//! where a member of the room receives what the command published.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use futures_util::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use wshub::{ClientStream, Message, WebSocket};

use common::{Server, WAIT};

/// The API key the tests use: the hub wants 16 bytes or more.
const KEY: &str = "test-api-key-0123456789abcdef";

/// The hub's answer to a publish, as the fake hub sends it.
const PUBLISHED: &str =
    r#"{"room":"lobby","epoch":"5f3a9c2e9d41b7a0-1","offset":17,"duplicate":false}"#;

/// A request as the fake hub read it.
#[derive(Debug)]
struct Received {
    method: String,
    path: String,
    /// Names in lowercase.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts what every publish carries (`POST path`, the key, a JSON
    /// body of the length announced) and returns the body.
    fn publish_body(&self, path: &str, key: &str) -> Value {
        assert_eq!((self.method.as_str(), self.path.as_str()), ("POST", path));
        let bearer = format!("Bearer {key}");
        assert_eq!(self.header("authorization"), Some(bearer.as_str()));
        assert_eq!(self.header("content-type"), Some("application/json"));
        let length = self.body.len().to_string();
        assert_eq!(self.header("content-length"), Some(length.as_str()));
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// How the fake hub answers every request.
#[derive(Debug, Clone)]
enum Answer {
    /// This status, content type and body, then it closes the connection.
    With {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    /// Nothing: it reads the request and holds the connection open.
    Never,
}

/// A fake hub on 127.0.0.1: each connection's request is read and passed
/// on, then answered as told.
struct FakeHub {
    addr: SocketAddr,
    received: mpsc::UnboundedReceiver<Received>,
}

impl FakeHub {
    async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (tx, answer) = (tx.clone(), answer.clone());
                tokio::spawn(serve_one(tcp, tx, answer));
            }
        });
        Self { addr, received }
    }

    /// A fake hub answering `status` with the JSON `body`.
    async fn answering(status: u16, body: &str) -> Self {
        Self::start(Answer::With {
            status,
            content_type: "application/json",
            body: body.to_owned(),
        })
        .await
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next request it read.
    async fn request(&mut self) -> Received {
        timeout(WAIT, self.received.recv())
            .await
            .expect("a request in time")
            .expect("the fake hub runs")
    }
}

async fn serve_one(mut tcp: TcpStream, tx: mpsc::UnboundedSender<Received>, answer: Answer) {
    let Some(request) = read_request(&mut tcp).await else {
        return;
    };
    let _ = tx.send(request);
    match answer {
        Answer::With {
            status,
            content_type,
            body,
        } => {
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = tcp.write_all(head.as_bytes()).await;
            let _ = tcp.write_all(body.as_bytes()).await;
            let _ = tcp.shutdown().await;
        }
        Answer::Never => {
            // Holds the socket until the client goes.
            let _ = tcp.read_to_end(&mut Vec::new()).await;
        }
    }
}

/// The request head (httparse) and its `Content-Length` body; `None` if the
/// client closed first.
async fn read_request(tcp: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut head = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(head_len) = head.parse(&buf).expect("a valid request head")
        else {
            continue;
        };
        let mut received = Received {
            method: head.method.unwrap().to_owned(),
            path: head.path.unwrap().to_owned(),
            headers: head
                .headers
                .iter()
                .map(|h| {
                    let value = std::str::from_utf8(h.value).unwrap().to_owned();
                    (h.name.to_ascii_lowercase(), value)
                })
                .collect(),
            body: Vec::new(),
        };
        let length: usize = received
            .header("content-length")
            .map_or(0, |v| v.parse().unwrap());
        while buf.len() < head_len + length {
            let n = tcp.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        received.body = buf[head_len..head_len + length].to_vec();
        return Some(received);
    }
}

/// How a `wshub publish` run ended.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `wshub publish ARGS`, with `WSHUB_API_KEY` set to `key` (or unset) and
/// `stdin` as its input (or none), run to its end on a blocking thread.
async fn publish(args: &[&str], key: Option<&str>, stdin: Option<&str>) -> Outcome {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wshub"));
    command
        .arg("publish")
        .args(args)
        .env_remove("WSHUB_API_KEY")
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(key) = key {
        command.env("WSHUB_API_KEY", key);
    }
    let stdin = stdin.map(str::to_owned);
    let run = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("wshub runs");
        if let Some(text) = stdin {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            input.write_all(text.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    });
    let out = timeout(2 * WAIT, run)
        .await
        .expect("wshub publish ended in time")
        .unwrap();
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Asserts a run exited 0 with one line on stdout, and returns it as JSON.
fn published(outcome: &Outcome) -> Value {
    assert_eq!(outcome.code, Some(0), "{outcome:?}");
    assert_eq!(outcome.stdout.lines().count(), 1, "{outcome:?}");
    serde_json::from_str(&outcome.stdout).unwrap()
}

/// A file holding `text`; removed when dropped.
fn temp_file(text: &str) -> tempfile::TempPath {
    let file = tempfile::Builder::new()
        .prefix("wshub-publish-")
        .tempfile()
        .unwrap();
    std::fs::write(file.path(), text).unwrap();
    file.into_temp_path()
}

/// A port on 127.0.0.1 where nothing listens (it did a moment ago).
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_text_message_is_sent_as_a_json_string_and_the_answer_printed() {
    let mut hub = FakeHub::answering(200, PUBLISHED).await;
    let url = hub.url();
    let out = publish(
        &["--url", &url, "--room", "lobby", "hello, room"],
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), format!("{PUBLISHED}\n").as_str(), ""),
    );
    let request = hub.request().await;
    assert_eq!(
        request.publish_body("/api/publish", KEY),
        json!({"room": "lobby", "message": "hello, room"})
    );
    assert_eq!(request.header("host"), Some(hub.addr.to_string().as_str()));
}

#[tokio::test]
async fn json_sends_the_value_message_spells() {
    let mut hub = FakeHub::answering(200, PUBLISHED).await;
    let url = hub.url();
    for (message, value) in [
        (
            r#"{"n": 1, "tags": ["a", "b"]}"#,
            json!({"n": 1, "tags": ["a", "b"]}),
        ),
        ("42", json!(42)),
        (r#""quoted""#, json!("quoted")),
    ] {
        let out = publish(
            &["--url", &url, "--room", "lobby", "--json", message],
            Some(KEY),
            None,
        )
        .await;
        published(&out);
        let body = hub.request().await.publish_body("/api/publish", KEY);
        assert_eq!(body["message"], value, "{message}");
    }
}

#[tokio::test]
async fn a_dash_reads_stdin_less_one_trailing_newline() {
    let mut hub = FakeHub::answering(200, PUBLISHED).await;
    let url = hub.url();
    let out = publish(
        &["--url", &url, "--room", "lobby", "-"],
        Some(KEY),
        Some("line one\nline two\n\n"),
    )
    .await;
    published(&out);
    let body = hub.request().await.publish_body("/api/publish", KEY);
    assert_eq!(body["message"], "line one\nline two\n");

    let out = publish(
        &["--url", &url, "--room", "lobby", "--json", "-"],
        Some(KEY),
        Some("[1, {\"a\": null}]\r\n"),
    )
    .await;
    published(&out);
    let body = hub.request().await.publish_body("/api/publish", KEY);
    assert_eq!(body["message"], json!([1, {"a": null}]));
}

#[tokio::test]
async fn from_and_idempotency_key_are_passed_through_and_a_duplicate_printed() {
    let duplicate = r#"{"room":"lobby","epoch":"e-1","offset":9,"duplicate":true}"#;
    let mut hub = FakeHub::answering(200, duplicate).await;
    let url = hub.url();
    let out = publish(
        &[
            "--url",
            &url,
            "--room",
            "lobby",
            "--from",
            "deploy-bot",
            "--idempotency-key",
            "deploy-1432",
            "deploy finished",
        ],
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(published(&out)["duplicate"], true);
    assert_eq!(
        hub.request().await.publish_body("/api/publish", KEY),
        json!({
            "room": "lobby",
            "message": "deploy finished",
            "from": "deploy-bot",
            "idempotency_key": "deploy-1432",
        })
    );
}

#[tokio::test]
async fn the_key_file_is_read_without_trailing_whitespace_and_wins_over_the_variable() {
    let mut hub = FakeHub::answering(200, PUBLISHED).await;
    let url = hub.url();
    let file = temp_file(&format!("{KEY} \n"));
    let out = publish(
        &[
            "--url",
            &url,
            "--room",
            "lobby",
            "--api-key-file",
            file.to_str().unwrap(),
            "hi",
        ],
        Some("the-variables-key-not-this-one"),
        None,
    )
    .await;
    published(&out);
    hub.request().await.publish_body("/api/publish", KEY);
}

#[tokio::test]
async fn a_401_exits_1_with_the_hubs_code_and_message() {
    let hub = FakeHub::answering(
        401,
        r#"{"error":"unauthorized","message":"the API key is wrong"}"#,
    )
    .await;
    let out = publish(
        &["--url", &hub.url(), "--room", "lobby", "hi"],
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            Some(1),
            "",
            "wshub publish: 401 unauthorized: the API key is wrong\n"
        ),
    );
}

#[tokio::test]
async fn a_503_exits_1_saying_nothing_was_published() {
    let hub = FakeHub::answering(
        503,
        r#"{"error":"unavailable","message":"the message could not be recorded; nothing was published"}"#,
    )
    .await;
    let out = publish(
        &["--url", &hub.url(), "--room", "lobby", "hi"],
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stderr,
        "wshub publish: 503 unavailable: the message could not be recorded; nothing was published\n"
    );
}

#[tokio::test]
async fn a_plain_404_says_the_api_may_be_off_or_the_prefix_wrong() {
    let hub = FakeHub::start(Answer::With {
        status: 404,
        content_type: "text/plain",
        body: "not found".into(),
    })
    .await;
    // An http:// URL ending in the hub's /ws route (a ws:// one has it
    // dropped) gets the hint.
    let url = format!("http://{}/ws", hub.addr);
    let out = publish(&["--url", &url, "--room", "lobby", "hi"], Some(KEY), None).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let expected = format!(
        "wshub publish: 404 not found: no API at http://{}/ws/api/publish:",
        hub.addr
    );
    assert!(
        out.stderr.starts_with(&expected)
            && out.stderr.contains("--api-key-file")
            && out.stderr.ends_with("drop the /ws\n"),
        "{out:?}"
    );
}

#[tokio::test]
async fn without_a_key_it_exits_2_naming_the_flag_and_the_variable() {
    let url = format!("http://127.0.0.1:{}", closed_port().await);
    for key in [None, Some("")] {
        let out = publish(&["--url", &url, "--room", "lobby", "hi"], key, None).await;
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(
            out.stderr.contains("--api-key-file") && out.stderr.contains("WSHUB_API_KEY"),
            "{out:?}"
        );
    }
    let out = publish(
        &[
            "--url",
            &url,
            "--room",
            "lobby",
            "--api-key-file",
            "/nonexistent/key",
            "hi",
        ],
        None,
        None,
    )
    .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("--api-key-file /nonexistent/key"),
        "{out:?}"
    );
}

#[tokio::test]
async fn invalid_json_exits_2_saying_where() {
    // Nothing listens: had it tried to send, it would exit 1.
    let url = format!("http://127.0.0.1:{}", closed_port().await);
    let out = publish(
        &["--url", &url, "--room", "lobby", "--json", r#"{"a": "#],
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("--json") && out.stderr.contains("line 1 column 6"),
        "{out:?}"
    );
    let out = publish(
        &["--url", &url, "--room", "lobby", "--json", "hi"],
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(out.code, Some(2), "{out:?}");
}

#[tokio::test]
async fn bad_urls_exit_2_naming_the_flag() {
    for url in [
        "127.0.0.1:8080",
        "ftp://127.0.0.1",
        "http://127.0.0.1/?room=a",
    ] {
        let out = publish(&["--url", url, "--room", "lobby", "hi"], Some(KEY), None).await;
        assert_eq!(out.code, Some(2), "{url}: {out:?}");
        assert!(out.stderr.contains(&format!("--url {url}")), "{out:?}");
    }
}

#[tokio::test]
async fn an_unreachable_hub_exits_1_naming_the_url() {
    let url = format!("http://127.0.0.1:{}", closed_port().await);
    let out = publish(&["--url", &url, "--room", "lobby", "hi"], Some(KEY), None).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("{url}/api/publish")),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_ws_url_is_taken_as_http_and_its_path_as_the_prefix() {
    let mut hub = FakeHub::answering(200, PUBLISHED).await;
    let url = format!("ws://{}/hub/", hub.addr);
    let out = publish(&["--url", &url, "--room", "lobby", "hi"], Some(KEY), None).await;
    published(&out);
    let request = hub.request().await;
    request.publish_body("/hub/api/publish", KEY);
    assert_eq!(request.header("host"), Some(hub.addr.to_string().as_str()));
}

#[tokio::test]
async fn timeout_bounds_a_hub_that_never_answers() {
    let mut hub = FakeHub::start(Answer::Never).await;
    let url = hub.url();
    // The default (10s) would outlast the bound on the run below.
    let args = ["--url", &url, "--room", "lobby", "--timeout", "300ms", "hi"];
    let out = timeout(WAIT / 2, publish(&args, Some(KEY), None))
        .await
        .expect("--timeout ended the run");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stderr,
        format!("error: POST {url}/api/publish: no answer within 300ms (--timeout)\n")
    );
    // The request went out: it was the answer that never came.
    hub.request().await.publish_body("/api/publish", KEY);
}

/// The next text message as JSON.
async fn next_json(ws: &mut WebSocket<ClientStream>) -> Value {
    let message = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    serde_json::from_slice(message.as_bytes()).unwrap()
}

/// The next message of `type`, skipping others (presence).
async fn next_of_type(ws: &mut WebSocket<ClientStream>, kind: &str) -> Value {
    loop {
        let value = next_json(ws).await;
        if value["type"] == kind {
            return value;
        }
    }
}

/// A member of `room`, connected by `builder` (to the hub's `/ws`), past
/// its `joined`.
async fn member(builder: wshub::ClientBuilder, room: &str) -> WebSocket<ClientStream> {
    let mut ws = timeout(WAIT, builder.connect()).await.unwrap().unwrap();
    next_of_type(&mut ws, "welcome").await;
    let join = json!({"op": "join", "room": room, "name": "watcher"});
    ws.send(Message::text(join.to_string())).await.unwrap();
    next_of_type(&mut ws, "joined").await;
    ws
}

#[tokio::test]
async fn a_member_of_the_room_receives_what_the_command_published_at_its_offset() {
    let key_file = temp_file(&format!("{KEY}\n"));
    let key_path = key_file.to_str().unwrap();
    let server = Server::start(&["--api-key-file", key_path]);
    let url = format!("ws://{}/ws", server.addr);
    let mut ws = member(wshub::ClientBuilder::new(url), "lobby").await;

    let base = format!("http://{}", server.addr);
    let args = [
        "--url",
        &base,
        "--room",
        "lobby",
        "--api-key-file",
        key_path,
        "--from",
        "deploy-bot",
        "--idempotency-key",
        "deploy-1432",
        "deploy finished",
    ];
    let answer = published(&publish(&args, None, None).await);
    assert_eq!(
        (&answer["room"], &answer["duplicate"]),
        (&json!("lobby"), &json!(false)),
        "{answer}"
    );
    let message = next_of_type(&mut ws, "message").await;
    assert_eq!(
        (
            &message["room"],
            &message["message"],
            &message["from"],
            &message["from_id"]
        ),
        (
            &json!("lobby"),
            &json!("deploy finished"),
            &json!("deploy-bot"),
            &json!(0)
        ),
        "{message}"
    );
    assert_eq!(
        (&message["epoch"], &message["offset"]),
        (&answer["epoch"], &answer["offset"]),
        "{message} {answer}"
    );

    // The same key again: nothing new, the first one's offset.
    let again = published(&publish(&args, None, None).await);
    assert_eq!(
        (&again["offset"], &again["duplicate"]),
        (&answer["offset"], &json!(true))
    );

    // The hub itself, with the wrong key.
    let out = publish(
        &["--url", &base, "--room", "lobby", "hi"],
        Some("a-wrong-key-of-enough-bytes"),
        None,
    )
    .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.starts_with("wshub publish: 401 unauthorized: "),
        "{out:?}"
    );
}

/// A test CA (rcgen) and a server certificate for `localhost` and
/// 127.0.0.1 that it signed, as PEM files in `dir`: the CA's, the server's
/// chain, the server's key.
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "wshub publish test CA");
    let ca = params.self_signed(&ca_key).unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "wshub publish test server");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[tokio::test]
async fn over_https_the_tls_flags_mean_what_they_mean_for_connect() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(dir.path());
    let key_file = dir.path().join("api.key");
    std::fs::write(&key_file, KEY).unwrap();
    let server = Server::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--api-key-file",
        key_file.to_str().unwrap(),
    ]);
    let port = server.addr.port();
    let roots = wshub::tls::load_roots(&ca).unwrap();
    let wss = format!("wss://localhost:{port}/ws");
    let builder = wshub::ClientBuilder::new(wss)
        .tls_config(std::sync::Arc::new(wshub::tls::client_config(roots)));
    let mut ws = member(builder, "lobby").await;

    // Trusted through --ca; a wss:// URL is taken as https://.
    let url = format!("wss://localhost:{port}");
    let ca = ca.to_str().unwrap();
    let answer = published(
        &publish(
            &["--url", &url, "--room", "lobby", "--ca", ca, "over tls"],
            Some(KEY),
            None,
        )
        .await,
    );
    let message = next_of_type(&mut ws, "message").await;
    assert_eq!(
        (&message["message"], &message["offset"]),
        (&json!("over tls"), &answer["offset"])
    );

    // Without --ca the test CA is unknown: no request is sent.
    let url = format!("https://localhost:{port}");
    let out = publish(
        &["--url", &url, "--room", "lobby", "unsent"],
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("TLS handshake with {url}/api/publish"))
            && out.stderr.contains("UnknownIssuer"),
        "{out:?}"
    );

    // --insecure: published, with connect's warning.
    let out = publish(
        &["--url", &url, "--room", "lobby", "--insecure", "insecure"],
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.starts_with("warning: --insecure: "), "{out:?}");
    let message = next_of_type(&mut ws, "message").await;
    assert_eq!(message["message"], "insecure");
}
