//! What the tests that run `wshub serve` as a real binary share: starting
//! it on 127.0.0.1:0 and reading its address and log, plain HTTP requests,
//! signals, the process's memory, one-shot runs of other subcommands.
// Each test crate uses its own part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wshub::{ClientStream, Message, WebSocket};

pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A running `wshub serve`, killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) log: Arc<Log>,
}

/// The server's stderr, as it arrives, with ANSI colours removed.
#[derive(Default)]
pub(crate) struct Log {
    pub(crate) text: Mutex<String>,
    pub(crate) grew: Condvar,
}

impl Log {
    /// Waits up to `WAIT` for a line containing `needle`; returns it.
    pub(crate) fn wait_for(&self, needle: &str) -> String {
        self.wait_for_nth(needle, 1)
    }

    /// Waits up to `WAIT` for the `n`th line containing `needle`; returns it.
    pub(crate) fn wait_for_nth(&self, needle: &str, n: usize) -> String {
        let count = |t: &String| t.lines().filter(|l| l.contains(needle)).count();
        let text = self.text.lock().unwrap();
        let (text, _) = self
            .grew
            .wait_timeout_while(text, WAIT, |t| count(t) < n)
            .unwrap();
        let line = text.lines().filter(|l| l.contains(needle)).nth(n - 1);
        match line {
            Some(line) => line.to_owned(),
            None => panic!("no {n} lines with {needle:?} in the log:\n{text}"),
        }
    }
}

pub(crate) fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Server {
    /// Starts `wshub serve --listen 127.0.0.1:0 FLAGS`.
    pub(crate) fn start(flags: &[&str]) -> Self {
        Self::start_with(Command::new(env!("CARGO_BIN_EXE_wshub")), flags)
    }

    /// Starts `command serve --listen 127.0.0.1:0 FLAGS`, where `command`
    /// runs the binary (directly, or through a shell that sets limits).
    pub(crate) fn start_with(mut command: Command, flags: &[&str]) -> Self {
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wshub runs");
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().unwrap();
        let writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut text = writer.text.lock().unwrap();
                text.push_str(&strip_ansi(&line));
                text.push('\n');
                writer.grew.notify_all();
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx.recv_timeout(WAIT).expect("the listening line in time");
        let addr = line
            .strip_prefix("listening on http://")
            .or_else(|| line.strip_prefix("listening on https://"))
            .expect("listening on http://ADDR or https://ADDR")
            .parse()
            .unwrap();
        Self { child, addr, log }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has ended.
    pub(crate) fn child_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Resident memory, KiB (VmRSS of `/proc/PID/status`).
    #[cfg(target_os = "linux")]
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server process is alive");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("a VmRSS line in kB")
    }

    pub(crate) async fn echo_client(&self) -> Result<WebSocket<ClientStream>, wshub::Error> {
        let url = format!("ws://{}/echo", self.addr);
        timeout(WAIT, wshub::connect(&url)).await.unwrap()
    }

    /// The whole answer to a plain `GET path`.
    pub(crate) async fn get(&self, path: &str) -> String {
        get(self.addr, path).await
    }

    /// The whole answer to `head`, sent on a new connection.
    pub(crate) async fn send_head(&self, head: &str) -> String {
        send_head(self.addr, head).await
    }
}

/// The whole answer to a plain `GET path` at `addr`.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> String {
    send_head(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await
}

/// The whole answer to `head`, sent to `addr` on a new connection.
pub(crate) async fn send_head(addr: SocketAddr, head: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut out = String::new();
    timeout(WAIT, tcp.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn assert_echoes(ws: &mut WebSocket<ClientStream>, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    let echoed = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::text(text));
}

/// `wshub serve FLAG VALUE` exits 2 with a message naming the flag and
/// saying `fix`.
pub(crate) fn assert_flag_refused(flag: &str, value: &str, fix: &str) {
    let (code, stderr) = run(&["serve", "--listen", "127.0.0.1:0", flag, value]);
    assert_eq!(code, Some(2), "{flag} {value}: {stderr}");
    assert!(
        stderr.contains(flag) && stderr.contains(fix),
        "{flag} {value}: {stderr}"
    );
}

/// `wshub` with `args`, run to its end: exit code and stderr.
pub(crate) fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wshub"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends SIGTERM to `pid`.
pub(crate) fn sigterm(pid: u32) {
    signal(pid, "TERM");
}

/// Sends the signal named `name` (`TERM`, `HUP`) to `pid`.
pub(crate) fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits up to `within` for the process to exit.
pub(crate) async fn exit_within(server: &mut Server, within: Duration) -> std::process::ExitStatus {
    let exited = async {
        loop {
            if let Some(status) = server.child_status() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(within, exited).await.expect("exited in time")
}

/// Starts `command` with stdin, stdout and stderr piped; stdout and
/// stderr line by line, as threads read them (each channel closes at its
/// pipe's end).
pub(crate) fn spawn_piped(
    mut command: Command,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    std::sync::mpsc::Receiver<String>,
) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wshub runs");
    let stdout = pipe_lines(child.stdout.take().unwrap());
    let stderr = pipe_lines(child.stderr.take().unwrap());
    (child, stdout, stderr)
}

fn pipe_lines(pipe: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
