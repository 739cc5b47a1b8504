//! A WebSocket load generator that can be pointed at any server: the
//! library behind `wshub bench`.
//!
//! Four modes, each bounded in time:
//!
//! | mode | load | reports |
//! |---|---|---|
//! | [`Mode::Echo`] | N connections, P messages in flight each, every echo checked | messages/s, MB/s, round-trip percentiles, mismatches |
//! | [`Mode::Connect`] | C loops of connect, upgrade, close handshake | handshakes/s, handshake percentiles, failures |
//! | [`Mode::Idle`] | N connections opened K at a time, held answering Pings | server RSS per connection (`/proc/PID/status`) |
//! | [`Mode::Fanout`] | M subscribers of one hub room over one or more URLs, one publisher; optionally subscribers that drop and resume | deliveries/s (per URL too), publish→receive percentiles, lost and duplicated offsets, resumes recovered or not |
//!
//! The generator is built not to be the bottleneck: each worker thread is a
//! single-threaded tokio runtime (one by default); frames to send are
//! masked once before the run and written in batches with one write; replies
//! are parsed in place with wshub-proto's [`wshub_proto::frame::Decoder`] from
//! one read buffer per thread; nothing is allocated per message.
//!
//! ```no_run
//! use std::time::Duration;
//! use wshub_bench::{Config, EchoConfig, Mode};
//!
//! let mut echo = EchoConfig::default();
//! echo.in_flight = 16;
//! let mut config = Config::new("ws://127.0.0.1:8080/echo", Mode::Echo(echo));
//! config.duration = Duration::from_secs(5);
//! let report = wshub_bench::run(&config)?;
//! println!("{report}");                       // or serde_json::to_string(&report)
//! std::process::exit(report.exit_code());     // 1 on any mismatch or error
//! # Ok::<(), wshub_bench::Error>(())
//! ```
#![forbid(unsafe_code)]

mod client;
mod config;
mod connect;
mod echo;
mod error;
mod fanout;
mod frames;
mod idle;
mod report;
mod runner;
mod stats;
mod target;

pub use config::{
    Config, ConnectConfig, EchoConfig, FanoutConfig, IdleConfig, Mode, TlsResumption,
    MAX_ECHO_SIZE, MAX_FANOUT_SIZE, MIN_FANOUT_SIZE,
};
pub use error::{ConfigError, ConnectionError, Error};
pub use report::{
    ConnectReport, DeliveryReport, EchoReport, FanoutReport, IdleReport, Report, Results, UrlReport,
};
pub use stats::Latency;

/// Runs one benchmark to completion on `config.threads` new threads, and
/// blocks until it is done: the setup (bounded by `config.timeout` per
/// connection), then the warm-up and the measured duration (or, for idle,
/// the hold), then the close handshakes (bounded by `config.timeout`).
///
/// Raises the soft `RLIMIT_NOFILE` to the hard limit first.
///
/// # Errors
/// - [`Error::Config`] for values out of range, [`Error::InvalidUrl`] or
///   [`Error::Resolve`] for the URL.
/// - [`Error::TooManyConnections`] when the connections would not fit in
///   `RLIMIT_NOFILE`.
/// - [`Error::Rss`] when `IdleConfig::pid` names no readable process.
/// - [`Error::Publisher`] when the fan-out publisher cannot join.
/// - [`Error::Runtime`] or [`Error::WorkerPanicked`] for the worker threads.
///
/// Failures of single connections are not errors: they are counted in the
/// [`Report`], and make [`Report::passed`] false.
pub fn run(config: &Config) -> Result<Report, Error> {
    config.validate()?;
    let target = target::Target::resolve(&config.url, config.tls.as_ref(), config.tls_resumption)?;
    runner::raise_file_limit(config.connections())?;
    let shared = runner::Shared::new(config.clone(), target);
    match &config.mode {
        Mode::Echo(echo) => echo::run(shared, echo.clone()),
        Mode::Connect(connect) => connect::run(shared, connect.clone()),
        Mode::Idle(idle) => idle::run(shared, idle.clone()),
        Mode::Fanout(fanout) => fanout::run(shared, fanout.clone()),
    }
}
