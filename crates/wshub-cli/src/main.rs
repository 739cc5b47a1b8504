//! The `wshub` command: `wshub serve` runs the hub, `wshub connect` is an
//! interactive client, `wshub publish` publishes into a room through the
//! hub's HTTP API, `wshub bench` a load generator. Arguments are parsed
//! in `args.rs`, with `serve`'s `WSHUB_*` variables and `--config` file
//! under them (`sources.rs`), checked into configuration in `config.rs` (or,
//! for bench, `cmd/bench.rs`), and carried out by `cmd/`.
#![forbid(unsafe_code)]

/// mimalloc rather than the system allocator. Measured (wshub bench idle,
/// 10,000 connections, 2026-11-29): with permessage-deflate on, glibc kept
/// 22.6 KiB of RSS per idle connection, because each message's compression
/// state (about 420 KiB, allocated and freed per message without context
/// takeover) fragments its heap once its dynamic mmap threshold rises;
/// mimalloc kept 1.97 KiB. Without compression, 1.46 KiB against 1.82 KiB
/// (echo) and 2.29 against 3.48 (hub). Echo throughput was the same within
/// run-to-run noise.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`),
/// unless `MIMALLOC_ALLOW_THP` is set, which then decides as mimalloc
/// documents it. mimalloc asks for huge pages on its 1 GiB arena
/// (`MADV_HUGEPAGE`), and khugepaged, every 10 s by default, collapses any
/// 2 MiB of it that has a page in use into a whole huge page: an idle hub's
/// heap is its connections' small blocks spread thin, so RSS grew by half
/// again. Measured (bench/million's idle run, 19,000 parked `/echo`
/// connections, 2026-12-06): 0.47 KiB per connection once parked, 0.84
/// KiB 10 s later and after, with huge pages; 0.41 KiB throughout
/// without. Redis asks for the same (its "THP is enabled" warning).
#[cfg(target_os = "linux")]
fn without_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // An old kernel without the flag keeps huge pages: nothing to do.
        let _ = nix::sys::prctl::set_thp_disable(true);
    }
}

mod args;
mod cmd;
mod config;
mod console;
mod proxy;
mod session;
mod sources;
mod tls;

use std::future::Future;

use anyhow::{anyhow, Context};
use tracing_subscriber::EnvFilter;

use crate::args::{Command, LogFormat};

fn main() {
    #[cfg(target_os = "linux")]
    without_transparent_huge_pages();
    let (cli, sources) = match sources::parse(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(e) => match e.downcast::<clap::Error>() {
            Ok(usage) => usage.exit(),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(2);
            }
        },
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cli.log))
        .unwrap_or_else(|e| {
            let e = anyhow!(
                "--log {:?}: {e}; use a level such as info or debug",
                cli.log
            );
            eprintln!("error: {:#}", sources.attribute(e));
            std::process::exit(2);
        });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let code = match cli.command {
        Command::Serve(args) if args.check_config => {
            match cmd::serve::check(&args, &sources) {
                Ok(()) => Ok(0),
                Err(e) => {
                    // Whatever failed, the settings are not fit to serve with.
                    eprintln!("error: {:#}", sources.attribute(e));
                    std::process::exit(2);
                }
            }
        }
        Command::Serve(args) => config::runtime(&args)
            .and_then(|mut runtime| {
                runtime
                    .build()
                    .context("cannot start the async runtime")?
                    .block_on(async { cmd::serve::run(*args).await.map(|()| 0) })
            })
            .map_err(|e| sources.attribute(e)),
        Command::Connect(args) => block_on(cmd::connect::run(args)),
        Command::Listen(args) => block_on(cmd::listen::run(args)),
        // Prints its own errors: its exit codes (1 and 2) are part of its
        // interface for scripts.
        Command::Publish(args) => block_on(cmd::publish::run(args)),
        // The benchmark starts its own single-threaded runtimes (--threads).
        Command::Bench(args) => cmd::bench::run(args),
    };
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            // Bad flag values exit 2, like clap's own usage errors.
            let usage = e
                .chain()
                .any(|c| c.is::<UsageError>() || c.to_string().starts_with("--"));
            std::process::exit(if usage { 2 } else { 1 });
        }
    }
}

/// An error in what was typed (the URL, an address, a proxy variable)
/// rather than a flag's value: exits 2, as a usage error.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Runs `command` on a multi-threaded tokio runtime. The runtime is not
/// waited for afterwards: a thread blocked reading stdin (`connect`,
/// `listen`) would hold the exit until the next line.
fn block_on(command: impl Future<Output = anyhow::Result<i32>>) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(command);
    runtime.shutdown_background();
    result
}
