//! `wshub serve`'s limits, run as the real binary: the admission flags,
//! the open-file limit, and shutdown. Servers listen on 127.0.0.1:0.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{assert_echoes, assert_flag_refused, exit_within, run, sigterm, Server, WAIT};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wshub::{CloseCode, Message};

#[tokio::test]
async fn serve_derives_max_connections_from_the_raised_open_file_limit() {
    let server = Server::start(&[]);
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    let line = server.log.wait_for("connection limits");
    let expected = wshub_hub::max_connections_for(hard);
    for field in [
        format!("open_files={hard}"),
        format!("max_connections={expected}"),
        "max_connections_per_ip=1000".to_owned(),
        "handshakes_per_ip=100".to_owned(),
    ] {
        assert!(line.contains(&field), "{field} not in {line}");
    }
}

/// A cap no open-file limit can hold (fs.nr_open is at most 2^30 on
/// Linux) stops `serve` at start, saying what to change, instead of
/// `accept` failing once the descriptors run out.
#[test]
fn max_connections_beyond_the_open_file_limit_exits_2_at_start() {
    assert_flag_refused(
        "--max-connections",
        "4000000000",
        "or raise the hard limit to at least",
    );
}

#[tokio::test]
async fn serve_flags_set_the_caps_and_the_next_connection_gets_503() {
    let server = Server::start(&["--max-connections-per-ip", "1", "--max-connections", "5"]);
    let mut first = server.echo_client().await.unwrap();
    let refused = server.get("/healthz").await;
    assert!(
        refused.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{refused}"
    );
    assert!(refused.contains("\r\nRetry-After: 5\r\n"), "{refused}");
    assert!(server.echo_client().await.is_err());
    server.log.wait_for("limit=\"max_connections_per_ip\"");
    assert_echoes(&mut first, "still here").await;
    timeout(WAIT, first.close(CloseCode::NormalClosure, ""))
        .await
        .unwrap()
        .unwrap();
    let healthy = async {
        loop {
            if server.get("/healthz").await.starts_with("HTTP/1.1 200") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(WAIT, healthy)
        .await
        .expect("the slot freed in time");
}

#[test]
fn bad_admission_flags_exit_2_and_say_what_to_fix() {
    for (flag, value) in [
        ("--max-connections", "many"),
        ("--max-connections-per-ip", "-1"),
        ("--handshakes-per-ip", "1.5"),
    ] {
        let arg = format!("{flag}={value}");
        let (code, stderr) = run(&["serve", "--listen", "127.0.0.1:0", &arg]);
        assert_eq!(code, Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
}

/// utime + stime of process `pid`, in clock ticks (/proc/PID/stat fields 14
/// and 15, counted after the parenthesised command name).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // fields[0] is field 3 (state), so utime (14) and stime (15) are 11, 12.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Under `ulimit -n 64`, connections that never send a request head use
/// up the descriptors: the hub backs off (one log line a second, with a
/// count of those left out, and no spinning), a new request waits in the
/// backlog, and once the idle connections go the hub serves again.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn out_of_file_descriptors_the_hub_backs_off_and_serves_again_once_they_free() {
    let mut sh = Command::new("sh");
    sh.args([
        "-c",
        r#"ulimit -n 64; exec "$0" "$@""#,
        env!("CARGO_BIN_EXE_wshub"),
    ]);
    let mut server = Server::start_with(sh, &["--handshake-timeout", "60s", "--workers", "1"]);
    server.log.wait_for("open_files=64");
    let mut idle = Vec::new();
    for _ in 0..80 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let first = server.log.wait_for_nth("accept failed", 1);
    assert!(first.contains("suppressed=0"), "{first}");
    let ticks = cpu_ticks(server.pid());
    let addr = server.addr;
    let waiting = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        tcp.write_all(request).await.unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.unwrap();
        out
    });
    // The next line comes a second later and counts the failures it left
    // out (the old loop logged each one, every 50 ms).
    let second = server.log.wait_for_nth("accept failed", 2);
    assert!(
        second.contains("suppressed=") && !second.contains("suppressed=0"),
        "{second}"
    );
    // Backing off, not spinning: well under a second of CPU over that
    // second and more (a busy loop would use all of it).
    let used = cpu_ticks(server.pid()) - ticks;
    assert!(used < 50, "{used} ticks of CPU while out of descriptors");
    assert!(
        !waiting.is_finished(),
        "a request was served with no descriptor free"
    );
    assert_eq!(server.child_status(), None, "the hub is still running");
    drop(idle);
    let answer = timeout(WAIT, waiting).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let mut ws = server.echo_client().await.unwrap();
    assert_echoes(&mut ws, "back").await;
}

/// An `/echo` client that sends 64 KiB messages and never reads, until a
/// send has waited 200 ms (both ways full: the hub is stuck writing to
/// it) or 64 MiB are out. Keeps the connection open while the test runs.
async fn stuck_writer(server: &Server) -> tokio::task::JoinHandle<()> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let url = format!("ws://{}/echo", server.addr);
    let mut ws = timeout(WAIT, wshub::ClientBuilder::new(url).connect_on(tcp))
        .await
        .unwrap()
        .unwrap();
    let (stuck_tx, stuck_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let chunk = Message::binary(vec![0u8; 64 << 10]);
        for _ in 0..1024 {
            let sent = timeout(Duration::from_millis(200), ws.send(chunk.clone())).await;
            if !matches!(sent, Ok(Ok(()))) {
                break;
            }
        }
        let _ = stuck_tx.send(());
        // Hold the connection, unread, until the test ends.
        std::future::pending::<()>().await;
        drop(ws);
    });
    timeout(WAIT * 3, stuck_rx).await.unwrap().unwrap();
    task
}

