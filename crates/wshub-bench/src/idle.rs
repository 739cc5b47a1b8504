//! `idle`: many open, quiet connections, and what they cost the server.
//!
//! Connections open at a bounded handshake concurrency; each one is polled
//! from the moment it opens, so the server's keepalive Pings are answered
//! (RFC 6455 §5.5.2). Once all are open the hold starts. With a server
//! process id, its `VmRSS` is sampled before the first connection, once all
//! are open (after a settling pause of at most 1 s, half the hold if
//! shorter, so the server's per-connection setup is done), and at the end of
//! the hold.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wshub_proto::frame::Opcode;

use crate::client::{drive, flush, open_offering, Driven, Session};
use crate::error::ConnectionError;
use crate::frames::{FrameReader, Item, OutBuf};
use crate::report::{IdleReport, Report, Results};
use crate::runner::{
    join_local, join_shards, spawn_shards, stopped, Coordinator, Phase, Shard, Shared,
};
use crate::stats::{Errors, Live, Timing};
use crate::{Error, IdleConfig};

#[derive(Debug, Default)]
struct IdleStats {
    opened: u64,
    dropped: u64,
    pings: u64,
    errors: Errors,
}

/// Runs `idle` and reports.
pub(crate) fn run(shared: Arc<Shared>, idle: IdleConfig) -> Result<Report, Error> {
    let rss_before = idle.pid.map(rss_kib).transpose()?;
    let setup = Arc::new(Semaphore::new(idle.handshake_concurrency));
    let join = idle.join.as_deref().map(join_request);
    let first = FirstMessage {
        join,
        compressed: idle.compression.then(|| compressed_first_message(&idle)),
        offer: idle.compression.then(|| {
            wshub_proto::deflate::offer(&wshub_proto::deflate::DeflateConfig::client()).into()
        }),
        burst: idle.burst.map(burst_payload),
    };
    let handles = {
        let connections = idle.connections;
        spawn_shards(&shared, move |shard| {
            shard_main(shard, setup.clone(), first.clone(), connections)
        })?
    };
    let mut coordinator = Coordinator::new(&shared, "");
    let live = &shared.live;
    let started = Instant::now();
    let total = idle.connections as u64;
    coordinator.wait_until(&handles, || {
        Live::get(&live.opened) + Live::get(&live.failed) >= total
    });
    let all_open = Instant::now();
    let timing = Timing::new(all_open, Duration::ZERO, idle.hold);
    shared.set_phase(Phase::Run(timing));
    coordinator.sleep_until(
        &handles,
        all_open + (idle.hold / 2).min(Duration::from_secs(1)),
    );
    let rss_open = idle.pid.and_then(|pid| rss_kib(pid).ok());
    coordinator.sleep_until(&handles, timing.end);
    let rss_end = idle.pid.and_then(|pid| rss_kib(pid).ok());
    shared.set_phase(Phase::Stop);
    coordinator.wait_until(&handles, || false);
    drop(coordinator);
    let mut total = IdleStats::default();
    for s in join_shards(handles)? {
        total.opened += s.opened;
        total.dropped += s.dropped;
        total.pings += s.pings;
        total.errors.merge(s.errors);
    }
    let open_secs = (all_open - started).as_secs_f64();
    let per_connection = |rss: Option<u64>| match (rss_before, rss) {
        (Some(before), Some(rss)) if total.opened > 0 => {
            Some((rss as f64 - before as f64) / total.opened as f64)
        }
        _ => None,
    };
    let kib_per_connection = per_connection(rss_open);
    let kib_per_connection_end = per_connection(rss_end);
    let report = IdleReport {
        connections: idle.connections,
        handshake_concurrency: idle.handshake_concurrency,
        opened: total.opened,
        failed: idle.connections as u64 - total.opened,
        open_secs,
        hold_secs: idle.hold.as_secs_f64(),
        dropped: total.dropped,
        pings_answered: total.pings,
        pid: idle.pid,
        rss_before_kib: rss_before,
        rss_open_kib: rss_open,
        rss_end_kib: rss_end,
        kib_per_connection,
        kib_per_connection_end,
        errors: total.errors.count,
        first_error: total.errors.first,
    };
    Ok(Report::new(&shared.config, Results::Idle(report)))
}

/// What each connection sends once open.
#[derive(Debug, Clone)]
struct FirstMessage {
    /// The join request, uncompressed.
    join: Option<Arc<str>>,
    /// The first message as a permessage-deflate payload, sent instead when
    /// the server accepted the extension.
    compressed: Option<Arc<[u8]>>,
    /// The `Sec-WebSocket-Extensions` offer.
    offer: Option<Arc<str>>,
    /// A binary message sent before going quiet.
    burst: Option<Arc<[u8]>>,
}

