//! `wshub bench fanout`, the real binary, against a real `wshub serve`:
//! subscribers spread over several URLs, and every delivery's offset
//! checked (bench/README.md). Small runs (50 subscribers, 2 s); they check
//! counts and exit codes, never speed.

mod common;

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::Server;

/// The generator's publisher sends far over the hub's default message rate
/// (100 a second): raised past it, as bench/compare does.
const HUB_FLAGS: [&str; 4] = ["--message-rate", "1000000", "--message-burst", "1000000"];

/// Bound on one generator run: its own timeouts end it well before.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// `wshub bench fanout ARGS --json`: its exit code, its report and its stderr.
fn bench_fanout(args: &[&str]) -> (Option<i32>, Value, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wshub"))
        .args(["bench", "fanout", "--json", "--timeout", "10s"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            panic!("wshub bench fanout {args:?} ran over {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr:\n{stderr}"));
    (out.status.code(), report, stderr)
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

/// A second name for the server at `addr`: `localhost`, where it resolves
/// to the loopback address the server listens on (the generator takes a
/// name's first address), else the same address with a query.
fn other_url(addr: SocketAddr) -> String {
    let localhost = ("localhost", addr.port()).to_socket_addrs().ok();
    match localhost.and_then(|mut a| a.next()) {
        Some(SocketAddr::V4(v4)) if *v4.ip() == Ipv4Addr::LOCALHOST => {
            format!("ws://localhost:{}/ws", addr.port())
        }
        _ => format!("ws://{addr}/ws?node=2"),
    }
}

fn n(report: &Value, path: &str) -> u64 {
    let mut v = report;
    for part in path.split('.') {
        v = &v[part];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{path} is not a count in {report:#}"))
}

#[test]
fn subscribers_are_spread_round_robin_over_the_urls() {
    let server = Server::start(&HUB_FLAGS);
    let (a, b) = (url(server.addr), other_url(server.addr));
    let (code, report, stderr) = bench_fanout(&[
        "--url", &a, "--url", &b, "-m", "51", "-d", "2s", "--warmup", "500ms", "--verify",
    ]);
    assert_eq!(code, Some(0), "{report:#}\n{stderr}");
    assert_eq!(report["url"], a.as_str(), "the first URL names the run");
    assert_eq!(report["publisher_url"], a.as_str());
    let urls = report["urls"].as_array().unwrap();
    assert_eq!(urls.len(), 2, "{report:#}");
    assert_eq!((&urls[0]["url"], &urls[1]["url"]), (&a.into(), &b.into()));
    // Subscribers 0, 2, ..., 50 at the first URL; 1, 3, ..., 49 at the second.
    for (u, expected) in urls.iter().zip([26, 25]) {
        assert_eq!((n(u, "subscribers"), n(u, "joined")), (expected, expected));
        assert!(n(u, "deliveries") > 0, "{report:#}");
    }
    assert_eq!(
        n(&urls[0], "deliveries") + n(&urls[1], "deliveries"),
        n(&report, "deliveries")
    );
    assert_eq!(n(&report, "joined"), 51);
    assert_eq!(
        (
            n(&report, "delivery.subscribers"),
            n(&report, "delivery.lost"),
            n(&report, "delivery.duplicated"),
            n(&report, "delivery.unverified"),
        ),
        (51, 0, 0, 0),
        "{report:#}"
    );
    // The fields bench/compare reads are where they were.
    assert_eq!((n(&report, "lost"), n(&report, "out_of_order")), (0, 0));
    assert!(report["deliveries_per_sec"].as_f64().unwrap() > 0.0);
    assert!(report["latency"]["p99_us"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_publisher_may_join_at_a_url_of_its_own() {
    let server = Server::start(&HUB_FLAGS);
    let (a, b) = (url(server.addr), other_url(server.addr));
    let (code, report, stderr) = bench_fanout(&[
        "--url",
        &a,
        "--publisher-url",
        &b,
        "-m",
        "10",
        "-d",
        "1s",
        "--warmup",
        "200ms",
    ]);
    assert_eq!(code, Some(0), "{report:#}\n{stderr}");
    assert_eq!(report["publisher_url"], b.as_str());
    assert_eq!(report["urls"].as_array().unwrap().len(), 1);
    assert_eq!(n(&report["urls"][0], "joined"), 10);
    assert!(n(&report, "deliveries") > 0, "{report:#}");
}

#[test]
fn a_bad_publisher_url_names_its_flag() {
    let (code, stderr) = common::run(&[
        "bench",
        "fanout",
        "--publisher-url",
        "http://127.0.0.1:1/ws",
        "-m",
        "1",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--publisher-url"), "{stderr}");
}
