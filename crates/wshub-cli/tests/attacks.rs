//! Attack replays against the real `wshub serve` (issue 12): each test
//! starts the binary on 127.0.0.1:0, plays one attack, and asserts the
//! server's own cost from /proc/<server pid>: CPU from `/proc/PID/stat`
//! (utime + stime) and memory from `/proc/PID/status` (VmRSS). Budgets are
//! generous multiples of what was measured (see each test); they catch a
//! cost that grows with the attack (quadratic parsing, unbounded buffering),
//! not noise. Every wait is bounded by a socket timeout or a deadline.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest any single step may take.
const WAIT: Duration = Duration::from_secs(10);

/// `/proc/PID/stat` counts CPU time in clock ticks of `USER_HZ`, which the
/// Linux ABI fixes at 100 per second.
const TICK: Duration = Duration::from_millis(10);

/// The `Sec-WebSocket-Key` of RFC 6455 §1.3.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A running `wshub serve`, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `wshub serve` on a free port of 127.0.0.1 with `args` added,
    /// on the current-thread runtime (one thread: its CPU time is the
    /// connection handling alone), and waits for its `listening on` line.
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wshub"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log", "error"])
            .args(["--runtime", "current-thread"])
            // Every replay comes from 127.0.0.1, thousands of requests a
            // second: the per-address admission limits (503) are off, so
            // what is measured is the protocol's own handling.
            .args(["--max-connections-per-ip", "0", "--handshakes-per-ip", "0"])
            .args(args)
            // mimalloc gives freed pages back to the kernel at once rather
            // than after its default delay, so that RSS read after a replay
            // shows what the server still holds, not what the allocator
            // keeps for reuse.
            .env("MIMALLOC_PURGE_DELAY", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the wshub binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(WAIT)
            .expect("wshub serve prints its address");
        let addr = line
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Self { child, addr }
    }

    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.child.id()))
            .expect("the server process is alive")
    }

    /// Resident memory, bytes (VmRSS).
    fn rss(&self) -> u64 {
        let status = self.proc_file("status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("a VmRSS line");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in kB");
        kib * 1024
    }

    /// Descriptors the server has open.
    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .expect("the server process is alive")
            .count()
    }

    /// CPU time used so far, user plus system.
    fn cpu(&self) -> Duration {
        let stat = self.proc_file("stat");
        // Fields after the command name, which is in parentheses and may hold
        // spaces: state is field 3, utime 14 and stime 15 (proc(5)).
        let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u32 = fields[11].parse::<u32>().unwrap() + fields[12].parse::<u32>().unwrap();
        TICK * ticks
    }

    /// The server's CPU time while `attack` runs, less what it used while
    /// idle for as long (the baseline: timers, the runtime's own wake-ups).
    fn cpu_for<T>(&self, attack: impl FnOnce() -> T) -> (Duration, T) {
        let before = self.cpu();
        let started = Instant::now();
        let out = attack();
        let used = self.cpu() - before;
        let idle_before = self.cpu();
        std::thread::sleep(started.elapsed().min(Duration::from_secs(2)));
        let idle = self.cpu() - idle_before;
        (used.saturating_sub(idle), out)
    }

    fn connect(&self) -> TcpStream {
        let tcp = TcpStream::connect_timeout(&self.addr, WAIT).expect("the server accepts");
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        tcp.set_write_timeout(Some(WAIT)).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp
    }

    /// A connection upgraded to WebSocket on `path`, ready for frames.
    fn upgrade(&self, path: &str) -> TcpStream {
        let mut tcp = self.connect();
        tcp.write_all(request(path, "").as_bytes()).unwrap();
        let head = read_head(&mut tcp);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        tcp
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebSocket opening handshake request for `path` with `extra` header
/// lines (each ending in CRLF).
fn request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Reads an HTTP head byte by byte, so nothing after it is consumed.
fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match tcp.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => panic!("EOF after {:?}", String::from_utf8_lossy(&head)),
            Err(e) => panic!("reading a head: {e}"),
        }
    }
    String::from_utf8(head).expect("an ASCII head")
}

