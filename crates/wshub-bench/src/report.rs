//! The results of a run: serializable for `--json`, printable for people.
//!
//! Rates are per second of the measured window (the warm-up excluded). MB
//! are 10^6 bytes. Latencies are in microseconds.

use std::fmt;

use serde::Serialize;

use crate::stats::Latency;
use crate::Config;

/// A finished run.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// The server's URL.
    pub url: String,
    /// Worker threads used.
    pub threads: usize,
    /// Warm-up, seconds (not for `idle`).
    pub warmup_secs: f64,
    /// Measured window, seconds (for `idle`, the hold).
    pub duration_secs: f64,
    /// No error, mismatch, failure, loss or reordering: the exit code is 0.
    pub passed: bool,
    /// What the mode measured.
    #[serde(flatten)]
    pub results: Results,
}

impl Report {
    pub(crate) fn new(config: &Config, results: Results) -> Self {
        let (warmup, duration) = match &results {
            Results::Idle(idle) => (0.0, idle.hold_secs),
            _ => (config.warmup.as_secs_f64(), config.duration.as_secs_f64()),
        };
        Self {
            url: config.url.clone(),
            threads: config.threads,
            warmup_secs: warmup,
            duration_secs: duration,
            passed: results.passed(),
            results,
        }
    }

    /// The process exit code this run deserves: 0 if it [passed](Report::passed), else 1.
    pub fn exit_code(&self) -> i32 {
        if self.passed {
            0
        } else {
            1
        }
    }
}

/// One mode's results. Serialized with a `mode` field naming the variant.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Results {
    /// From [`Mode::Echo`](crate::Mode::Echo).
    Echo(EchoReport),
    /// From [`Mode::Connect`](crate::Mode::Connect).
    Connect(ConnectReport),
    /// From [`Mode::Idle`](crate::Mode::Idle).
    Idle(IdleReport),
    /// From [`Mode::Fanout`](crate::Mode::Fanout).
    Fanout(FanoutReport),
}

impl Results {
    fn passed(&self) -> bool {
        match self {
            Self::Echo(r) => r.mismatches == 0 && r.connection_errors == 0,
            Self::Connect(r) => r.failures == 0,
            Self::Idle(r) => r.failed == 0 && r.dropped == 0 && r.errors == 0,
            Self::Fanout(r) => {
                r.lost == 0
                    && r.out_of_order == 0
                    && r.errors == 0
                    && r.failed == 0
                    && r.disconnected == 0
                    && r.delivery.verified()
            }
        }
    }
}

/// Echo results.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct EchoReport {
    /// Connections asked for.
    pub connections: usize,
    /// Connections that opened.
    pub connections_open: u64,
    /// Payload per message, bytes.
    pub size: usize,
    /// Binary messages (else text).
    pub binary: bool,
    /// Messages outstanding per connection.
    pub in_flight: usize,
    /// Echoes received intact in the measured window.
    pub messages: u64,
    /// `messages` per second.
    pub messages_per_sec: f64,
    /// Payload throughput one way, MB/s (10^6 bytes): `messages_per_sec × size`.
    /// The same bytes also travel back, so the link carries twice this.
    pub payload_mb_per_sec_one_way: f64,
    /// Round trip from queuing a message to reading the end of its echo.
    pub round_trip: Latency,
    /// Echoes that differed from what was sent (type, bytes, length or order).
    pub mismatches: u64,
    /// Connections that failed to open or broke (including unclean closes).
    pub connection_errors: u64,
    /// The first mismatch or error, described.
    pub first_error: Option<String>,
}

/// Connect results.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ConnectReport {
    /// Loops running at once.
    pub concurrency: usize,
    /// Complete cycles (open, upgrade, close handshake) in the measured window.
    pub handshakes: u64,
    /// `handshakes` per second.
    pub handshakes_per_sec: f64,
    /// TCP connect to validated 101 response.
    pub handshake_latency: Latency,
    /// Cycles that failed, warm-up included.
    pub failures: u64,
    /// The first failure, described.
    pub first_error: Option<String>,
}

