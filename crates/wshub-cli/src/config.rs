//! Arguments checked and turned into library configuration. Every error
//! names the flag and says what to fix.

use anyhow::{bail, Context, Result};
use wshub::CloseCode;
use wshub_hub::HubConfig;

use crate::args::{ConnectArgs, Runtime, ServeArgs};

/// Parses a byte size: a whole number with an optional `B`, `KiB`, `MiB` or
/// `GiB` suffix (also `K`, `M`, `G`, `KB`, `MB`, `GB`, all binary).
pub(crate) fn parse_size(flag: &str, value: &str) -> Result<usize> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => bail!("{flag} {value:?}: unknown unit; use bytes or a KiB, MiB or GiB suffix"),
    };
    let n: usize = digits.parse().with_context(|| {
        format!("{flag} {value:?}: expected a whole number of bytes, e.g. 16MiB")
    })?;
    let bytes = n
        .checked_mul(1 << shift)
        .with_context(|| format!("{flag} {value:?}: too large"))?;
    if bytes == 0 {
        bail!("{flag} must be at least 1 byte");
    }
    Ok(bytes)
}

/// The tokio runtime `serve` asked for with `--runtime` and `--workers`.
pub(crate) fn runtime(args: &ServeArgs) -> Result<tokio::runtime::Builder> {
    let mut builder = match (args.runtime, args.workers) {
        (Runtime::CurrentThread, Some(_)) => {
            bail!("--workers applies to --runtime multi-thread; drop it or switch runtime")
        }
        (_, Some(0)) => bail!("--workers must be at least 1"),
        (Runtime::CurrentThread, None) => tokio::runtime::Builder::new_current_thread(),
        (Runtime::MultiThread, workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = workers {
                builder.worker_threads(n);
            }
            builder
        }
    };
    builder.enable_all();
    Ok(builder)
}

pub(crate) fn hub_config(args: &ServeArgs) -> Result<HubConfig> {
    if args.ping_interval.is_zero() {
        bail!("--ping-interval must be more than 0, e.g. 25s");
    }
    if args.pong_timeout.is_zero() {
        bail!("--pong-timeout must be more than 0, e.g. 10s");
    }
    if args.handshake_timeout.is_zero() {
        bail!("--handshake-timeout must be more than 0, e.g. 10s");
    }
    if args.send_queue == 0 {
        bail!("--send-queue must be at least 1 frame");
    }
    let mut config = HubConfig::default();
    config.ping_interval = args.ping_interval;
    config.pong_timeout = args.pong_timeout;
    config.max_message_size = parse_size("--max-message-size", &args.max_message_size)?;
    config.max_frame_size = parse_size("--max-frame-size", &args.max_frame_size)?;
    config.send_queue = args.send_queue;
    config.presence_limit = args.presence_limit;
    config.handshake_timeout = args.handshake_timeout;
    config.shutdown_timeout = args.shutdown_timeout;
    Ok(config)
}

/// A connect command, validated.
#[derive(Debug)]
pub(crate) struct ConnectConfig {
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) close_code: CloseCode,
    pub(crate) max_message_size: usize,
}

pub(crate) fn connect_config(args: &ConnectArgs) -> Result<ConnectConfig> {
    let mut headers = Vec::new();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            bail!("--header {h:?}: expected `Name: value`");
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            bail!("--header {h:?}: the header name is empty");
        }
        if value.contains(['\r', '\n', '\0']) {
            bail!("--header {h:?}: values cannot contain CR, LF or NUL");
        }
        headers.push((name.to_owned(), value.to_owned()));
    }
    let close_code = CloseCode::from(args.close_code);
    if !close_code.is_allowed_on_wire() {
        bail!(
            "--close-code {}: not a code that may be sent; use 1000-1003, 1007-1014 or 3000-4999 (RFC 6455 section 7.4)",
            args.close_code
        );
    }
    if args.close_reason.len() > 123 {
        bail!(
            "--close-reason is {} bytes; the limit is 123 (RFC 6455 section 5.5)",
            args.close_reason.len()
        );
    }
    if args.ping_interval.is_some_and(|d| d.is_zero()) {
        bail!("--ping-interval must be more than 0, e.g. 10s");
    }
    Ok(ConnectConfig {
        headers,
        close_code,
        max_message_size: parse_size("--max-message-size", &args.max_message_size)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn serve_args(flags: &[&str]) -> ServeArgs {
        let argv = ["wshub", "serve"].iter().chain(flags);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn runtime_flags_build_the_asked_scheduler_or_say_what_to_fix() {
        for flags in [
            &[][..],
            &["--workers", "1"],
            &["--runtime", "current-thread"],
        ] {
            let rt = runtime(&serve_args(flags)).unwrap().build().unwrap();
            assert_eq!(rt.block_on(async { 7 }), 7, "{flags:?}");
        }
        let rt = runtime(&serve_args(&["--workers", "3"]))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(rt.metrics().num_workers(), 3);
        let rt = runtime(&serve_args(&["--runtime", "current-thread"]))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(rt.metrics().num_workers(), 1);

        let err = runtime(&serve_args(&["--workers", "0"])).unwrap_err();
        assert!(err.to_string().contains("--workers must be at least 1"));
        let err = runtime(&serve_args(&[
            "--runtime",
            "current-thread",
            "--workers",
            "2",
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("--workers applies to"), "{err}");
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("--x", "123").unwrap(), 123);
        assert_eq!(parse_size("--x", "64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("--x", "16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("--x", "1 GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("--x", "2m").unwrap(), 2 << 20);
    }

    #[test]
    fn bad_sizes_say_which_flag_and_what_to_fix() {
        for bad in ["", "abc", "12XB", "0", "-1"] {
            let err = parse_size("--max-message-size", bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains("--max-message-size"), "{err}");
        }
    }
}
