//! `echo`: round trips through an echo server, every echo checked.
//!
//! Sending costs no encoding: the frames are masked once, before the run, in
//! a ring of `slots` distinct messages laid out twice in a row, so any run of
//! up to `slots` consecutive frames is one contiguous slice written with one
//! write. Each pre-encoded frame keeps its masking key for the whole run
//! (see [`crate::frames::masking_key`] on why a load generator may).
//!
//! Each echo is compared, chunk by chunk as it is read, with the message
//! sent `in_flight` messages earlier: same type, same bytes, same length.
//! Consecutive messages differ in their first bytes (the slot number in
//! base 64), so an echo out of order shows as a mismatch.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use wshub_proto::frame::{encoded_len, Opcode};

use crate::client::{drive, flush, open, Driven, Session};
use crate::error::ConnectionError;
use crate::frames::{masking_key, push_masked, FrameReader, Item, OutBuf};
use crate::report::{EchoReport, Report, Results};
use crate::runner::{
    join_local, join_shards, run_started, spawn_shards, Coordinator, Phase, Shard, Shared,
};
use crate::stats::{histogram, record, Errors, Latency, Live, Timing};
use crate::{EchoConfig, Error};

/// Handshakes in progress at once while echo connections open.
const SETUP_CONCURRENCY: usize = 200;

/// Bytes the ring of pre-encoded frames may take, unless `in_flight` needs more.
const RING_BUDGET: usize = 64 << 20;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The messages of a run, encoded once and shared by every connection.
#[derive(Debug)]
pub(crate) struct Plan {
    /// `2 × slots` masked frames: slots `0..slots`, then the same again.
    wire: Vec<u8>,
    frame_len: usize,
    /// The `slots` payloads, unmasked, `size` bytes each.
    payloads: Vec<u8>,
    size: usize,
    slots: usize,
    opcode: Opcode,
    in_flight: usize,
}

impl Plan {
    pub(crate) fn new(echo: &EchoConfig) -> Self {
        let frame_len = encoded_len(echo.size, true);
        let slots = (2 * echo.in_flight)
            .max(16)
            .min(RING_BUDGET / (2 * frame_len))
            .max(echo.in_flight + 1);
        let opcode = if echo.binary {
            Opcode::Binary
        } else {
            Opcode::Text
        };
        let mut payloads = Vec::with_capacity(slots * echo.size);
        for slot in 0..slots {
            let digits = echo.size.min(4);
            for j in 0..echo.size {
                let byte = if j < digits {
                    ALPHABET[(slot >> (6 * (digits - 1 - j))) & 63]
                } else {
                    b'a' + (j % 26) as u8
                };
                payloads.push(byte);
            }
        }
        let mut wire = Vec::with_capacity(2 * slots * frame_len);
        for slot in 0..slots {
            let payload = &payloads[slot * echo.size..(slot + 1) * echo.size];
            push_masked(&mut wire, opcode, payload, masking_key());
        }
        wire.extend_from_within(..);
        debug_assert_eq!(wire.len(), 2 * slots * frame_len);
        Self {
            wire,
            frame_len,
            payloads,
            size: echo.size,
            slots,
            opcode,
            in_flight: echo.in_flight,
        }
    }

    fn payload(&self, slot: usize) -> &[u8] {
        &self.payloads[slot * self.size..(slot + 1) * self.size]
    }
}

/// One thread's results.
#[derive(Debug)]
struct EchoStats {
    hist: Histogram<u64>,
    messages: u64,
    opened: u64,
    mismatches: u64,
    first_mismatch: Option<String>,
    errors: Errors,
}

impl EchoStats {
    fn new() -> Self {
        Self {
            hist: histogram(),
            messages: 0,
            opened: 0,
            mismatches: 0,
            first_mismatch: None,
            errors: Errors::default(),
        }
    }
}