/// Idle results.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct IdleReport {
    /// Connections asked for.
    pub connections: usize,
    /// Handshakes in progress at once while opening.
    pub handshake_concurrency: usize,
    /// Connections that opened.
    pub opened: u64,
    /// Connections that did not open.
    pub failed: u64,
    /// Seconds from the first connect to the last connection open.
    pub open_secs: f64,
    /// Seconds all connections were held.
    pub hold_secs: f64,
    /// Connections the server closed or broke before the end of the hold.
    pub dropped: u64,
    /// Pings the server sent, all answered.
    pub pings_answered: u64,
    /// The server process sampled, if any.
    pub pid: Option<u32>,
    /// Server RSS before the first connection, KiB.
    pub rss_before_kib: Option<u64>,
    /// Server RSS once all connections were open, KiB.
    pub rss_open_kib: Option<u64>,
    /// Server RSS at the end of the hold, KiB.
    pub rss_end_kib: Option<u64>,
    /// `(rss_open − rss_before) / opened`, KiB.
    pub kib_per_connection: Option<f64>,
    /// `(rss_end − rss_before) / opened`, KiB: what the connections cost
    /// after the hold, for instance after a keepalive round let a server give
    /// back buffers a burst grew.
    pub kib_per_connection_end: Option<f64>,
    /// Errors of any kind (failed opens, drops, unclean closes).
    pub errors: u64,
    /// The first error, described.
    pub first_error: Option<String>,
}

/// Fan-out results.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FanoutReport {
    /// Subscribers asked for.
    pub subscribers: usize,
    /// Subscribers that joined the room.
    pub joined: u64,
    /// Subscribers that could not connect or join.
    pub failed: u64,
    /// Subscribers whose connection ended before the run did.
    pub disconnected: u64,
    /// The room used.
    pub room: String,
    /// Bytes of each published message (the JSON string, quotes excluded).
    pub size: usize,
    /// Publishes allowed ahead of the slowest member.
    pub window: usize,
    /// Publishes per second asked for; `None` is as fast as the window allows.
    pub rate: Option<f64>,
    /// Publishes sent in the measured window.
    pub published: u64,
    /// Publishes sent, warm-up included.
    pub published_total: u64,
    /// `published` per second.
    pub publishes_per_sec: f64,
    /// Messages received by subscribers in the measured window.
    pub deliveries: u64,
    /// `deliveries` per second.
    pub deliveries_per_sec: f64,
    /// Publish (stamp written) to receive (read from the socket).
    pub latency: Latency,
    /// The URL the publisher joined at.
    pub publisher_url: String,
    /// The subscribers' URLs, in the order given, and what happened at each:
    /// subscriber `i` joined at the URL `i % urls.len()`.
    pub urls: Vec<UrlReport>,
    /// Messages a subscriber never received: `seq` gaps, and publishes it had
    /// not seen by the end.
    pub lost: u64,
    /// Deliveries whose `seq` was not above the last one seen.
    pub out_of_order: u64,
    /// The check of every delivery's `epoch` and `offset`.
    pub delivery: DeliveryReport,
    /// The subscribers' resumes; `None` when they were off. (Boxed: most
    /// runs have none, and [`Results`] keeps its variants close in size.)
    pub resume: Option<Box<ResumeReport>>,
    /// Errors of any kind (hub errors, closes, failed joins).
    pub errors: u64,
    /// The first error, described.
    pub first_error: Option<String>,
}

/// Subscribers that dropped their connection and resumed (docs/protocol.md,
/// "History and resume").
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ResumeReport {
    /// Share of the subscribers told to resume each round.
    pub share: f64,
    /// Seconds between rounds.
    pub every_secs: f64,
    /// Subscribers reconnected to the next URL rather than their own.
    pub elsewhere: bool,
    /// `join`s with `since` answered with `joined`.
    pub resumes: u64,
    /// Of those, answered `recovered: true`: the missed messages followed,
    /// each checked as any delivery (so a gap or a duplicate in a replay is
    /// in [`FanoutReport::delivery`]).
    pub recovered: u64,
    /// Of those, answered `recovered: false` (or without `recovered`):
    /// nothing was replayed. Not counted as lost, but messages missed all
    /// the same.
    pub not_recovered: u64,
    /// Messages the resumes not recovered went without: from the last one
    /// received to the `joined` answer's offset (within one epoch).
    pub skipped: u64,
    /// Messages replayed after recovered resumes (not in
    /// [`FanoutReport::deliveries`] nor its latency).
    pub replayed: u64,
    /// Reconnections or `join`s that failed; each is also an error and a
    /// disconnected subscriber.
    pub failed: u64,
    /// From dropping the connection to the first live message after the
    /// resume (after the replay, if any).
    pub disconnect_to_live: Latency,
}

