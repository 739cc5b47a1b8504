//! `wshub listen`: one client at a time, its messages printed, stdin lines
//! sent to it; and `wshub connect` talking to it.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use futures_util::StreamExt;
use tokio::time::timeout;
use wshub::{CloseCode, Message};

use common::{spawn_piped, WAIT};

/// A `wshub` child with its stdout and stderr read line by line.
struct Wshub {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Wshub {
    fn start(args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wshub"));
        command.args(args);
        for name in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
            command.env_remove(name);
        }
        let (child, stdout, stderr) = spawn_piped(command);
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// The first stderr line containing `needle` (earlier ones are dropped).
    fn stderr_line(&self, needle: &str) -> String {
        loop {
            let line = self
                .stderr
                .recv_timeout(WAIT)
                .unwrap_or_else(|e| panic!("no stderr line with {needle:?} in time: {e}"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn exit_code(&mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("wshub did not exit in time");
    }
}

impl Drop for Wshub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wshub listen --once 0 [flags]`, and its `ws://ADDR` once listening.
fn listen(flags: &[&str]) -> (Wshub, String) {
    let mut args = vec!["listen", "--once"];
    args.extend_from_slice(flags);
    args.push("0");
    let server = Wshub::start(&args);
    let line = server.stderr_line("listening on ");
    let url = line.trim_start_matches("listening on ").to_owned();
    assert!(url.starts_with("ws://127.0.0.1:"), "{line}");
    (server, url)
}

#[tokio::test]
async fn listen_prints_the_clients_messages_sends_lines_and_turns_a_second_client_away() {
    let (mut server, url) = listen(&["--subprotocol", "chat"]);
    let mut ws = wshub::ClientBuilder::new(format!("{url}/"))
        .protocol("other")
        .protocol("chat")
        .connect()
        .await
        .expect("listen takes a client");
    assert_eq!(ws.protocol().as_deref(), Some("chat"));
    server.stderr_line("connected (subprotocol chat)");
    ws.send(Message::text("to the listener")).await.unwrap();
    ws.send(Message::binary(vec![0xde, 0xad])).await.unwrap();
    assert_eq!(server.stdout.recv_timeout(WAIT).unwrap(), "to the listener");
    assert_eq!(server.stdout.recv_timeout(WAIT).unwrap(), "dead");
    server.type_line("to the client");
    let got = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, Message::text("to the client"));

    let second = wshub::connect(&url).await;
    assert!(
        matches!(&second, Err(wshub::Error::Http(r)) if r.status == 503),
        "{second:?}"
    );

    ws.close(CloseCode::NormalClosure, "bye").await.unwrap();
    server.stderr_line("disconnected: code 1000 reason \"bye\"");
    assert_eq!(server.exit_code(), Some(0), "--once exits after its client");
}

#[tokio::test]
async fn connect_and_listen_talk_and_slash_close_ends_both() {
    let (mut server, url) = listen(&["--show-ping-pong"]);
    let mut client = Wshub::start(&["connect", "--slash", "--show-ping-pong", &url]);
    client.stderr_line("connected to ws://");
    server.stderr_line("client 127.0.0.1:");
    client.type_line("hello listener");
    assert_eq!(server.stdout.recv_timeout(WAIT).unwrap(), "hello listener");
    server.type_line("hello client");
    assert_eq!(client.stdout.recv_timeout(WAIT).unwrap(), "hello client");
    client.type_line("/ping");
    server.stderr_line("ping received (payload \"1\")");
    client.stderr_line("pong received (payload \"1\"), round trip ");
    client.type_line("/close 4002 done here");
    client.stderr_line("closed: code 4002 ");
    server.stderr_line("disconnected: code 4002 reason \"done here\" (clean: true)");
    assert_eq!(client.exit_code(), Some(0));
    assert_eq!(server.exit_code(), Some(0));
}

/// A usage error: the arguments, the environment, and what stderr says.
type UsageCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn usage_errors_exit_2_and_say_what_to_fix() {
    let cases: &[UsageCase<'_>] = &[
        (
            &["listen", "not-a-port"],
            &[],
            "give a port (8080) or ADDR:PORT",
        ),
        (
            &["connect", "http://127.0.0.1:1/"],
            &[],
            "the scheme must be ws:// or wss://",
        ),
        (
            &["connect", "--auth", "nocolon", "ws://127.0.0.1:1/"],
            &[],
            "--auth \"nocolon\": expected USER:PASSWORD",
        ),
        (
            &["connect", "--proxy", "https://p:1", "ws://127.0.0.1:1/"],
            &[],
            "TLS to the proxy itself (https://) is not supported",
        ),
        (
            &["connect", "ws://127.0.0.1:1/"],
            &[("ALL_PROXY", "ftp://p")],
            "ALL_PROXY \"ftp://p\": unknown proxy scheme ftp://",
        ),
        (
            &["connect", "--wait", "2", "ws://127.0.0.1:1/"],
            &[],
            "--execute",
        ),
        (
            &["connect", "--close-code", "1005", "ws://127.0.0.1:1/"],
            &[],
            "not a code that may be sent",
        ),
    ];
    for (args, env, fix) in cases {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wshub"));
        command.args(*args).stdin(Stdio::null());
        for name in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
            command.env_remove(name);
        }
        command.envs(env.iter().copied());
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(fix), "{args:?}: want {fix:?} in {stderr}");
    }
}

#[tokio::test]
async fn listen_execute_greets_the_client_and_one_message_ends_it() {
    let (mut server, url) = listen(&["-x", "greeting", "-1"]);
    // Nothing is sent before a client is there to take it.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut ws = wshub::connect(&url).await.unwrap();
    let got = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, Message::text("greeting"));
    ws.send(Message::text("reply")).await.unwrap();
    assert_eq!(server.stdout.recv_timeout(WAIT).unwrap(), "reply");
    // The listener closes after that one message.
    assert!(timeout(WAIT, ws.next()).await.unwrap().is_none());
    assert_eq!(
        ws.close_event().map(|e| e.code),
        Some(CloseCode::NormalClosure)
    );
    assert_eq!(server.exit_code(), Some(0));
}
