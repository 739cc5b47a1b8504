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

/// Flags of a run whose subscribers resume: 50 subscribers, a fifth of them
/// every 300 ms, for 2 s.
const RESUMING: [&str; 11] = [
    "-m",
    "50",
    "-d",
    "2s",
    "--warmup",
    "500ms",
    "--resume-share",
    "0.2",
    "--resume-every",
    "300ms",
    "--verify",
];

/// The hub, keeping enough history for a subscriber away while the
/// publisher runs flat out: by default a resume replays at most 300
/// messages (docs/protocol.md), which a debug build of the generator
/// publishes in a few tens of milliseconds.
fn hub_keeping_history(extra: &[&str]) -> Server {
    let mut flags = HUB_FLAGS.to_vec();
    flags.extend(["--history-size", "20000", "--history-max-replay", "20000"]);
    flags.extend(extra);
    Server::start(&flags)
}

#[test]
fn resumed_subscribers_get_every_missed_message_once_in_order() {
    let server = hub_keeping_history(&[]);
    let a = url(server.addr);
    let mut args = vec!["--url", &a];
    args.extend(RESUMING);
    let (code, report, stderr) = bench_fanout(&args);
    assert_eq!(code, Some(0), "{report:#}\n{stderr}");
    let resumes = n(&report, "resume.resumes");
    // A round at 0, 300, ..., 1800 ms of the window, 10 subscribers each.
    assert!(resumes >= 50, "{report:#}");
    assert_eq!(n(&report, "resume.recovered"), resumes, "{report:#}");
    assert_eq!(
        (
            n(&report, "resume.not_recovered"),
            n(&report, "resume.failed"),
        ),
        (0, 0),
        "{report:#}"
    );
    assert!(n(&report, "resume.replayed") > 0, "{report:#}");
    assert!(n(&report, "resume.disconnect_to_live.samples") > 0);
    assert!(
        report["resume"]["disconnect_to_live"]["p99_us"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(
        (
            n(&report, "delivery.lost"),
            n(&report, "delivery.duplicated"),
            n(&report, "delivery.unverified"),
            n(&report, "disconnected"),
            n(&report, "errors"),
        ),
        (0, 0, 0, 0, 0),
        "{report:#}"
    );
    assert_eq!(n(&report["urls"][0], "resumes"), resumes);
}

#[test]
fn resuming_elsewhere_moves_subscribers_to_the_next_url() {
    let server = hub_keeping_history(&[]);
    let (a, b) = (url(server.addr), other_url(server.addr));
    let mut args = vec!["--url", &a, "--url", &b, "--resume-elsewhere"];
    args.extend(RESUMING);
    let (code, report, stderr) = bench_fanout(&args);
    assert_eq!(code, Some(0), "{report:#}\n{stderr}");
    let resumes = n(&report, "resume.resumes");
    assert_eq!(n(&report, "resume.recovered"), resumes, "{report:#}");
    assert_eq!(report["resume"]["elsewhere"], true);
    let urls = report["urls"].as_array().unwrap();
    let (at_a, at_b) = (n(&urls[0], "resumes"), n(&urls[1], "resumes"));
    assert!(at_a > 0 && at_b > 0, "{report:#}");
    assert_eq!(at_a + at_b, resumes);
    assert_eq!(
        (
            n(&report, "delivery.lost"),
            n(&report, "delivery.duplicated")
        ),
        (0, 0),
        "{report:#}"
    );
}

#[test]
fn a_hub_without_history_answers_resumes_not_recovered_and_the_report_says_so() {
    let server = Server::start(&[HUB_FLAGS.as_slice(), &["--history-size", "0"]].concat());
    let a = url(server.addr);
    let mut args = vec!["--url", &a];
    args.extend(RESUMING);
    let (code, report, stderr) = bench_fanout(&args);
    let resumes = n(&report, "resume.resumes");
    assert!(resumes > 0, "{report:#}");
    // Nothing could be replayed: a resume that missed messages is answered
    // `recovered: false`, and what it missed is counted apart, not as gaps.
    // (One that missed nothing, the publisher waiting meanwhile, is
    // answered `recovered: true` even without history.)
    let not_recovered = n(&report, "resume.not_recovered");
    assert!(not_recovered > 0, "{report:#}");
    assert_eq!(
        n(&report, "resume.recovered") + not_recovered,
        resumes,
        "{report:#}"
    );
    assert_eq!(n(&report, "resume.replayed"), 0, "{report:#}");
    assert!(n(&report, "resume.skipped") > 0, "{report:#}");
    assert_eq!(
        (
            n(&report, "delivery.lost"),
            n(&report, "delivery.duplicated")
        ),
        (0, 0),
        "{report:#}"
    );
    // --verify fails on gaps and duplicates; a resume not recovered is
    // neither, and shows in the text report instead.
    assert_eq!(code, Some(0), "{report:#}\n{stderr}");
}

#[test]
fn the_text_report_says_what_delivery_and_resumes_came_to() {
    let server = hub_keeping_history(&[]);
    let a = url(server.addr);
    let out = Command::new(env!("CARGO_BIN_EXE_wshub"))
        .args(["bench", "fanout", "--url", &a, "--timeout", "10s"])
        .args([
            "-m",
            "10",
            "-d",
            "1s",
            "--warmup",
            "200ms",
            "--resume-share",
            "0.5",
            "--resume-every",
            "300ms",
            "--verify",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("  delivery      0 lost, 0 duplicated across 10 subscribers\n"),
        "{text}"
    );
    assert!(text.contains("  resumes       "), "{text}");
    assert!(
        text.contains(" 0 not recovered (0 messages skipped), 0 failed"),
        "{text}"
    );
    assert!(text.contains("  resume time   p50 "), "{text}");
}

/// Three real nodes on one real Redis (the issue's "3 hub nodes on one
/// Redis"), subscribers spread over them, the publisher on the first, and a
/// fifth of them every 300 ms resuming at the next node. The members are
/// `--named`: each node numbers its connections from 1, so anonymous
/// members on different nodes would be `anon-1`, `anon-2`, … twice over and
/// refused `name_taken` by the room's presence.
#[test]
fn named_subscribers_over_three_nodes_on_one_redis_get_everything_once_and_resume_elsewhere() {
    let redis = wshub_testkit::RedisServer::start(wshub_testkit::Options::default());
    let redis_url = redis.url();
    let nodes: Vec<Server> = (0..3)
        .map(|_| {
            let mut flags = HUB_FLAGS.to_vec();
            flags.extend(["--engine", "redis", "--redis-url", &redis_url]);
            flags.extend(["--history-size", "20000", "--history-max-replay", "20000"]);
            Server::start(&flags)
        })
        .collect();
    let urls: Vec<String> = nodes.iter().map(|node| url(node.addr)).collect();
    let mut args = vec!["--named", "--resume-elsewhere"];
    for u in &urls {
        args.extend(["--url", u.as_str()]);
    }
    args.extend(RESUMING);
    let (code, report, stderr) = bench_fanout(&args);
    assert_eq!(code, Some(0), "{report:#}\n{stderr}");
    assert_eq!(n(&report, "joined"), 50, "{report:#}");
    let per_url = report["urls"].as_array().unwrap();
    for (u, expected) in per_url.iter().zip([17, 17, 16]) {
        assert_eq!(n(u, "joined"), expected, "{report:#}");
        assert!(n(u, "deliveries") > 0, "{report:#}");
        assert!(n(u, "resumes") > 0, "{report:#}");
    }
    let resumes = n(&report, "resume.resumes");
    assert!(resumes > 0, "{report:#}");
    assert_eq!(n(&report, "resume.recovered"), resumes, "{report:#}");
    assert_eq!(
        (
            n(&report, "delivery.lost"),
            n(&report, "delivery.duplicated"),
            n(&report, "delivery.unverified"),
            n(&report, "errors"),
        ),
        (0, 0, 0, 0),
        "{report:#}"
    );
}