impl fmt::Display for ResumeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:.0} % of subscribers every {}{}): {} recovered, {} not recovered ({} messages skipped), {} failed; {} messages replayed",
            thousands(self.resumes as f64),
            self.share * 100.0,
            Micros(self.every_secs * 1e6),
            if self.elsewhere { ", to the next URL" } else { "" },
            thousands(self.recovered as f64),
            thousands(self.not_recovered as f64),
            thousands(self.skipped as f64),
            thousands(self.failed as f64),
            thousands(self.replayed as f64),
        )
    }
}

/// The subscribers of one URL.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct UrlReport {
    /// The URL.
    pub url: String,
    /// Subscribers assigned to it.
    pub subscribers: u64,
    /// Of those, the ones that joined the room.
    pub joined: u64,
    /// Resumes answered at this URL (`joined` to a `join` with `since`).
    pub resumes: u64,
    /// Messages received on connections to it in the measured window (part
    /// of [`FanoutReport::deliveries`]).
    pub deliveries: u64,
    /// `deliveries` per second.
    pub deliveries_per_sec: f64,
}

/// What the subscribers found checking each delivery's place in the room's
/// log (docs/protocol.md, "Delivery semantics"): each one tracks the last
/// offset it received, within its epoch.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct DeliveryReport {
    /// The run was asked to verify delivery (`FanoutConfig::verify`).
    pub verify: bool,
    /// Subscribers whose deliveries were checked: those that joined.
    pub subscribers: u64,
    /// Messages a subscriber did not receive: offsets skipped over (one more
    /// than one above the last), and publishes it had not received by the
    /// end. The same number as [`FanoutReport::lost`].
    pub lost: u64,
    /// Deliveries whose offset was not above the last one received: the
    /// same number as [`FanoutReport::out_of_order`].
    pub duplicated: u64,
    /// Subscribers with any `lost`.
    pub subscribers_with_lost: u64,
    /// Subscribers with any `duplicated`.
    pub subscribers_with_duplicated: u64,
    /// Deliveries under a new epoch: the room started again, and its
    /// offsets with it.
    pub epoch_changes: u64,
    /// Deliveries without `epoch` and `offset`, checked by `seq` alone (a
    /// server other than wshub's hub).
    pub unverified: u64,
}

impl DeliveryReport {
    /// Nothing lost or duplicated, and, when asked to verify, every delivery
    /// checked by its offset.
    pub fn verified(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && (!self.verify || self.unverified == 0)
    }
}

impl fmt::Display for DeliveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let of = |n: u64| {
            if n == 0 {
                String::new()
            } else {
                format!(" ({} subscriber{})", thousands(n as f64), plural(n))
            }
        };
        write!(
            f,
            "{} lost{}, {} duplicated{} across {} subscriber{}",
            thousands(self.lost as f64),
            of(self.subscribers_with_lost),
            thousands(self.duplicated as f64),
            of(self.subscribers_with_duplicated),
            thousands(self.subscribers as f64),
            plural(self.subscribers),
        )?;
        if self.epoch_changes > 0 {
            write!(
                f,
                ", {} epoch changes",
                thousands(self.epoch_changes as f64)
            )?;
        }
        if self.unverified > 0 {
            write!(
                f,
                ", {} deliveries without epoch and offset (checked by seq only)",
                thousands(self.unverified as f64)
            )?;
        }
        Ok(())
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Formats a count or rate with thousands separators, e.g. `1,234,567`.
pub(crate) fn thousands(value: f64) -> String {
    let n = value.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

struct Micros(f64);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0;
        if us >= 1_000_000.0 {
            write!(f, "{:.2} s", us / 1e6)
        } else if us >= 1_000.0 {
            write!(f, "{:.2} ms", us / 1e3)
        } else {
            write!(f, "{us:.0} µs")
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.samples == 0 {
            return f.write_str("no samples");
        }
        write!(
            f,
            "p50 {}  p90 {}  p99 {}  max {}",
            Micros(self.p50_us),
            Micros(self.p90_us),
            Micros(self.p99_us),
            Micros(self.max_us)
        )
    }
}

