//! `wshub bench MODE`: flags checked into a `wshub_bench::Config`, the run,
//! and its summary (text, or JSON with `--json`). Exits 1 when the run saw
//! errors, mismatches, losses or reordering.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use wshub_bench::{
    Config, ConnectConfig, EchoConfig, FanoutConfig, IdleConfig, Mode, MAX_ECHO_SIZE,
    MAX_FANOUT_SIZE, MIN_FANOUT_SIZE,
};

use crate::args::{BenchArgs, BenchMode, BenchOutputArgs, BenchTimeArgs, TlsResumption};
use crate::config::parse_size;

pub(crate) fn run(args: BenchArgs) -> Result<i32> {
    let (config, json) = bench_config(args)?;
    let publisher_url = match &config.mode {
        Mode::Fanout(fanout) => fanout.publisher_url.clone(),
        _ => None,
    };
    let report = wshub_bench::run(&config).map_err(|e| match e {
        // A bad URL is a bad flag: exit 2.
        wshub_bench::Error::InvalidUrl { ref url, .. } if Some(url) == publisher_url.as_ref() => {
            anyhow::Error::new(e).context("--publisher-url")
        }
        wshub_bench::Error::InvalidUrl { .. } => anyhow::Error::new(e).context("--url"),
        e => e.into(),
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(report.exit_code())
}

/// Checks the flags, naming the one to fix, and builds the run's config.
/// Returns it with whether `--json` was given.
pub(crate) fn bench_config(args: BenchArgs) -> Result<(Config, bool)> {
    let (url, mode, time, output) = match args.mode {
        BenchMode::Echo(a) => {
            at_least_one("--connections", a.connections)?;
            at_least_one("--in-flight", a.in_flight)?;
            let size = parse_size("--size", &a.size)?;
            if size > MAX_ECHO_SIZE {
                bail!("--size {}: the limit is 16MiB", a.size);
            }
            let mut echo = EchoConfig::default();
            echo.connections = a.connections;
            echo.size = size;
            echo.binary = a.binary;
            echo.in_flight = a.in_flight;
            (a.url, Mode::Echo(echo), Some(a.time), a.output)
        }
        BenchMode::Connect(a) => {
            at_least_one("--concurrency", a.concurrency)?;
            let mut connect = ConnectConfig::default();
            connect.concurrency = a.concurrency;
            (a.url, Mode::Connect(connect), Some(a.time), a.output)
        }
        BenchMode::Idle(a) => {
            at_least_one("--connections", a.connections)?;
            at_least_one("--handshake-concurrency", a.handshake_concurrency)?;
            if Duration::from(a.hold).is_zero() {
                bail!("--hold must be more than 0, e.g. 30s");
            }
            if let Some(room) = &a.join {
                room_ok("--join", room)?;
            }
            let mut idle = IdleConfig::default();
            idle.connections = a.connections;
            idle.handshake_concurrency = a.handshake_concurrency;
            idle.hold = a.hold.into();
            idle.pid = a.pid;
            idle.join = a.join;
            idle.compression = a.compression;
            if let Some(burst) = &a.burst {
                let size = parse_size("--burst", burst)?;
                if size == 0 || size > MAX_ECHO_SIZE {
                    bail!("--burst {burst}: give 1 byte to 16MiB, e.g. 64KiB");
                }
                idle.burst = Some(size);
            }
            (a.url, Mode::Idle(idle), None, a.output)
        }
        BenchMode::Fanout(a) => {
            at_least_one("--subscribers", a.subscribers)?;
            at_least_one("--window", a.window)?;
            at_least_one("--handshake-concurrency", a.handshake_concurrency)?;
            let size = parse_size("--size", &a.size)?;
            if !(MIN_FANOUT_SIZE..=MAX_FANOUT_SIZE).contains(&size) {
                bail!(
                    "--size {}: fan-out messages are {MIN_FANOUT_SIZE} bytes (the time stamp) to 64KiB",
                    a.size
                );
            }
            if let Some(rate) = a.rate {
                if !(rate.is_finite() && rate > 0.0) {
                    bail!("--rate {rate}: give a positive number of messages per second, or leave it out for as fast as allowed");
                }
            }
            let mut fanout = FanoutConfig::default();
            fanout.subscribers = a.subscribers;
            fanout.rate = a.rate;
            fanout.size = size;
            fanout.window = a.window;
            fanout.own_copies = a.own_copies;
            fanout.handshake_concurrency = a.handshake_concurrency;
            fanout.verify = a.verify;
            fanout.named = a.named;
            if let Some(room) = a.room {
                room_ok("--room", &room)?;
                fanout.room = room;
            }
            if !(0.0..=1.0).contains(&a.resume_share) {
                bail!(
                    "--resume-share {}: give a fraction of the subscribers from 0 (off) to 1, e.g. 0.2",
                    a.resume_share
                );
            }
            fanout.resume_share = a.resume_share;
            fanout.resume_every = a.resume_every.into();
            if a.resume_share > 0.0 && fanout.resume_every.is_zero() {
                bail!("--resume-every must be more than 0, e.g. 1s");
            }
            fanout.resume_elsewhere = a.resume_elsewhere;
            // The first URL names the run; clap gives at least one.
            let url = a.url.first().cloned().unwrap_or_default();
            fanout.urls = a.url;
            fanout.publisher_url = a.publisher_url;
            (url, Mode::Fanout(fanout), Some(a.time), a.output)
        }
    };
    let BenchOutputArgs {
        threads,
        timeout,
        json,
        tls,
        tls_resumption,
    } = output;
    at_least_one("--threads", threads)?;
    let timeout = Duration::from(timeout);
    if timeout.is_zero() {
        bail!("--timeout must be more than 0, e.g. 10s");
    }
    let mut config = Config::new(url, mode);
    config.threads = threads;
    config.timeout = timeout;
    config.tls = crate::tls::client_config(&tls)?;
    config.tls_resumption = match tls_resumption {
        TlsResumption::PerConnection => wshub_bench::TlsResumption::PerConnection,
        TlsResumption::Shared => wshub_bench::TlsResumption::Shared,
        TlsResumption::Off => wshub_bench::TlsResumption::Off,
    };
    if let Some(BenchTimeArgs { duration, warmup }) = time {
        let (duration, warmup) = (Duration::from(duration), Duration::from(warmup));
        if duration.is_zero() {
            bail!("--duration must be more than 0, e.g. 10s");
        }
        config.duration = duration;
        config.warmup = warmup;
    }
    // Every range was checked above; this only guards against drift.
    config.validate().context("bench configuration")?;
    Ok((config, json))
}

fn at_least_one(flag: &str, value: usize) -> Result<()> {
    if value == 0 {
        bail!("{flag} must be at least 1");
    }
    Ok(())
}

fn room_ok(flag: &str, room: &str) -> Result<()> {
    if room.is_empty() || room.len() > 64 || room.chars().any(char::is_control) {
        bail!("{flag} {room:?}: room names are 1 to 64 bytes with no control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn parse(line: &str) -> Result<(Config, bool)> {
        let cli = Cli::try_parse_from(line.split_whitespace()).map_err(anyhow::Error::from)?;
        let Command::Bench(args) = cli.command else {
            panic!("not a bench command: {line}");
        };
        bench_config(args)
    }

    #[test]
    fn echo_flags_reach_the_library_config() {
        let (config, json) =
            parse("wshub bench echo --url ws://127.0.0.1:9300/echo -c 10 -s 16KiB --binary -p 4 -d 3s --warmup 0s --json")
                .unwrap();
        assert!(json);
        assert_eq!(config.url, "ws://127.0.0.1:9300/echo");
        assert_eq!(config.duration, Duration::from_secs(3));
        assert_eq!(config.warmup, Duration::ZERO);
        let Mode::Echo(echo) = config.mode else {
            panic!("not echo")
        };
        assert_eq!(
            (echo.connections, echo.size, echo.binary, echo.in_flight),
            (10, 16 << 10, true, 4)
        );
    }

    #[test]
    fn defaults_follow_the_issue() {
        let (config, json) = parse("wshub bench idle").unwrap();
        assert!(!json);
        let Mode::Idle(idle) = config.mode else {
            panic!("not idle")
        };
        assert_eq!(
            (idle.connections, idle.handshake_concurrency, idle.hold),
            (10_000, 200, Duration::from_secs(30))
        );
        let (config, _) = parse("wshub bench fanout").unwrap();
        assert_eq!(config.url, "ws://127.0.0.1:8080/ws");
        let Mode::Fanout(fanout) = config.mode else {
            panic!("not fanout")
        };
        assert_eq!(
            (fanout.subscribers, fanout.size, fanout.rate),
            (1000, 64, None)
        );
        let (config, _) = parse("wshub bench connect").unwrap();
        assert_eq!(config.threads, 1);
        assert_eq!(config.duration, Duration::from_secs(10));
        assert_eq!(config.warmup, Duration::from_secs(2));
    }

    #[test]
    fn fanout_flags_reach_the_library_config() {
        let (config, _) = parse(
            "wshub bench fanout -m 50 --verify --url ws://a:1/ws --url ws://b:2/ws --publisher-url ws://c:3/ws",
        )
        .unwrap();
        assert_eq!(config.url, "ws://a:1/ws");
        let Mode::Fanout(fanout) = config.mode else {
            panic!("not fanout")
        };
        assert_eq!((fanout.subscribers, fanout.verify), (50, true));
        assert_eq!(fanout.urls, ["ws://a:1/ws", "ws://b:2/ws"]);
        assert_eq!(fanout.publisher_url.as_deref(), Some("ws://c:3/ws"));
        let (config, _) =
            parse("wshub bench fanout --resume-share 0.2 --resume-every 300ms --resume-elsewhere")
                .unwrap();
        let Mode::Fanout(fanout) = config.mode else {
            panic!("not fanout")
        };
        assert_eq!(
            (
                fanout.resume_share,
                fanout.resume_every,
                fanout.resume_elsewhere
            ),
            (0.2, Duration::from_millis(300), true)
        );
        let (config, _) = parse("wshub bench fanout").unwrap();
        assert_eq!(config.url, "ws://127.0.0.1:8080/ws");
        let Mode::Fanout(fanout) = config.mode else {
            panic!("not fanout")
        };
        assert!(!fanout.verify);
        assert_eq!(fanout.urls, ["ws://127.0.0.1:8080/ws"]);
        assert_eq!(fanout.publisher_url, None);
        assert_eq!(
            (
                fanout.resume_share,
                fanout.resume_every,
                fanout.resume_elsewhere
            ),
            (0.0, Duration::from_secs(1), false)
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (line, flag) in [
            ("wshub bench echo -p 0", "--in-flight"),
            ("wshub bench echo -s 0", "--size"),
            ("wshub bench echo -s 17MiB", "--size"),
            ("wshub bench echo --threads 0", "--threads"),
            ("wshub bench connect -d 0s", "--duration"),
            ("wshub bench idle --hold 0s", "--hold"),
            ("wshub bench fanout -s 8", "--size"),
            ("wshub bench fanout --rate=-1", "--rate"),
            ("wshub bench fanout --rate 0", "--rate"),
            ("wshub bench fanout --window 0", "--window"),
            ("wshub bench fanout --resume-share 1.5", "--resume-share"),
            ("wshub bench fanout --resume-share=-0.1", "--resume-share"),
            ("wshub bench fanout --resume-share NaN", "--resume-share"),
            (
                "wshub bench fanout --resume-share 0.1 --resume-every 0s",
                "--resume-every",
            ),
        ] {
            let err = format!("{:#}", parse(line).unwrap_err());
            assert!(err.starts_with(flag) || err.contains(flag), "{line}: {err}");
        }
    }
}