/// SIGTERM: every client that reads gets Close 1001; clients the hub is
/// stuck writing to do not hold it past `--shutdown-timeout`; the process
/// exits 0.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_reading_clients_with_1001_and_exits_0_within_the_shutdown_timeout() {
    let mut server = Server::start(&["--shutdown-timeout", "2s"]);
    let mut readers = Vec::new();
    for _ in 0..3 {
        let mut ws = server.echo_client().await.unwrap();
        assert_echoes(&mut ws, "hello").await;
        readers.push(ws);
    }
    for _ in 0..2 {
        let url = format!("ws://{}/ws", server.addr);
        let mut ws = timeout(WAIT, wshub::connect(&url)).await.unwrap().unwrap();
        let welcome = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        assert!(matches!(welcome, Message::Text(_)));
        readers.push(ws);
    }
    let _stuck = [stuck_writer(&server).await, stuck_writer(&server).await];
    sigterm(server.pid());
    for ws in &mut readers {
        let rest = async { while let Some(Ok(_)) = ws.next().await {} };
        timeout(WAIT, rest).await.expect("the stream ends");
        let event = ws.close_event().expect("a Close frame");
        assert_eq!((event.code.as_u16(), event.was_clean), (1001, true));
    }
    // 2 s of shutdown timeout, and a wide margin for a loaded machine.
    let status = exit_within(&mut server, Duration::from_secs(12)).await;
    assert_eq!(status.code(), Some(0), "{status}");
    server.log.wait_for("stopped");
}

/// A connection still sending its request head does not hold shutdown up:
/// nothing was promised to it. The old loop waited for it (here up to the
/// 60 s shutdown timeout).
#[cfg(unix)]
#[tokio::test]
async fn sigterm_does_not_wait_for_handshakes_under_way() {
    let mut server = Server::start(&["--shutdown-timeout", "60s", "--handshake-timeout", "60s"]);
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /echo HTTP/1.1\r\n").await.unwrap();
    let mut ws = server.echo_client().await.unwrap();
    assert_echoes(&mut ws, "hello").await;
    sigterm(server.pid());
    let status = exit_within(&mut server, WAIT).await;
    assert_eq!(status.code(), Some(0), "{status}");
    let mut rest = Vec::new();
    let read = timeout(WAIT, half.read_to_end(&mut rest)).await.unwrap();
    assert!(
        read.is_err() || rest.is_empty(),
        "nothing answered: {rest:?}"
    );
}

#[tokio::test]
async fn trusted_proxy_flags_name_the_client_in_the_logs_and_bad_ones_exit_2() {
    let server = Server::start(&["--trusted-proxy", "127.0.0.0/8", "--trusted-proxy", "::1"]);
    let url = format!("ws://{}/echo", server.addr);
    let client = wshub::ClientBuilder::new(url).header("X-Forwarded-For", "203.0.113.5");
    let mut ws = timeout(WAIT, client.connect()).await.unwrap().unwrap();
    assert_echoes(&mut ws, "hello").await;
    server.log.wait_for("client=203.0.113.5");

    for (value, fix) in [
        ("proxy.local", "not an IP address"),
        ("10.0.0.1/8", "the network is 10.0.0.0/8"),
        ("10.0.0.0/40", "up to 32"),
    ] {
        assert_flag_refused("--trusted-proxy", value, fix);
    }
}

#[tokio::test]
async fn no_echo_answers_404_on_echo_and_the_hub_still_serves() {
    let server = Server::start(&["--no-echo"]);
    let answer = server.get("/echo").await;
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
    assert!(server.echo_client().await.is_err());
    let page = server.get("/").await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("\r\nX-Frame-Options: DENY\r\n"), "{page}");
    assert!(
        page.contains("\r\nContent-Security-Policy: default-src 'self'; "),
        "{page}"
    );
    let url = format!("ws://{}/ws", server.addr);
    assert!(timeout(WAIT, wshub::connect(&url)).await.unwrap().is_ok());
}