fn opt_kib(v: Option<u64>) -> String {
    v.map_or_else(
        || "-".to_owned(),
        |k| format!("{} KiB", thousands(k as f64)),
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let threads = if self.threads == 1 {
            "1 thread".to_owned()
        } else {
            format!("{} threads", self.threads)
        };
        let first_error = |f: &mut fmt::Formatter<'_>, e: &Option<String>| match e {
            Some(e) => writeln!(f, "  first error   {e}"),
            None => Ok(()),
        };
        match &self.results {
            Results::Echo(r) => {
                writeln!(
                    f,
                    "echo {}: {} connections ({} open), {} B {}, {} in flight each, {threads}, {} s measured after {} s warm-up",
                    self.url,
                    r.connections,
                    r.connections_open,
                    r.size,
                    if r.binary { "binary" } else { "text" },
                    r.in_flight,
                    self.duration_secs,
                    self.warmup_secs
                )?;
                writeln!(
                    f,
                    "  messages      {} ({}/s)",
                    thousands(r.messages as f64),
                    thousands(r.messages_per_sec)
                )?;
                writeln!(
                    f,
                    "  payload       {:.2} MB/s each way ({:.2} MB/s both ways; MB = 10^6 bytes)",
                    r.payload_mb_per_sec_one_way,
                    2.0 * r.payload_mb_per_sec_one_way
                )?;
                writeln!(f, "  round trip    {}", r.round_trip)?;
                writeln!(
                    f,
                    "  errors        {} mismatched echoes, {} connection errors",
                    r.mismatches, r.connection_errors
                )?;
                first_error(f, &r.first_error)?;
            }
            Results::Connect(r) => {
                writeln!(
                    f,
                    "connect {}: {} concurrent loops, {threads}, {} s measured after {} s warm-up",
                    self.url, r.concurrency, self.duration_secs, self.warmup_secs
                )?;
                writeln!(
                    f,
                    "  handshakes    {} ({}/s), each with a clean close",
                    thousands(r.handshakes as f64),
                    thousands(r.handshakes_per_sec)
                )?;
                writeln!(f, "  handshake     {}", r.handshake_latency)?;
                writeln!(f, "  failures      {}", r.failures)?;
                first_error(f, &r.first_error)?;
            }
            Results::Idle(r) => {
                writeln!(
                    f,
                    "idle {}: {} connections, {} handshakes at a time, held {} s, {threads}",
                    self.url, r.connections, r.handshake_concurrency, r.hold_secs
                )?;
                writeln!(
                    f,
                    "  opened        {} in {:.2} s ({} failed), {} dropped during the hold",
                    thousands(r.opened as f64),
                    r.open_secs,
                    r.failed,
                    r.dropped
                )?;
                writeln!(f, "  pings         {} answered", r.pings_answered)?;
                if let Some(pid) = r.pid {
                    writeln!(
                        f,
                        "  server RSS    pid {pid}: {} before, {} all open, {} at the end",
                        opt_kib(r.rss_before_kib),
                        opt_kib(r.rss_open_kib),
                        opt_kib(r.rss_end_kib)
                    )?;
                    match (r.kib_per_connection, r.kib_per_connection_end) {
                        (Some(k), Some(end)) => writeln!(
                            f,
                            "  per conn      {k:.2} KiB of server RSS all open, {end:.2} KiB at the end"
                        )?,
                        (Some(k), None) => writeln!(f, "  per conn      {k:.2} KiB of server RSS")?,
                        _ => writeln!(f, "  per conn      -")?,
                    }
                }
                writeln!(f, "  errors        {}", r.errors)?;
                first_error(f, &r.first_error)?;
            }
            Results::Fanout(r) => {
                let rate = match r.rate {
                    Some(rate) => format!("{}/s", thousands(rate)),
                    None => format!("as fast as a window of {} allows", r.window),
                };
                writeln!(
                    f,
                    "fanout {}: room {:?}, {} subscribers ({} joined), {} B messages, publishing {rate}, {threads}, {} s measured after {} s warm-up",
                    self.url,
                    r.room,
                    r.subscribers,
                    r.joined,
                    r.size,
                    self.duration_secs,
                    self.warmup_secs
                )?;
                writeln!(
                    f,
                    "  published     {} ({}/s)",
                    thousands(r.published as f64),
                    thousands(r.publishes_per_sec)
                )?;
                writeln!(
                    f,
                    "  deliveries    {} ({}/s)",
                    thousands(r.deliveries as f64),
                    thousands(r.deliveries_per_sec)
                )?;
                writeln!(f, "  latency       {}", r.latency)?;
                // One URL is the whole run, said above; several get a line each.
                if r.urls.len() > 1 || r.urls.first().is_some_and(|u| u.url != r.publisher_url) {
                    writeln!(f, "  publisher     {}", r.publisher_url)?;
                    for u in &r.urls {
                        writeln!(
                            f,
                            "  url           {}: {} of {} subscribers joined, {} deliveries ({}/s){}",
                            u.url,
                            thousands(u.joined as f64),
                            thousands(u.subscribers as f64),
                            thousands(u.deliveries as f64),
                            thousands(u.deliveries_per_sec),
                            if r.resume.is_some() {
                                format!(", {} resumes", thousands(u.resumes as f64))
                            } else {
                                String::new()
                            }
                        )?;
                    }
                }
                writeln!(
                    f,
                    "  lost          {}, out of order {}",
                    r.lost, r.out_of_order
                )?;
                writeln!(f, "  delivery      {}", r.delivery)?;
                if let Some(resume) = &r.resume {
                    writeln!(f, "  resumes       {resume}")?;
                    writeln!(
                        f,
                        "  resume time   {} (disconnect to first live message)",
                        resume.disconnect_to_live
                    )?;
                }
                writeln!(
                    f,
                    "  errors        {} ({} failed to join, {} disconnected)",
                    r.errors, r.failed, r.disconnected
                )?;
                first_error(f, &r.first_error)?;
            }
        }
        write!(
            f,
            "  result        {}",
            if self.passed { "ok" } else { "FAILED" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_000.0), "1,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn delivery_fails_on_loss_or_duplicates_and_under_verify_on_unchecked_deliveries() {
        let delivery = |lost, duplicated, unverified, verify| DeliveryReport {
            verify,
            subscribers: 3,
            lost,
            duplicated,
            subscribers_with_lost: u64::from(lost > 0),
            subscribers_with_duplicated: u64::from(duplicated > 0),
            epoch_changes: 0,
            unverified,
        };
        assert!(delivery(0, 0, 0, true).verified());
        assert!(!delivery(2, 0, 0, false).verified());
        assert!(!delivery(0, 1, 0, false).verified());
        assert!(delivery(0, 0, 5, false).verified());
        assert!(!delivery(0, 0, 5, true).verified());
        assert_eq!(
            delivery(0, 0, 0, true).to_string(),
            "0 lost, 0 duplicated across 3 subscribers"
        );
        assert_eq!(
            delivery(2, 1, 0, true).to_string(),
            "2 lost (1 subscriber), 1 duplicated (1 subscriber) across 3 subscribers"
        );
    }

    #[test]
    fn json_names_the_mode_and_says_whether_it_passed() {
        let config = Config::new("ws://a/", crate::Mode::Connect(Default::default()));
        let report = Report::new(
            &config,
            Results::Connect(ConnectReport {
                concurrency: 1,
                handshakes: 10,
                handshakes_per_sec: 1.0,
                handshake_latency: Latency::from_histogram(&crate::stats::histogram()),
                failures: 1,
                first_error: Some("timed out".into()),
            }),
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["mode"], "connect");
        assert_eq!(json["passed"], false);
        assert_eq!(json["handshakes"], 10);
        assert_eq!(report.exit_code(), 1);
        assert!(report.to_string().contains("FAILED"));
    }
}
