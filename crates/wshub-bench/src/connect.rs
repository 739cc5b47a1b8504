//! `connect`: opening and closing handshakes, back to back.
//!
//! Each loop connects over TCP, upgrades (RFC 6455 §4.1), sends Close 1000,
//! reads until the server's Close, then waits for the server to close the
//! TCP connection, as §7.1.1 asks of a client ("the server SHOULD close the
//! underlying TCP connection first"), so TIME_WAIT lands on the server. The
//! latency recorded is the opening handshake's: TCP connect to validated
//! 101.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wshub_proto::frame::Opcode;

use crate::client::open;
use crate::error::ConnectionError;
use crate::frames::{masking_key, push_masked, FrameReader, Item};
use crate::report::{ConnectReport, Report, Results};
use crate::runner::{
    join_local, join_shards, run_started, spawn_shards, Coordinator, Phase, Shard, Shared,
};
use crate::stats::{histogram, record, Errors, Latency, Live, Timing};
use crate::target::Target;
use crate::{ConnectConfig, Error};

#[derive(Debug)]
struct ConnectStats {
    hist: Histogram<u64>,
    handshakes: u64,
    errors: Errors,
}

/// Runs `connect` and reports.
pub(crate) fn run(shared: Arc<Shared>, connect: ConnectConfig) -> Result<Report, Error> {
    let loops = connect.concurrency;
    let handles = spawn_shards(&shared, move |shard| shard_main(shard, loops))?;
    let mut coordinator = Coordinator::new(&shared, "handshakes");
    let config = &shared.config;
    let timing = Timing::new(Instant::now(), config.warmup, config.duration);
    shared.set_phase(Phase::Run(timing));
    coordinator.wait_until(&handles, || false);
    shared.set_phase(Phase::Stop);
    drop(coordinator);
    let mut hist = histogram();
    let mut handshakes = 0;
    let mut errors = Errors::default();
    for s in join_shards(handles)? {
        hist.add(&s.hist).expect("histograms share their bounds");
        handshakes += s.handshakes;
        errors.merge(s.errors);
    }
    let report = ConnectReport {
        concurrency: loops,
        handshakes,
        handshakes_per_sec: handshakes as f64 / config.duration.as_secs_f64(),
        handshake_latency: Latency::from_histogram(&hist),
        failures: errors.count,
        first_error: errors.first,
    };
    Ok(Report::new(config, Results::Connect(report)))
}

async fn shard_main(shard: Rc<Shard>, loops: usize) -> ConnectStats {
    let stats = Rc::new(RefCell::new(ConnectStats {
        hist: histogram(),
        handshakes: 0,
        errors: Errors::default(),
    }));
    let Some(timing) = run_started(&mut shard.shared.watch_phase()).await else {
        return Rc::try_unwrap(stats).expect("no loop started").into_inner();
    };
    let tasks: Vec<_> = shard
        .owned(loops)
        .map(|_| tokio::task::spawn_local(handshake_loop(shard.clone(), stats.clone(), timing)))
        .collect();
    join_local(tasks, stats).await
}

async fn handshake_loop(shard: Rc<Shard>, stats: Rc<RefCell<ConnectStats>>, timing: Timing) {
    let shared = &shard.shared;
    let live = &shared.live;
    let timeout = shared.config.timeout;
    let mut close = Vec::new();
    push_masked(
        &mut close,
        Opcode::Close,
        &1000u16.to_be_bytes(),
        masking_key(),
    );
    let mut buf = vec![0u8; 4096];
    let target = shared.target.for_one_client();
    loop {
        let start = Instant::now();
        if start >= timing.end {
            break;
        }
        let deadline = (start + timeout).min(timing.end);
        let result =
            tokio::time::timeout_at(deadline.into(), once(&target, timeout, &close, &mut buf))
                .await;
        let now = Instant::now();
        match result {
            Ok(Ok(latency)) => {
                Live::add(&live.events, 1);
                if timing.measuring(now) {
                    let mut stats = stats.borrow_mut();
                    stats.handshakes += 1;
                    record(&mut stats.hist, latency);
                }
            }
            Ok(Err(e)) => stats.borrow_mut().errors.add(live, &e),
            // Cut short by the end of the run: neither a handshake nor a failure.
            Err(_) if deadline >= timing.end => break,
            Err(_) => stats
                .borrow_mut()
                .errors
                .add(live, &ConnectionError::Timeout),
        }
    }
}

/// One connection: open, close handshake, wait for the server's FIN.
/// Returns the opening handshake's latency.
async fn once(
    target: &Target,
    timeout: Duration,
    close: &[u8],
    buf: &mut [u8],
) -> Result<Duration, ConnectionError> {
    let start = Instant::now();
    let (mut tcp, early) = open(target, timeout).await?;
    let latency = start.elapsed();
    tcp.write_all(close).await?;
    tcp.flush().await?;
    let mut reader = FrameReader::default();
    let mut code = None;
    {
        // Data the server sent first (a greeting) is read and dropped.
        let mut on = |item: Item<'_>| {
            if let Item::Close(c) = item {
                code = c;
            }
        };
        reader.feed(&early, &mut on)?;
        while !reader.closed() {
            let n = tcp.read(buf).await?;
            if n == 0 {
                return Err(ConnectionError::Eof);
            }
            reader.feed(&buf[..n], &mut on)?;
        }
    }
    if code != Some(1000) {
        return Err(ConnectionError::UncleanClose { code });
    }
    // The close handshake is complete; an error here (a reset instead of a
    // FIN) changes nothing for the count.
    while let Ok(n) = tcp.read(buf).await {
        if n == 0 {
            break;
        }
    }
    Ok(latency)
}