/// Runs `echo` and reports.
pub(crate) fn run(shared: Arc<Shared>, echo: EchoConfig) -> Result<Report, Error> {
    let plan = Arc::new(Plan::new(&echo));
    let setup = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let handles = {
        let echo = echo.clone();
        spawn_shards(&shared, move |shard| {
            shard_main(shard, plan.clone(), setup.clone(), echo.connections)
        })?
    };
    let mut coordinator = Coordinator::new(&shared, "msg");
    let live = &shared.live;
    let total = echo.connections as u64;
    coordinator.wait_until(&handles, || {
        Live::get(&live.opened) + Live::get(&live.failed) >= total
    });
    let config = &shared.config;
    let timing = Timing::new(Instant::now(), config.warmup, config.duration);
    shared.set_phase(Phase::Run(timing));
    coordinator.wait_until(&handles, || false);
    shared.set_phase(Phase::Stop);
    drop(coordinator);
    let mut total = EchoStats::new();
    for s in join_shards(handles)? {
        total
            .hist
            .add(&s.hist)
            .expect("histograms share their bounds");
        total.messages += s.messages;
        total.opened += s.opened;
        total.mismatches += s.mismatches;
        if total.first_mismatch.is_none() {
            total.first_mismatch = s.first_mismatch;
        }
        total.errors.merge(s.errors);
    }
    let secs = config.duration.as_secs_f64();
    let rate = total.messages as f64 / secs;
    let report = EchoReport {
        connections: echo.connections,
        connections_open: total.opened,
        size: echo.size,
        binary: echo.binary,
        in_flight: echo.in_flight,
        messages: total.messages,
        messages_per_sec: rate,
        payload_mb_per_sec_one_way: rate * echo.size as f64 / 1e6,
        round_trip: Latency::from_histogram(&total.hist),
        mismatches: total.mismatches,
        connection_errors: total.errors.count,
        first_error: total.first_mismatch.or(total.errors.first),
    };
    Ok(Report::new(config, Results::Echo(report)))
}

async fn shard_main(
    shard: Rc<Shard>,
    plan: Arc<Plan>,
    setup: Arc<Semaphore>,
    connections: usize,
) -> EchoStats {
    let stats = Rc::new(RefCell::new(EchoStats::new()));
    let tasks: Vec<_> = shard
        .owned(connections)
        .map(|index| {
            tokio::task::spawn_local(connection(
                shard.clone(),
                plan.clone(),
                setup.clone(),
                stats.clone(),
                index,
            ))
        })
        .collect();
    join_local(tasks, stats).await
}

async fn connection(
    shard: Rc<Shard>,
    plan: Arc<Plan>,
    setup: Arc<Semaphore>,
    stats: Rc<RefCell<EchoStats>>,
    index: usize,
) {
    let shared = &shard.shared;
    let live = &shared.live;
    let timeout = shared.config.timeout;
    let opened = {
        let _permit = setup.acquire().await;
        open(&shared.target, timeout).await
    };
    let (mut tcp, early) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            Live::add(&live.failed, 1);
            stats.borrow_mut().errors.add(live, &e);
            return;
        }
    };
    stats.borrow_mut().opened += 1;
    Live::add(&live.opened, 1);
    let mut phase = shared.watch_phase();
    let Some(timing) = run_started(&mut phase).await else {
        return;
    };
    let mut session = EchoSession::new(&plan, &stats, live, timing, index);
    if !early.is_empty() && !session.on_read(&early, Instant::now()) {
        return;
    }
    session.queue(plan.in_flight, Instant::now());
    let end = tokio::time::sleep_until(timing.end.into());
    tokio::pin!(end);
    let outcome = drive(&mut tcp, &mut session, &shard.buf, end).await;
    let ended = match outcome {
        Driven::Stopped => {
            session.begin_close();
            let limit = tokio::time::sleep(timeout);
            tokio::pin!(limit);
            match drive(&mut tcp, &mut session, &shard.buf, limit).await {
                Driven::Done => None,
                Driven::Stopped => Some(ConnectionError::Timeout),
                Driven::Eof => Some(ConnectionError::Eof),
                Driven::Io(e) => Some(ConnectionError::Io(e)),
            }
        }
        // The session counted its own failure (a protocol error, or an
        // unrequested Close, whose answer is best-effort).
        Driven::Done => {
            flush(&mut tcp, &mut session).await;
            None
        }
        Driven::Eof => Some(ConnectionError::Eof),
        Driven::Io(e) => Some(ConnectionError::Io(e)),
    };
    if let Some(e) = ended {
        stats.borrow_mut().errors.add(live, &e);
    }
}