#[tokio::test]
async fn a_flood_of_bad_requests_logs_twenty_lines_a_second_and_counts_the_rest() {
    let server = Server::start(&["--max-connections-per-ip", "0", "--handshakes-per-ip", "0"]);
    const BAD: usize = 300;
    let started = std::time::Instant::now();
    for _ in 0..BAD {
        let answer = server.send_head("NOT HTTP\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    }
    let seconds = started.elapsed().as_secs() + 1;
    // A bad request after a second's pause is logged, with how many the
    // budget left out before it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    server.send_head("NOT HTTP\r\n\r\n").await;
    // Lines logged, and lines they say were left out.
    let tally = || {
        let text = server.log.text.lock().unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("bad HTTP request"))
            .collect();
        let suppressed: u64 = lines
            .iter()
            .filter_map(|l| l.split("suppressed=").nth(1))
            .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        (lines.len() as u64, suppressed)
    };
    let waited = std::time::Instant::now();
    while tally().0 + tally().1 < BAD as u64 + 1 && waited.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (logged, suppressed) = tally();
    assert!(
        logged <= 20 * (seconds + 1),
        "{logged} lines for {BAD} bad requests in {seconds} s"
    );
    assert!(
        suppressed > 0,
        "the line after the flood counts what was left out"
    );
    assert_eq!(
        logged + suppressed,
        BAD as u64 + 1,
        "every refusal is logged or counted"
    );
    // Still serving.
    let mut ws = server.echo_client().await.unwrap();
    assert_echoes(&mut ws, "still here").await;
}

/// An upgrade request for `path` with `origin` (if any), as a browser sends it.
fn upgrade_head(path: &str, host: &str, origin: Option<&str>) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    )
}

/// The status line of the answer to `head`, read up to the end of the head
/// (a 101 stays open).
async fn status_of(server: &Server, head: &str) -> String {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        let n = timeout(WAIT, tcp.read(&mut byte)).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
        answer.push(byte[0]);
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn cross_origin_handshakes_get_403_and_the_hubs_own_pages_and_listed_origins_pass() {
    let server = Server::start(&["--allowed-origin", "https://*.example.com"]);
    let host = server.addr.to_string();
    let own = format!("http://{host}");
    for path in ["/ws", "/echo"] {
        let cases = [
            (None, "101"),
            (Some(own.as_str()), "101"),
            (Some("https://app.example.com"), "101"),
            (Some("https://evil.example"), "403"),
            (Some("https://example.com"), "403"),
            (Some("null"), "403"),
        ];
        for (origin, status) in cases {
            let line = status_of(&server, &upgrade_head(path, &host, origin)).await;
            assert!(
                line.starts_with(&format!("HTTP/1.1 {status} ")),
                "{path} Origin {origin:?}: {line}"
            );
        }
    }
    let refused = server
        .send_head(&upgrade_head("/ws", &host, Some("https://evil.example")))
        .await;
    assert!(
        refused.ends_with("Origin \"https://evil.example\" is not allowed\n"),
        "{refused}"
    );
    assert!(
        refused.contains("\r\nX-Frame-Options: DENY\r\n"),
        "{refused}"
    );
    server.log.wait_for("cross-origin handshake refused");
}

#[tokio::test]
async fn allowed_origin_star_turns_the_check_off_loudly_and_bad_origins_exit_2() {
    let server = Server::start(&["--allowed-origin", "*"]);
    server.log.wait_for("the Origin check is OFF");
    let host = server.addr.to_string();
    let line = status_of(
        &server,
        &upgrade_head("/ws", &host, Some("https://evil.example")),
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 101 "), "{line}");

    for (value, fix) in [
        ("app.example.com", "starts with its scheme"),
        ("https://app.example.com/chat", "no path"),
        ("https://app.*.com", "whole first label"),
    ] {
        assert_flag_refused("--allowed-origin", value, fix);
    }
}

/// The `THP_enabled` line of `/proc/PID/status` (Linux 5.0 and later):
/// `None` on a kernel without it.
#[cfg(target_os = "linux")]
fn thp_enabled(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("THP_enabled:"))?;
    Some(line["THP_enabled:".len()..].trim().to_owned())
}

/// An idle hub's heap is small blocks spread thin over mimalloc's arena;
/// with transparent huge pages, khugepaged collapses each 2 MiB of it into
/// a huge page (bench/README.md, "A million connections"). `wshub` turns
/// them off for itself, unless `MIMALLOC_ALLOW_THP` says otherwise.
#[cfg(target_os = "linux")]
#[test]
fn serve_runs_without_transparent_huge_pages_unless_mimalloc_allow_thp_says() {
    let server = Server::start(&[]);
    let Some(enabled) = thp_enabled(server.pid()) else {
        eprintln!("skipped: this kernel's /proc/PID/status has no THP_enabled");
        return;
    };
    assert_eq!(enabled, "0");
    let mut command = Command::new(env!("CARGO_BIN_EXE_wshub"));
    command.env("MIMALLOC_ALLOW_THP", "1");
    let server = Server::start_with(command, &[]);
    assert_eq!(
        thp_enabled(server.pid()).as_deref(),
        Some("1"),
        "MIMALLOC_ALLOW_THP=1 keeps them"
    );
}