/// Reads until the server closes the connection; `Err` on a read timeout.
fn read_to_eof(tcp: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    match tcp.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        // The server may reset rather than close once it lingered.
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(out),
        Err(e) => Err(e),
    }
}

/// One client-to-server frame, masked (RFC 6455 §5.2, §5.3): `first` is the
/// FIN/RSV/opcode byte.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![first];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    frame
}

/// Reads one unmasked server frame: its first byte and its payload.
fn read_frame(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).expect("a frame header");
    let len = match head[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            tcp.read_exact(&mut n).unwrap();
            u64::from(u16::from_be_bytes(n))
        }
        127 => {
            let mut n = [0u8; 8];
            tcp.read_exact(&mut n).unwrap();
            u64::from_be_bytes(n)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0; usize::try_from(len).unwrap()];
    tcp.read_exact(&mut payload).expect("the payload");
    (head[0], payload)
}

/// Raises the soft open-file limit to the hard one (the server, spawned
/// after, inherits it) and returns how many connections fit in it, up to
/// `wanted`.
fn connections_allowed(wanted: usize) -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    // The test binary runs other tests at the same time: leave room.
    wanted.min(
        usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(256),
    )
}

#[test]
fn a_16_kib_head_in_1_byte_writes_costs_the_server_linear_cpu() {
    let server = Server::start(&[]);
    // The server's CPU for `count` heads of about `len` bytes each, sent
    // one byte per write.
    let play = |count: usize, len: usize| {
        let padding = "a".repeat(len - 400);
        let head = request("/echo", &format!("X-Padding: {padding}\r\n"));
        assert!(head.len() < 16 * 1024, "{} bytes", head.len());
        let (cpu, ()) = server.cpu_for(|| {
            for _ in 0..count {
                let mut tcp = server.connect();
                for byte in head.as_bytes() {
                    tcp.write_all(std::slice::from_ref(byte)).unwrap();
                }
                let answer = read_head(&mut tcp);
                assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
            }
        });
        cpu
    };
    // The same bytes and writes both ways: four heads of 4 KiB, one of
    // 16 KiB.
    let small = play(4, 4 * 1024);
    let large = play(1, 16 * 1024);
    eprintln!(
        "heads in 1-byte writes: {small:?} of server CPU for 4 x 4 KiB, {large:?} for 16 KiB"
    );
    // The head is scanned once, however it is cut (HeadReader), and the
    // server reads what has arrived: the cost is per byte and per read, so
    // one long head costs what four short ones of the same bytes do
    // (rescanning the head on each read would cost about 4 times as much).
    // A ratio, not a time budget, as the reads per byte depend on how busy
    // the machine is (one read per byte when the server keeps up); the
    // slack covers the 10 ms resolution of /proc. 2026-12-06 on 2 cores,
    // with other tests running: 60 ms for the 16 KiB head.
    assert!(large <= small * 2 + TICK * 5, "{small:?} -> {large:?}");
}

#[test]
fn two_thousand_tiny_headers_get_431() {
    let server = Server::start(&[]);
    let headers = "a: b\r\n".repeat(2000);
    let (cpu, answer) = server.cpu_for(|| {
        let mut tcp = server.connect();
        tcp.write_all(request("/echo", &headers).as_bytes())
            .unwrap();
        read_head(&mut tcp)
    });
    assert!(
        answer.starts_with("HTTP/1.1 431 "),
        "too many header lines: {answer}"
    );
    eprintln!("2,000 headers: {cpu:?} of server CPU");
    assert!(cpu <= TICK * 5, "{cpu:?}");
}