/// One echo connection's protocol state.
struct EchoSession<'a> {
    plan: &'a Plan,
    stats: &'a RefCell<EchoStats>,
    live: &'a Live,
    timing: Timing,
    index: usize,
    reader: FrameReader,
    /// Send side: the pending slice of `plan.wire`, and the next slot to queue.
    out_start: usize,
    out_end: usize,
    next_slot: usize,
    control: OutBuf,
    sending: bool,
    /// When each outstanding message was queued, oldest first.
    sent_at: VecDeque<Instant>,
    /// Receive side: the slot the next echo should match, and how far.
    expect_slot: usize,
    offset: usize,
    wrong: Option<&'static str>,
    echoes: u64,
    /// The server's Close arrived.
    closed: bool,
}

impl<'a> EchoSession<'a> {
    fn new(
        plan: &'a Plan,
        stats: &'a RefCell<EchoStats>,
        live: &'a Live,
        timing: Timing,
        index: usize,
    ) -> Self {
        Self {
            plan,
            stats,
            live,
            timing,
            index,
            reader: FrameReader::default(),
            out_start: 0,
            out_end: 0,
            next_slot: 0,
            control: OutBuf::default(),
            sending: true,
            sent_at: VecDeque::with_capacity(plan.in_flight),
            expect_slot: 0,
            offset: 0,
            wrong: None,
            echoes: 0,
            closed: false,
        }
    }

    /// Queues the next `k` messages: they extend the pending slice, which
    /// stays contiguous because at most `in_flight < slots` frames are ever
    /// pending and the ring is laid out twice.
    fn queue(&mut self, k: usize, now: Instant) {
        if k == 0 || !self.sending {
            return;
        }
        let f = self.plan.frame_len;
        if self.out_start == self.out_end {
            self.out_start = self.next_slot * f;
            self.out_end = self.out_start;
        }
        self.out_end += k * f;
        self.next_slot = (self.next_slot + k) % self.plan.slots;
        for _ in 0..k {
            self.sent_at.push_back(now);
        }
    }

    /// Stops sending after the frame being written, and queues a Close.
    fn begin_close(&mut self) {
        let f = self.plan.frame_len;
        let frame_end = self.out_start.div_ceil(f) * f;
        let dropped = (self.out_end - frame_end.min(self.out_end)) / f;
        self.out_end = frame_end.min(self.out_end);
        for _ in 0..dropped {
            self.sent_at.pop_back();
        }
        self.sending = false;
        self.control.close();
    }

    /// Control frames go out between data frames, never inside one.
    fn control_first(&self) -> bool {
        !self.control.is_empty() && self.out_start.is_multiple_of(self.plan.frame_len)
    }
}