/// `size` bytes that do not repeat within a TLS record or a DEFLATE window,
/// so no layer can make the burst smaller than it is.
fn burst_payload(size: usize) -> Arc<[u8]> {
    let mut x: u32 = 0x9e37_79b9;
    (0..size)
        .map(|_| {
            // xorshift32
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// The join request, or a 4 KiB JSON-like text, compressed.
fn compressed_first_message(idle: &IdleConfig) -> Arc<[u8]> {
    let text: Vec<u8> = match &idle.join {
        Some(room) => join_request(room).as_bytes().to_vec(),
        None => (0..64)
            .map(|i| {
                format!("{{\"seq\":{i:04},\"text\":\"an idle connection's first message\"}}\n")
            })
            .collect::<String>()
            .into_bytes(),
    };
    deflate_payload(&text).into()
}

/// `text` as a permessage-deflate payload: raw DEFLATE flushed with an empty
/// stored block, whose `00 00 ff ff` tail is then removed (RFC 7692 §7.2.1).
fn deflate_payload(text: &[u8]) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut deflate = Compress::new(Compression::new(6), false);
    let mut out = Vec::with_capacity(text.len() + 64);
    while deflate.total_in() < text.len() as u64 || !out.ends_with(&[0, 0, 0xff, 0xff]) {
        out.reserve(256);
        let consumed = deflate.total_in() as usize;
        deflate
            .compress_vec(&text[consumed..], &mut out, FlushCompress::Sync)
            .expect("deflate into memory cannot fail");
    }
    out.truncate(out.len() - 4);
    out
}

/// The hub's join request (docs/protocol.md), as a text payload.
fn join_request(room: &str) -> Arc<str> {
    serde_json::json!({ "op": "join", "room": room })
        .to_string()
        .into()
}

/// Resident memory of process `pid` in KiB: the `VmRSS` line of
/// `/proc/PID/status`.
pub(crate) fn rss_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|source| Error::Rss { pid, source })?;
    parse_vm_rss(&status).ok_or_else(|| Error::Rss {
        pid,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no VmRSS line"),
    })
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let kib = words.next()?.parse().ok()?;
    (words.next()? == "kB").then_some(kib)
}

async fn shard_main(
    shard: Rc<Shard>,
    setup: Arc<Semaphore>,
    first: FirstMessage,
    connections: usize,
) -> IdleStats {
    let stats = Rc::new(RefCell::new(IdleStats::default()));
    let tasks: Vec<_> = shard
        .owned(connections)
        .map(|_| {
            tokio::task::spawn_local(connection(
                shard.clone(),
                setup.clone(),
                first.clone(),
                stats.clone(),
            ))
        })
        .collect();
    join_local(tasks, stats).await
}

async fn connection(
    shard: Rc<Shard>,
    setup: Arc<Semaphore>,
    first: FirstMessage,
    stats: Rc<RefCell<IdleStats>>,
) {
    let shared = &shard.shared;
    let live = &shared.live;
    let timeout = shared.config.timeout;
    let opened = {
        let _permit = setup.acquire().await;
        open_offering(&shared.target, timeout, first.offer.as_deref()).await
    };
    let (mut tcp, early, deflate) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            Live::add(&live.failed, 1);
            stats.borrow_mut().errors.add(live, &e);
            return;
        }
    };
    stats.borrow_mut().opened += 1;
    Live::add(&live.opened, 1);
    let mut session = IdleSession {
        reader: FrameReader::new(deflate),
        ..IdleSession::default()
    };
    match (&first.compressed, &first.join) {
        (Some(compressed), _) if deflate => {
            session.control.push_compressed(Opcode::Text, compressed)
        }
        (_, Some(join)) => session.control.push(Opcode::Text, join.as_bytes()),
        _ => {}
    }
    if let Some(burst) = &first.burst {
        session.control.push(Opcode::Binary, burst);
    }
    let mut ended = None;
    if !early.is_empty() {
        session.on_read(&early, Instant::now());
    }
    if !session.reader.closed() && session.error.is_none() {
        let stop = stopped(shared.watch_phase());
        tokio::pin!(stop);
        ended = match drive(&mut tcp, &mut session, &shard.buf, stop).await {
            Driven::Stopped => {
                session.closing = true;
                session.control.close();
                let limit = tokio::time::sleep(timeout);
                tokio::pin!(limit);
                match drive(&mut tcp, &mut session, &shard.buf, limit).await {
                    Driven::Done => None,
                    Driven::Stopped => Some(ConnectionError::Timeout),
                    Driven::Eof => Some(ConnectionError::Eof),
                    Driven::Io(e) => Some(ConnectionError::Io(e)),
                }
            }
            Driven::Done => {
                flush(&mut tcp, &mut session).await;
                None
            }
            Driven::Eof => Some(ConnectionError::Eof),
            Driven::Io(e) => Some(ConnectionError::Io(e)),
        };
    }
    let mut stats = stats.borrow_mut();
    stats.pings += session.pings;
    if let Some(e) = session.error.take().or(ended) {
        if !session.closing {
            stats.dropped += 1;
        }
        stats.errors.add(live, &e);
    }
}

/// Reads everything, answers Pings, and ends at the server's Close.
#[derive(Debug, Default)]
struct IdleSession {
    reader: FrameReader,
    control: OutBuf,
    pings: u64,
    closing: bool,
    error: Option<ConnectionError>,
}

impl Session for IdleSession {
    fn on_read(&mut self, data: &[u8], _now: Instant) -> bool {
        let mut close = None;
        let Self {
            reader,
            control,
            pings,
            ..
        } = self;
        let result = reader.feed(data, &mut |item| match item {
            Item::Ping(payload) => {
                *pings += 1;
                control.pong(payload);
            }
            Item::Close(code) => close = Some(code),
            Item::Data { .. } | Item::Pong => {}
        });
        if let Err(e) = result {
            self.error = Some(e.into());
            return false;
        }
        match close {
            None => true,
            Some(code) => {
                if !self.closing {
                    // Not asked for: answer it (RFC 6455 §5.5.1) and count it.
                    self.error = Some(ConnectionError::ClosedByServer { code });
                    self.control.close();
                }
                false
            }
        }
    }

    fn pending(&self) -> &[u8] {
        self.control.pending()
    }

    fn wrote(&mut self, n: usize) {
        self.control.advance(n);
        self.control.release_if_large();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss_in_kib() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t   4321 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(4321));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn reads_our_own_rss() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