/// `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions` values shaped to
/// trip a backtracking or rescanning parser, `len` bytes each.
fn pathological_values(len: usize) -> Vec<(&'static str, String)> {
    let run = |unit: &str| unit.repeat(len / unit.len());
    vec![
        ("Sec-WebSocket-Protocol", run("a,")),
        ("Sec-WebSocket-Protocol", run(",")),
        ("Sec-WebSocket-Protocol", run(" ,\t")),
        ("Sec-WebSocket-Protocol", format!("{}\"", run("a"))),
        ("Sec-WebSocket-Extensions", run(";")),
        ("Sec-WebSocket-Extensions", run("permessage-deflate;")),
        ("Sec-WebSocket-Extensions", run("permessage-deflate, ")),
        (
            "Sec-WebSocket-Extensions",
            format!("x; y=\"{}", run("\\\"")),
        ),
        ("Sec-WebSocket-Extensions", run("x; y=\"z\", ")),
        ("Sec-WebSocket-Extensions", format!("x{}", run("; a=b"))),
        ("Sec-WebSocket-Extensions", run("\"")),
    ]
}

#[test]
fn pathological_protocol_and_extension_values_cost_linear_time() {
    const ROUNDS: usize = 20;
    let server = Server::start(&[]);
    let play = |len: usize| {
        server
            .cpu_for(|| {
                for _ in 0..ROUNDS {
                    for (name, value) in pathological_values(len) {
                        let mut tcp = server.connect();
                        let head = request("/echo", &format!("{name}: {value}\r\n"));
                        tcp.write_all(head.as_bytes()).unwrap();
                        let answer = read_head(&mut tcp);
                        assert!(
                            answer.starts_with("HTTP/1.1 101 ")
                                || answer.starts_with("HTTP/1.1 400 "),
                            "{name}: {}...: {answer}",
                            &value[..16]
                        );
                    }
                }
            })
            .0
    };
    let n = 3000;
    let small = play(n);
    let large = play(4 * n);
    eprintln!(
        "pathological values: {small:?} at {n} B, {large:?} at {} B",
        4 * n
    );
    // Linear: 4 times the bytes cost at most about 4 times the CPU (a
    // quadratic parser would cost 16 times); the slack covers the 10 ms
    // resolution of /proc and the per-connection cost common to both.
    assert!(large <= small * 6 + TICK * 10, "{small:?} -> {large:?}");
    let requests = (ROUNDS * pathological_values(n).len()) as u32;
    assert!(large / requests <= Duration::from_millis(5), "{large:?}");
}

#[test]
fn messages_of_131072_one_byte_fragments_cost_memory_in_proportion_to_their_bytes() {
    const FRAGMENTS: usize = 128 << 10;
    // Several connections, so the wire bytes dwarf the 2 MiB steps in which
    // RSS grows when the kernel backs the heap with transparent huge pages.
    const CONNECTIONS: usize = 8;
    let server = Server::start(&[]);
    // Warm up: the first connection allocates what every later one shares.
    let mut warm = server.upgrade("/echo");
    warm.write_all(&client_frame(0x81, b"warm")).unwrap();
    assert_eq!(read_frame(&mut warm), (0x81, b"warm".to_vec()));
    drop(warm);
    let baseline = server.rss();

    let mut wire = client_frame(0x01, b"a");
    for _ in 1..FRAGMENTS - 1 {
        wire.extend_from_slice(&client_frame(0x00, b"a"));
    }
    let last = client_frame(0x80, b"a");
    let mut conns: Vec<TcpStream> = (0..CONNECTIONS).map(|_| server.upgrade("/echo")).collect();
    for tcp in &mut conns {
        tcp.write_all(&wire).unwrap();
        // A Ping between fragments (§5.4): its Pong says every byte before
        // it was taken in.
        tcp.write_all(&client_frame(0x89, b"sync")).unwrap();
        assert_eq!(read_frame(tcp), (0x8a, b"sync".to_vec()));
    }
    let held = server.rss();
    for tcp in &mut conns {
        tcp.write_all(&last).unwrap();
        let (first, payload) = read_frame(tcp);
        assert_eq!(first, 0x81);
        assert_eq!(payload, vec![b'a'; FRAGMENTS]);
    }

    let wire_bytes = (CONNECTIONS * (wire.len() + last.len())) as u64;
    let growth = held.saturating_sub(baseline);
    eprintln!(
        "{CONNECTIONS} messages of {FRAGMENTS} fragments, {wire_bytes} B on the wire: \
         server RSS grew {growth} B"
    );
    assert!(
        growth * 2 <= wire_bytes * 3,
        "RSS grew {growth} B for {wire_bytes} B on the wire"
    );
}