impl Session for EchoSession<'_> {
    fn on_read(&mut self, data: &[u8], now: Instant) -> bool {
        let plan = self.plan;
        let live = self.live;
        let mut guard = self.stats.borrow_mut();
        let stats = &mut *guard;
        let measuring = self.timing.measuring(now);
        let mut completed = 0;
        let mut closed = None;
        let Self {
            reader,
            sent_at,
            expect_slot,
            offset,
            wrong,
            echoes,
            control,
            index,
            ..
        } = self;
        let result = reader.feed(data, &mut |item| match item {
            Item::Data {
                opcode,
                payload,
                first,
                last,
            } => {
                if first {
                    *offset = 0;
                    *wrong = (opcode != plan.opcode)
                        .then_some("has the wrong type (text for binary or binary for text)");
                }
                if wrong.is_none() {
                    let end = *offset + payload.len();
                    if end > plan.size {
                        *wrong = Some("is longer than the message sent");
                    } else if plan.payload(*expect_slot)[*offset..end] != *payload {
                        *wrong = Some("has bytes that differ from the message sent");
                    }
                }
                *offset += payload.len();
                if !last {
                    return;
                }
                if wrong.is_none() && *offset != plan.size {
                    *wrong = Some("is shorter than the message sent");
                }
                let Some(sent) = sent_at.pop_front() else {
                    *wrong = None;
                    stats.mismatches += 1;
                    Live::add(&live.errors, 1);
                    if stats.first_mismatch.is_none() {
                        stats.first_mismatch = Some(format!(
                            "connection {index}: a message arrived but none was outstanding"
                        ));
                    }
                    return;
                };
                if let Some(how) = wrong.take() {
                    stats.mismatches += 1;
                    Live::add(&live.errors, 1);
                    if stats.first_mismatch.is_none() {
                        stats.first_mismatch = Some(format!(
                            "connection {index}: the echo of message {echoes} {how}"
                        ));
                    }
                } else if measuring {
                    stats.messages += 1;
                    record(&mut stats.hist, now - sent);
                }
                *echoes += 1;
                *expect_slot = (*expect_slot + 1) % plan.slots;
                completed += 1;
            }
            Item::Ping(payload) => control.pong(payload),
            Item::Pong => {}
            Item::Close(code) => closed = Some(code),
        });
        Live::add(&self.live.events, completed as u64);
        if let Err(e) = result {
            stats.errors.add(self.live, &ConnectionError::Protocol(e));
            return false;
        }
        if let Some(code) = closed {
            self.closed = true;
            if self.sending {
                // Not asked for: answer it (RFC 6455 §5.5.1) and count it.
                stats
                    .errors
                    .add(self.live, &ConnectionError::ClosedByServer { code });
                self.sending = false;
                self.out_end = self.out_start;
                self.control.close();
            }
            return false;
        }
        drop(guard);
        self.queue(completed, now);
        true
    }

    fn pending(&self) -> &[u8] {
        if self.control_first() || self.out_start == self.out_end {
            self.control.pending()
        } else {
            &self.plan.wire[self.out_start..self.out_end]
        }
    }

    fn wrote(&mut self, n: usize) {
        if self.control_first() || self.out_start == self.out_end {
            self.control.advance(n);
        } else {
            self.out_start += n;
            let ring = self.plan.slots * self.plan.frame_len;
            if self.out_start >= ring {
                self.out_start -= ring;
                self.out_end -= ring;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_messages_differ_and_frames_repeat_after_the_ring() {
        let echo = EchoConfig {
            size: 20,
            in_flight: 16,
            ..Default::default()
        };
        let plan = Plan::new(&echo);
        assert!(plan.slots > plan.in_flight);
        for slot in 0..plan.slots {
            assert_ne!(plan.payload(slot), plan.payload((slot + 1) % plan.slots));
            assert!(std::str::from_utf8(plan.payload(slot)).is_ok());
        }
        let ring = plan.slots * plan.frame_len;
        assert_eq!(plan.wire[..ring], plan.wire[ring..]);
    }

    #[test]
    fn big_messages_keep_at_least_one_more_slot_than_in_flight() {
        let echo = EchoConfig {
            size: 16 << 20,
            in_flight: 4,
            ..Default::default()
        };
        let plan = Plan::new(&echo);
        assert_eq!(plan.slots, 5);
    }
}