/// The slowloris test's `--handshake-timeout`: long enough that every
/// connection of a round is open at once when the peak is read, however
/// slowly a busy machine opens them, so that rounds compare.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a slowloris round saw of the server.
struct Round {
    /// RSS with every connection open and waiting for the rest of its head.
    waiting: u64,
    /// RSS once the server has closed them all (its descriptors are back to
    /// what they were before the round).
    after: u64,
}

/// Opens `count` connections whose request head never ends, and checks that
/// the server closes each (408, or just closed) by its handshake deadline.
fn slowloris_round(server: &Server, count: usize) -> Round {
    let fds_before = server.open_fds();
    let started = Instant::now();
    let mut conns: Vec<(Instant, TcpStream)> = (0..count)
        .map(|_| {
            let mut tcp = server.connect();
            // A head that never ends.
            tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .unwrap();
            (Instant::now(), tcp)
        })
        .collect();
    let all_open = started.elapsed();
    // All of them accepted and waiting, well before the first deadline.
    let deadline_of_first = HANDSHAKE_TIMEOUT.saturating_sub(all_open);
    assert!(
        deadline_of_first > Duration::from_secs(3),
        "opened too slowly: {all_open:?}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        server.open_fds() >= fds_before + count,
        "every connection accepted"
    );
    let waiting = server.rss();
    let mut longest = Duration::ZERO;
    for (opened, tcp) in &mut conns {
        let answer = read_to_eof(tcp).expect("the server closes the connection");
        // An upper bound: the connections are read one after another.
        longest = longest.max(opened.elapsed());
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408 "),
            "{answer}"
        );
    }
    assert!(longest <= HANDSHAKE_TIMEOUT + WAIT, "{longest:?}");
    drop(conns);
    // The server may still linger on some after its 408.
    let settled = Instant::now();
    while server.open_fds() > fds_before {
        assert!(
            settled.elapsed() < WAIT,
            "the server closes every connection"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = server.rss();
    eprintln!(
        "{count} slowloris connections opened in {all_open:?}, RSS {waiting} B with all waiting, \
         {after} B once all closed; each closed at most {longest:?} after it opened"
    );
    Round { waiting, after }
}

#[test]
fn slowloris_connections_are_all_closed_by_the_handshake_deadline() {
    let count = connections_allowed(10_000);
    let server = Server::start(&["--handshake-timeout", "10s"]);
    drop(server.upgrade("/echo"));
    std::thread::sleep(Duration::from_millis(200));
    let baseline = server.rss();
    let first = slowloris_round(&server, count);
    let second = slowloris_round(&server, count);
    eprintln!("RSS {baseline} B before the rounds");
    // Bounded while they wait: a few KiB per connection.
    let per_connection = first.waiting.saturating_sub(baseline) / count as u64;
    assert!(
        per_connection <= 16 << 10,
        "{per_connection} B per waiting connection"
    );
    // Nothing kept per closed connection: once they are gone RSS is back
    // near where it started (the allocator returns freed pages at once,
    // see `Server::start`; what remains is the runtime's and allocator's
    // own tables grown for 10,000 connections, which a second round reuses
    // rather than adds to). RSS moves in 2 MiB steps where the kernel backs
    // the heap with transparent huge pages.
    // 4 MiB: 0.4 KiB per connection of 10,000 (seen: +0.9 MiB, then +0.8).
    let slack = 4 << 20;
    assert!(
        first.after <= baseline + slack,
        "RSS {baseline} B before, {} B after the first round",
        first.after
    );
    assert!(
        second.after <= first.after + slack,
        "a second round grew RSS: {} B then {} B",
        first.after,
        second.after
    );
    assert!(
        second.waiting <= first.waiting + (8 << 20),
        "a second round held more: {} B then {} B",
        first.waiting,
        second.waiting
    );
    // Still serving.
    drop(server.upgrade("/echo"));
}

#[test]
fn a_ping_flood_from_a_peer_that_never_reads_gets_coalesced_pongs_and_bounded_memory() {
    const PINGS: usize = 50_000;
    let server = Server::start(&[]);
    drop(server.upgrade("/echo"));
    let baseline = server.rss();

    let mut tcp = server.upgrade("/echo");
    let ping = client_frame(0x89, &[b'p'; 125]);
    let batch = ping.repeat(1000);
    for _ in 0..PINGS / 1000 {
        tcp.write_all(&batch).unwrap();
    }
    // A message after the flood: its echo comes after every Pong owed.
    tcp.write_all(&client_frame(0x81, b"after the flood"))
        .unwrap();
    let flooded = (PINGS * ping.len()) as u64;
    let held = server.rss();

    let mut pongs = 0;
    loop {
        match read_frame(&mut tcp) {
            (0x8a, payload) => {
                assert_eq!(payload, [b'p'; 125]);
                pongs += 1;
            }
            (0x81, payload) => {
                assert_eq!(payload, b"after the flood");
                break;
            }
            (first, payload) => panic!("unexpected frame {first:#x} {payload:?}"),
        }
    }
    let growth = held.saturating_sub(baseline);
    eprintln!("{PINGS} Pings ({flooded} B): {pongs} Pongs, server RSS grew {growth} B");
    assert!(pongs > 0, "every Ping owed a Pong (RFC 6455 §5.5.2)");
    // §5.5.3: answering only the latest of several Pings is allowed.
    assert!(pongs * 4 <= PINGS, "{pongs} Pongs for {PINGS} Pings");
    assert!(growth <= 4 << 20, "RSS grew {growth} B");
}

#[test]
fn a_message_kept_open_by_pings_is_closed_with_1008_at_the_message_timeout() {
    // Any byte proves a peer alive to the keepalive; a message's first
    // fragment followed by nothing but Pings must still end by the deadline.
    let server = Server::start(&["--message-timeout", "2s"]);
    let mut tcp = server.upgrade("/echo");
    tcp.write_all(&client_frame(0x01, b"hel")).unwrap();
    let started = Instant::now();
    let mut pinger = tcp.try_clone().unwrap();
    let pings = std::thread::spawn(move || {
        // A Ping every 250 ms for 6 s, or until the server is gone.
        for _ in 0..24 {
            if pinger.write_all(&client_frame(0x89, b"alive")).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    let mut pongs = 0;
    let code = loop {
        match read_frame(&mut tcp) {
            (0x8a, payload) => {
                assert_eq!(payload, b"alive");
                pongs += 1;
            }
            (0x88, payload) => break u16::from_be_bytes([payload[0], payload[1]]),
            (first, payload) => panic!("unexpected frame {first:#x} {payload:?}"),
        }
    };
    let elapsed = started.elapsed();
    assert_eq!(code, 1008, "policy violation");
    assert!(pongs >= 4, "the Pings were answered meanwhile ({pongs})");
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(5),
        "closed {elapsed:?} after the first fragment, 2 s expected"
    );
    assert!(read_to_eof(&mut tcp)
        .expect("the server closes TCP")
        .is_empty());
    pings.join().unwrap();

    // With the bound off, the same message may take its time, and ends well.
    let server = Server::start(&["--message-timeout", "0s"]);
    let mut tcp = server.upgrade("/echo");
    tcp.write_all(&client_frame(0x01, b"hel")).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    tcp.write_all(&client_frame(0x80, b"lo")).unwrap();
    assert_eq!(read_frame(&mut tcp), (0x81, b"hello".to_vec()));
}

/// Reads server frames until a text message whose `"type"` is `kind`.
fn read_until_type(tcp: &mut TcpStream, kind: &str) -> String {
    let wanted = format!(r#""type":"{kind}""#);
    loop {
        let (first, payload) = read_frame(tcp);
        assert_eq!(first, 0x81, "a text frame");
        let text = String::from_utf8(payload).expect("UTF-8");
        if text.contains(&wanted) {
            return text;
        }
    }
}

/// `clients` hub members join `rooms_each` rooms of their own (all requests
/// sent at once, then every answer read), then leave them all; returns the
/// server's RSS with every room open.
fn room_churn_round(
    server: &Server,
    clients: &mut [TcpStream],
    rooms_each: usize,
    round: usize,
) -> u64 {
    let requests = |op: &str, c: usize| -> Vec<u8> {
        (0..rooms_each)
            .flat_map(|r| {
                let json = format!(r#"{{"op":"{op}","room":"churn-{round}-{c}-{r}"}}"#);
                client_frame(0x81, json.as_bytes())
            })
            .collect()
    };
    for (c, tcp) in clients.iter_mut().enumerate() {
        tcp.write_all(&requests("join", c)).unwrap();
        for _ in 0..rooms_each {
            read_until_type(tcp, "joined");
        }
    }
    let open = server.rss();
    for (c, tcp) in clients.iter_mut().enumerate() {
        tcp.write_all(&requests("leave", c)).unwrap();
        for _ in 0..rooms_each {
            read_until_type(tcp, "left");
        }
    }
    open
}

#[test]
fn ten_thousand_rooms_joined_and_left_leave_no_memory_behind() {
    const CLIENTS: usize = 100;
    // The default --max-rooms-per-member.
    const ROOMS_EACH: usize = 100;
    // Each client sends 200 requests at once: above the default rate limit.
    let server = Server::start(&["--message-rate", "100000", "--message-burst", "100000"]);
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut tcp = server.upgrade("/ws");
            read_until_type(&mut tcp, "welcome");
            tcp
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let baseline = server.rss();
    let open = room_churn_round(&server, &mut clients, ROOMS_EACH, 1);
    std::thread::sleep(Duration::from_millis(200));
    let after_first = server.rss();
    let open_again = room_churn_round(&server, &mut clients, ROOMS_EACH, 2);
    std::thread::sleep(Duration::from_millis(200));
    let after_second = server.rss();
    let rooms = (CLIENTS * ROOMS_EACH) as u64;
    eprintln!(
        "RSS {baseline} B with {CLIENTS} members, {open} B with {rooms} rooms open, \
         {after_first} B once left, {open_again} B with {rooms} other rooms, {after_second} B once left"
    );
    assert!(open > baseline, "the rooms took memory while open");
    // The rooms are freed when their last member leaves: RSS goes back near
    // where it started (the allocator returns freed pages at once, see
    // `Server::start`), and a second round of new names does not add to it.
    // 4 MiB: 0.4 KiB per room of 10,000, about half what a room costs while
    // open (0.7 KiB seen), so rooms kept after their last member left fail
    // it. (Debug builds left 1.1 to 3.9 MB behind from run to run.)
    let slack = 4 << 20;
    assert!(
        after_first <= baseline + slack,
        "RSS {baseline} B before, {after_first} B after 10,000 rooms came and went"
    );
    assert!(
        after_second <= after_first + slack,
        "a second round grew RSS: {after_first} B then {after_second} B"
    );
    assert!(
        open_again <= open + slack,
        "{open} B then {open_again} B open"
    );
}
