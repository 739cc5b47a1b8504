//! `fanout`: one publisher, many subscribers of one room of the wshub hub.
//!
//! Speaks the hub protocol (docs/protocol.md): every connection sends
//! `{"op":"join","room":…}`; once all have their `joined` answer the clock
//! starts and one more connection, also a member, publishes
//! `{"op":"publish","room":…,"message":"<16 hex digits><padding>"}`. The
//! digits are the publish time in nanoseconds since an `Instant` that the
//! publisher and the subscribers share (they run in this one process), so
//! publish→receive latency needs no clock sync.
//!
//! Every subscriber checks each delivery's `epoch` and `offset` against the
//! last it received ([`track`]): an offset more than one above it counts the
//! ones skipped as lost, one not above it counts as duplicated (the report's
//! `out_of_order`). From a server whose messages have no offset, `seq` is
//! checked instead. At the end every subscriber must have received the last
//! offset published; what it has not is lost too.
//!
//! "As fast as allowed" keeps a window: the publisher waits while it is
//! `window` publishes ahead of the slowest connected subscriber (the
//! publisher's own connection, a member too, included). So no member's
//! queue in the hub holds more than `window` of our messages, and the
//! generator never trips the hub's slow-consumer kick by itself. Latency is
//! then measured under that standing backlog; with `rate` the publisher also
//! keeps to the given schedule (catching up, window permitting, when late).
//!
//! With `own_copies` the window counts the publisher's own copies only, as
//! a real client's would: it is the hub's back-pressure (docs/protocol.md)
//! that must keep every subscriber connected and every message delivered.
//!
//! Subscribers are spread round-robin over the run's URLs, the publisher at
//! the first or its own. With `resume_share`, every `resume_every` of the
//! measured window the coordinating thread tells that share of them, drawn
//! at random ([`resume`]), to drop their connection without a close
//! handshake and join again, at the same URL or the next, with `since`: the
//! epoch and offset of the last message each got. The replay that follows a
//! `recovered: true` answer goes through the same check as live messages;
//! a `recovered: false` answer is counted apart and the check starts again
//! at the answer's offset.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::sync::{Notify, Semaphore};
use wshub_proto::frame::Opcode;

use crate::client::{drive, flush, open, Driven, Session};
use crate::error::ConnectionError;
use crate::frames::{FrameReader, Item, OutBuf};
use crate::report::{DeliveryReport, FanoutReport, Report, Results, ResumeReport, UrlReport};
use crate::runner::{
    join_local, join_shards, run_started, spawn_shards, stopped, Coordinator, Phase, Shard, Shared,
};
use crate::stats::{histogram, record, Errors, Latency, Live, Timing};
use crate::target::Target;
use crate::{Error, FanoutConfig};
use resume::Rounds;
use track::{scan_message, stamp, Resumed, Track, STAMP_LEN};
use wshub::ClientStream as Stream;

mod resume;
mod track;

/// Largest hub message a connection accepts: the hub's own frames are small;
/// a `joined` answer lists every member's name, so allow for many.
const MAX_MESSAGE: usize = 16 << 20;

/// A slot in [`FanState::seen`] of a connection that has gone.
const GONE: u64 = u64::MAX;

/// What the publisher and every subscriber share across threads.
#[derive(Debug)]
struct FanState {
    /// The last `seq` each subscriber has seen; the publisher's own
    /// connection is the last slot. [`GONE`] once a connection has failed,
    /// and while a subscriber is away: from the moment it drops its
    /// connection to resume until it has caught up (see [`wait_window`]).
    seen: Box<[AtomicU64]>,
    /// The `seq` of the last publish.
    last_seq: AtomicU64,
    /// The publisher has stopped publishing.
    publishing_done: AtomicBool,
    /// The publisher waits for the window to open.
    waiting: AtomicBool,
    notify: Notify,
    /// Publish times are nanoseconds since this.
    epoch: Instant,
    timing: OnceLock<Timing>,
    /// Where subscriber `i` joins: `targets[i % targets.len()]`.
    targets: Box<[Target]>,
    /// Where the publisher joins.
    publisher: Target,
    /// The room.
    room: String,
    /// With `resume_share`: each subscriber's wake-up to drop its
    /// connection and resume. Empty without.
    drop_now: Box<[Notify]>,
    /// Subscribers told to resume that have not caught up yet (nor ended).
    resuming: Box<[AtomicBool]>,
    /// How many of `resuming` are set: the end of the run waits for them.
    away: AtomicUsize,
    /// A resuming subscriber moves on to the next URL.
    resume_elsewhere: bool,
    /// Members join with names of their own ([`member_name`]).
    named: bool,
}

impl FanState {
    fn new(fanout: &FanoutConfig, targets: Box<[Target]>, publisher: Target) -> Self {
        let subscribers = fanout.subscribers;
        let resumes = fanout.resume_share > 0.0;
        Self {
            seen: (0..=subscribers).map(|_| AtomicU64::new(0)).collect(),
            last_seq: AtomicU64::new(0),
            publishing_done: AtomicBool::new(false),
            waiting: AtomicBool::new(false),
            notify: Notify::new(),
            epoch: Instant::now(),
            timing: OnceLock::new(),
            targets,
            publisher,
            room: fanout.room.clone(),
            drop_now: (0..if resumes { subscribers } else { 0 })
                .map(|_| Notify::new())
                .collect(),
            resuming: (0..if resumes { subscribers } else { 0 })
                .map(|_| AtomicBool::new(false))
                .collect(),
            away: AtomicUsize::new(0),
            resume_elsewhere: fanout.resume_elsewhere,
            named: fanout.named,
        }
    }

    /// Tells subscriber `slot` to drop its connection and resume, unless it
    /// is still resuming from the last time.
    fn tell_to_resume(&self, slot: usize) {
        if self.resuming[slot].swap(true, Ordering::SeqCst) {
            return;
        }
        self.away.fetch_add(1, Ordering::SeqCst);
        // A subscriber whose connection failed since it was chosen has
        // called `back` already, or will not: take the word back.
        if self.seen[slot].load(Ordering::SeqCst) == GONE {
            self.back(slot);
            return;
        }
        self.drop_now[slot].notify_one();
    }

    /// Subscriber `slot` has caught up after resuming, or has ended.
    fn back(&self, slot: usize) {
        if self
            .resuming
            .get(slot)
            .is_some_and(|r| r.swap(false, Ordering::SeqCst))
        {
            self.away.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Subscribers that may be told to resume now: connected, and not
    /// resuming already.
    fn resumable(&self) -> Vec<usize> {
        (0..self.resuming.len())
            .filter(|&slot| {
                !self.resuming[slot].load(Ordering::SeqCst)
                    && self.seen[slot].load(Ordering::SeqCst) != GONE
            })
            .collect()
    }

    /// Where a subscriber at `seat` reconnects to resume.
    fn resume_seat(&self, seat: Seat) -> Seat {
        if self.resume_elsewhere {
            Seat {
                url: (seat.url + 1) % self.targets.len(),
                ..seat
            }
        } else {
            seat
        }
    }

    /// Subscriber `slot`'s place at first: its URL is `targets[slot % n]`.
    fn subscriber_seat(&self, slot: usize) -> Seat {
        Seat {
            slot,
            url: slot % self.targets.len(),
        }
    }

    /// The publisher's place: the last slot, its own URL.
    fn publisher_seat(&self) -> Seat {
        Seat {
            slot: self.seen.len() - 1,
            url: usize::MAX,
        }
    }

    fn target(&self, seat: Seat) -> &Target {
        self.targets.get(seat.url).unwrap_or(&self.publisher)
    }

    /// The lowest `seq` seen by the members the publisher waits for: the
    /// connection in slot `own` only, or every connected member.
    fn paced_seen(&self, own: Option<usize>) -> u64 {
        match own {
            Some(slot) => self.seen[slot].load(Ordering::SeqCst),
            None => self.min_seen(),
        }
    }

    /// The lowest `seq` seen by a connected member ([`GONE`] if none is).
    fn min_seen(&self) -> u64 {
        self.seen
            .iter()
            .map(|s| s.load(Ordering::SeqCst))
            .min()
            .unwrap_or(GONE)
    }

    fn set_seen(&self, slot: usize, seq: u64) {
        self.seen[slot].store(seq, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }
}

#[derive(Debug)]
struct FanStats {
    hist: Histogram<u64>,
    deliveries: u64,
    joined: u64,
    disconnected: u64,
    delivery: DeliveryTotals,
    published: u64,
    published_total: u64,
    errors: Errors,
    publisher_error: Option<ConnectionError>,
    /// By subscriber URL, as [`FanState::targets`].
    per_url: Vec<UrlCounts>,
    resume: ResumeTotals,
    /// From a subscriber's drop to its first live message after resuming.
    resume_hist: Histogram<u64>,
}

/// What the subscribers' resumes add up to.
#[derive(Debug, Default, Clone, Copy)]
struct ResumeTotals {
    /// `join`s with `since` that were answered.
    resumes: u64,
    recovered: u64,
    not_recovered: u64,
    /// Messages between a subscriber's last and the `joined` offset of a
    /// resume not recovered (same epoch).
    skipped: u64,
    /// Messages replayed after a recovered resume.
    replayed: u64,
    /// Reconnections or `join`s that failed.
    failed: u64,
}

impl ResumeTotals {
    fn merge(&mut self, other: &Self) {
        self.resumes += other.resumes;
        self.recovered += other.recovered;
        self.not_recovered += other.not_recovered;
        self.skipped += other.skipped;
        self.replayed += other.replayed;
        self.failed += other.failed;
    }
}

/// Which member a connection is, and at which URL it joins.
#[derive(Debug, Clone, Copy)]
struct Seat {
    /// The member's slot in [`FanState::seen`].
    slot: usize,
    /// Its URL's index in [`FanState::targets`]; out of range for the
    /// publisher, which joins at [`FanState::publisher`].
    url: usize,
}

/// What the subscribers of one URL did.
#[derive(Debug, Default, Clone, Copy)]
struct UrlCounts {
    joined: u64,
    /// Resumes answered at this URL.
    resumes: u64,
    /// As [`FanStats::deliveries`]: measured, with a latency sample.
    deliveries: u64,
}

impl FanStats {
    fn new(urls: usize) -> Self {
        Self {
            hist: histogram(),
            deliveries: 0,
            joined: 0,
            disconnected: 0,
            delivery: DeliveryTotals::default(),
            published: 0,
            published_total: 0,
            errors: Errors::default(),
            publisher_error: None,
            per_url: vec![UrlCounts::default(); urls],
            resume: ResumeTotals::default(),
            resume_hist: histogram(),
        }
    }
}

/// What the subscribers' [`Track`]s add up to.
#[derive(Debug, Default)]
struct DeliveryTotals {
    /// Subscribers whose deliveries were checked (those that joined).
    subscribers: u64,
    /// Offsets skipped over, and those published that a subscriber had not
    /// received by the end.
    lost: u64,
    duplicated: u64,
    subscribers_with_lost: u64,
    subscribers_with_duplicated: u64,
    epoch_changes: u64,
    unverified: u64,
}

impl DeliveryTotals {
    /// Adds one subscriber's track; `tail` is what it had not received of
    /// the last publish.
    fn add(&mut self, track: &Track, tail: u64) {
        let lost = track.lost + tail;
        self.subscribers += 1;
        self.lost += lost;
        self.duplicated += track.duplicated;
        self.subscribers_with_lost += u64::from(lost > 0);
        self.subscribers_with_duplicated += u64::from(track.duplicated > 0);
        self.epoch_changes += track.epoch_changes;
        self.unverified += track.unverified;
    }

    fn merge(&mut self, other: &Self) {
        self.subscribers += other.subscribers;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.subscribers_with_lost += other.subscribers_with_lost;
        self.subscribers_with_duplicated += other.subscribers_with_duplicated;
        self.epoch_changes += other.epoch_changes;
        self.unverified += other.unverified;
    }
}

/// Runs `fanout` and reports.
pub(crate) fn run(shared: Arc<Shared>, fanout: FanoutConfig) -> Result<Report, Error> {
    let config = &shared.config;
    let resolve = |url: &str| Target::resolve(url, config.tls.as_ref(), config.tls_resumption);
    let urls = config.subscriber_urls(&fanout);
    let publisher_url = fanout.publisher_url.as_deref().unwrap_or(urls[0]);
    let targets = urls
        .iter()
        .map(|url| resolve(url))
        .collect::<Result<Box<[_]>, _>>()?;
    let state = Arc::new(FanState::new(&fanout, targets, resolve(publisher_url)?));
    let setup = Arc::new(Semaphore::new(fanout.handshake_concurrency));
    let handles = {
        let state = state.clone();
        let fanout = fanout.clone();
        spawn_shards(&shared, move |shard| {
            shard_main(shard, state.clone(), setup.clone(), fanout.clone())
        })?
    };
    let mut coordinator = Coordinator::new(&shared, "deliveries");
    let live = &shared.live;
    let members = fanout.subscribers as u64 + 1;
    coordinator.wait_until(&handles, || {
        Live::get(&live.opened) + Live::get(&live.failed) >= members
    });
    if !state.publishing_done.load(Ordering::SeqCst) {
        let timing = Timing::new(Instant::now(), config.warmup, config.duration);
        let _ = state.timing.set(timing);
        shared.set_phase(Phase::Run(timing));
        let mut rounds = Rounds::new(
            fanout.resume_share,
            fanout.resume_every,
            fanout.subscribers,
            &timing,
        );
        coordinator.wait_until(&handles, || {
            let now = Instant::now();
            if let Some(rounds) = &mut rounds {
                rounds.tick(&state, now);
            }
            now >= timing.end
        });
        // Subscribers still away are out of `min_seen`: wait for them too.
        let drain_until = Instant::now() + config.timeout;
        coordinator.wait_until(&handles, || {
            Instant::now() >= drain_until
                || (state.publishing_done.load(Ordering::SeqCst)
                    && state.away.load(Ordering::SeqCst) == 0
                    && state.min_seen() >= state.last_seq.load(Ordering::SeqCst))
        });
    }
    shared.set_phase(Phase::Stop);
    coordinator.wait_until(&handles, || false);
    drop(coordinator);
    let mut total = FanStats::new(urls.len());
    for s in join_shards(handles)? {
        if let Some(e) = s.publisher_error {
            return Err(Error::Publisher(e));
        }
        total
            .hist
            .add(&s.hist)
            .expect("histograms share their bounds");
        total.deliveries += s.deliveries;
        total.joined += s.joined;
        total.disconnected += s.disconnected;
        total.delivery.merge(&s.delivery);
        total.published += s.published;
        total.published_total += s.published_total;
        total.errors.merge(s.errors);
        for (total, s) in total.per_url.iter_mut().zip(&s.per_url) {
            total.joined += s.joined;
            total.resumes += s.resumes;
            total.deliveries += s.deliveries;
        }
        total.resume.merge(&s.resume);
        total
            .resume_hist
            .add(&s.resume_hist)
            .expect("histograms share their bounds");
    }
    let secs = config.duration.as_secs_f64();
    let report = FanoutReport {
        subscribers: fanout.subscribers,
        joined: total.joined,
        failed: fanout.subscribers as u64 - total.joined,
        disconnected: total.disconnected,
        room: fanout.room.clone(),
        size: fanout.size,
        window: fanout.window,
        rate: fanout.rate,
        published: total.published,
        published_total: total.published_total,
        publishes_per_sec: total.published as f64 / secs,
        deliveries: total.deliveries,
        deliveries_per_sec: total.deliveries as f64 / secs,
        latency: Latency::from_histogram(&total.hist),
        publisher_url: publisher_url.to_owned(),
        urls: urls
            .iter()
            .zip(&total.per_url)
            .enumerate()
            .map(|(i, (url, counts))| UrlReport {
                url: (*url).to_owned(),
                // Subscribers i, i + n, i + 2n, ... of the run's M.
                subscribers: ((fanout.subscribers + urls.len() - 1 - i) / urls.len()) as u64,
                joined: counts.joined,
                resumes: counts.resumes,
                deliveries: counts.deliveries,
                deliveries_per_sec: counts.deliveries as f64 / secs,
            })
            .collect(),
        lost: total.delivery.lost,
        out_of_order: total.delivery.duplicated,
        delivery: DeliveryReport {
            verify: fanout.verify,
            subscribers: total.delivery.subscribers,
            lost: total.delivery.lost,
            duplicated: total.delivery.duplicated,
            subscribers_with_lost: total.delivery.subscribers_with_lost,
            subscribers_with_duplicated: total.delivery.subscribers_with_duplicated,
            epoch_changes: total.delivery.epoch_changes,
            unverified: total.delivery.unverified,
        },
        resume: (fanout.resume_share > 0.0).then(|| {
            Box::new(ResumeReport {
                share: fanout.resume_share,
                every_secs: fanout.resume_every.as_secs_f64(),
                elsewhere: fanout.resume_elsewhere,
                resumes: total.resume.resumes,
                recovered: total.resume.recovered,
                not_recovered: total.resume.not_recovered,
                skipped: total.resume.skipped,
                replayed: total.resume.replayed,
                failed: total.resume.failed,
                disconnect_to_live: Latency::from_histogram(&total.resume_hist),
            })
        }),
        errors: total.errors.count,
        first_error: total.errors.first,
    };
    Ok(Report::new(config, Results::Fanout(report)))
}

async fn shard_main(
    shard: Rc<Shard>,
    state: Arc<FanState>,
    setup: Arc<Semaphore>,
    fanout: FanoutConfig,
) -> FanStats {
    let stats = Rc::new(RefCell::new(FanStats::new(state.targets.len())));
    let mut tasks: Vec<_> = shard
        .owned(fanout.subscribers)
        .map(|slot| {
            tokio::task::spawn_local(subscriber(
                shard.clone(),
                state.clone(),
                setup.clone(),
                stats.clone(),
                slot,
            ))
        })
        .collect();
    if shard.index == 0 {
        tasks.push(tokio::task::spawn_local(publisher(
            shard.clone(),
            state.clone(),
            stats.clone(),
            fanout,
        )));
    }
    join_local(tasks, stats).await
}

/// Opens a member's connection and sends `request`, its `join`, reading
/// everything the hub sends meanwhile, until the `joined` answer. `track` is
/// what the member has received so far, carried over from its last
/// connection when it resumes.
async fn join_room<'a>(
    shard: &'a Shard,
    state: &'a FanState,
    stats: &'a RefCell<FanStats>,
    track: &'a mut Track,
    request: &[u8],
    seat: Seat,
    setup: Option<&Semaphore>,
) -> Result<(Stream, FanSession<'a>), ConnectionError> {
    let shared = &shard.shared;
    let timeout = shared.config.timeout;
    let opened = {
        let _permit = match setup {
            Some(s) => s.acquire().await.ok(),
            None => None,
        };
        open(state.target(seat), timeout).await
    };
    let (mut tcp, early) = opened?;
    let mut session = FanSession::new(state, stats, &shared.live, seat, track);
    session.control.push(Opcode::Text, request);
    if !early.is_empty() {
        session.on_read(&early, Instant::now());
    }
    if !session.track.joined && session.error.is_none() {
        let limit = tokio::time::sleep(timeout);
        tokio::pin!(limit);
        match drive(&mut tcp, &mut session, &shard.buf, limit).await {
            Driven::Stopped => return Err(ConnectionError::Timeout),
            Driven::Done => {}
            Driven::Eof => return Err(ConnectionError::Eof),
            Driven::Io(e) => return Err(ConnectionError::Io(e)),
        }
    }
    match session.error.take() {
        Some(e) => Err(e),
        None if session.track.joined => Ok((tcp, session)),
        None => Err(ConnectionError::BadHubMessage),
    }
}

/// Waits for [`Phase::Stop`] or, with `drop_now`, for the word to resume.
async fn stop_or_resume(shard: &Shard, drop_now: Option<&Notify>) {
    let stop = stopped(shard.shared.watch_phase());
    match drop_now {
        None => stop.await,
        Some(drop_now) => {
            tokio::select! {
                () = stop => {}
                () = drop_now.notified() => {}
            }
        }
    }
}

/// A member's `join` of `room`: as `name` when given (else the hub calls it
/// `anon-<id>`), and with `since`, the epoch and offset to resume after,
/// when given.
fn join_request(room: &str, name: Option<&str>, since: Option<(&str, u64)>) -> Vec<u8> {
    let mut request = serde_json::json!({ "op": "join", "room": room });
    if let Some(name) = name {
        request["name"] = name.into();
    }
    if let Some((epoch, offset)) = since {
        request["since"] = serde_json::json!({ "epoch": epoch, "offset": offset });
    }
    request.to_string().into_bytes()
}

/// The name member `slot` joins as on its `resumes`-th reconnection (0: its
/// first connection) with [`FanoutConfig::named`], or `None`. A name is
/// used once, so that a resume is never refused because the hub still
/// holds the dropped connection's entry (`name_taken`).
fn member_name(state: &FanState, slot: usize, resumes: u64) -> Option<String> {
    if !state.named {
        return None;
    }
    Some(match (slot == state.publisher_seat().slot, resumes) {
        (true, _) => "p".to_owned(),
        (false, 0) => format!("s{slot}"),
        (false, k) => format!("s{slot}r{k}"),
    })
}

async fn subscriber(
    shard: Rc<Shard>,
    state: Arc<FanState>,
    setup: Arc<Semaphore>,
    stats: Rc<RefCell<FanStats>>,
    slot: usize,
) {
    let live = &shard.shared.live;
    let mut seat = state.subscriber_seat(slot);
    let mut track = Track::default();
    let mut resumes = 0;
    let join = join_request(&state.room, member_name(&state, slot, 0).as_deref(), None);
    let joined = join_room(
        &shard,
        &state,
        &stats,
        &mut track,
        &join,
        seat,
        Some(&setup),
    )
    .await;
    let (mut tcp, mut session) = match joined {
        Ok(joined) => joined,
        Err(e) => {
            state.set_seen(slot, GONE);
            Live::add(&live.failed, 1);
            stats.borrow_mut().errors.add(live, &e);
            return;
        }
    };
    {
        let mut stats = stats.borrow_mut();
        stats.joined += 1;
        stats.per_url[seat.url].joined += 1;
    }
    Live::add(&live.opened, 1);
    loop {
        let ended = {
            let stop = stop_or_resume(&shard, state.drop_now.get(slot));
            tokio::pin!(stop);
            drive(&mut tcp, &mut session, &shard.buf, stop).await
        };
        if !matches!(ended, Driven::Stopped) || shard.shared.phase() == Phase::Stop {
            finish(&shard, &mut tcp, &mut session, ended).await;
            state.back(slot);
            return;
        }
        // Told to resume: the connection ends at once, with no close
        // handshake, as when a node dies or the network fails. Until this
        // subscriber has caught up, the publisher's window leaves it out.
        let dropped_at = state.epoch.elapsed().as_nanos() as u64;
        drop(session);
        drop(tcp);
        state.set_seen(slot, GONE);
        seat = state.resume_seat(seat);
        track.resume(dropped_at);
        resumes += 1;
        let name = member_name(&state, slot, resumes);
        // No epoch to resume in: a plain join, answered without `recovered`.
        let request = join_request(&state.room, name.as_deref(), track.since());
        let joined = join_room(&shard, &state, &stats, &mut track, &request, seat, None).await;
        (tcp, session) = match joined {
            Ok(joined) => joined,
            Err(e) => {
                let mut stats = stats.borrow_mut();
                stats.resume.failed += 1;
                stats.disconnected += 1;
                stats.errors.add(live, &e);
                let last = state.last_seq.load(Ordering::SeqCst);
                stats.delivery.add(&track, last.saturating_sub(track.last));
                state.back(slot);
                return;
            }
        };
        stats.borrow_mut().per_url[seat.url].resumes += 1;
    }
}

/// Closes a member's connection after [`Phase::Stop`] (or records why it
/// ended before), and adds up its lost messages.
async fn finish(shard: &Shard, tcp: &mut Stream, session: &mut FanSession<'_>, ended: Driven) {
    let live = &shard.shared.live;
    let mut error = session.error.take();
    match ended {
        Driven::Stopped => {
            session.closing = true;
            session.control.close();
            let limit = tokio::time::sleep(shard.shared.config.timeout);
            tokio::pin!(limit);
            error = match drive(tcp, session, &shard.buf, limit).await {
                Driven::Done => session.error.take(),
                Driven::Stopped => Some(ConnectionError::Timeout),
                Driven::Eof => Some(ConnectionError::Eof),
                Driven::Io(e) => Some(ConnectionError::Io(e)),
            };
        }
        Driven::Done => flush(tcp, session).await,
        Driven::Eof => error = error.or(Some(ConnectionError::Eof)),
        Driven::Io(e) => error = error.or(Some(ConnectionError::Io(e))),
    }
    let disconnected = !session.closing;
    if disconnected {
        session.state.set_seen(session.seat.slot, GONE);
    }
    let last = session.state.last_seq.load(Ordering::SeqCst);
    let mut stats = session.stats.borrow_mut();
    if session.counted {
        let tail = last.saturating_sub(session.track.last);
        stats.delivery.add(session.track, tail);
        if disconnected {
            stats.disconnected += 1;
        }
    }
    if let Some(e) = error.or(disconnected.then_some(ConnectionError::Eof)) {
        stats.errors.add(live, &e);
    }
}

async fn publisher(
    shard: Rc<Shard>,
    state: Arc<FanState>,
    stats: Rc<RefCell<FanStats>>,
    fanout: FanoutConfig,
) {
    let live = &shard.shared.live;
    let seat = state.publisher_seat();
    let slot = seat.slot;
    let mut track = Track::default();
    let join = join_request(&state.room, member_name(&state, slot, 0).as_deref(), None);
    let joined = join_room(&shard, &state, &stats, &mut track, &join, seat, None).await;
    let (mut tcp, mut session) = match joined {
        Ok(joined) => joined,
        Err(e) => {
            state.set_seen(slot, GONE);
            state.publishing_done.store(true, Ordering::SeqCst);
            Live::add(&live.failed, 1);
            stats.borrow_mut().publisher_error = Some(e);
            return;
        }
    };
    session.counted = false;
    Live::add(&live.opened, 1);
    let base = session.track.last;
    // Keep reading (presence notices of the subscribers joining) until the run starts.
    let mut phase = shard.shared.watch_phase();
    let started = {
        let run = run_started(&mut phase);
        tokio::pin!(run);
        drive(&mut tcp, &mut session, &shard.buf, run).await
    };
    let timing = match (started, shard.shared.phase()) {
        (Driven::Stopped, Phase::Run(timing)) => Some(timing),
        (Driven::Stopped, _) => None,
        (ended, _) => {
            state.publishing_done.store(true, Ordering::SeqCst);
            finish(&shard, &mut tcp, &mut session, ended).await;
            return;
        }
    };
    if let Some(timing) = timing {
        let mut publish = Publish::new(&fanout.room, fanout.size);
        let interval = fanout.rate.map(|r| Duration::from_secs_f64(1.0 / r));
        let window = fanout.window as u64;
        // With `own_copies` only the publisher's own slot, the last, paces it.
        let paced_by = fanout.own_copies.then_some(slot);
        let mut published: u64 = 0;
        let mut min_cache = base;
        let end = tokio::time::sleep_until(timing.end.into());
        tokio::pin!(end);
        loop {
            let next_seq = base + published + 1;
            let due = interval.map(|i| timing.start + i.mul_f64(published as f64));
            let gate = async {
                if let Some(due) = due.filter(|d| *d > Instant::now()) {
                    tokio::time::sleep_until(due.into()).await;
                }
                wait_window(&state, next_seq, window, paced_by, &mut min_cache).await;
            };
            let stop = async {
                tokio::select! {
                    biased;
                    () = &mut end => {}
                    () = gate => {}
                }
            };
            tokio::pin!(stop);
            match drive(&mut tcp, &mut session, &shard.buf, stop).await {
                Driven::Stopped => {}
                ended => {
                    state.publishing_done.store(true, Ordering::SeqCst);
                    finish(&shard, &mut tcp, &mut session, ended).await;
                    return;
                }
            }
            let now = Instant::now();
            if now >= timing.end {
                break;
            }
            let stamp = now.duration_since(state.epoch).as_nanos() as u64;
            publish.queue(&mut session.control, stamp);
            published += 1;
            state.last_seq.store(base + published, Ordering::SeqCst);
            let mut stats = stats.borrow_mut();
            stats.published_total += 1;
            if timing.measuring(now) {
                stats.published += 1;
            }
        }
    }
    state.publishing_done.store(true, Ordering::SeqCst);
    let stop = stopped(shard.shared.watch_phase());
    tokio::pin!(stop);
    let ended = drive(&mut tcp, &mut session, &shard.buf, stop).await;
    finish(&shard, &mut tcp, &mut session, ended).await;
}

/// Waits until publishing `next_seq` keeps within `window` of the slowest
/// member, or of the publisher's own connection (slot `own`). `min_cache` is
/// a lower bound of that member's `seq` (they only grow), so the common case
/// reads no shared state.
///
/// A subscriber that drops its connection to resume is out of the slowest
/// member from the drop until it has caught up (its `seen` is [`GONE`]
/// meanwhile, as a failed one's is): while it is away nothing it could
/// receive tells the publisher where it is, so waiting for it would stall
/// the publisher, and every other subscriber with it, for as long as its
/// reconnection takes, and for good if that fails. It comes back with the
/// offset of its `joined` answer or later, which is at or above any `seen`
/// read before it rejoined (the room's offset only grows), so `min_cache`
/// stays a lower bound. The publisher's own connection never leaves, so the
/// minimum is never [`GONE`].
async fn wait_window(
    state: &FanState,
    next_seq: u64,
    window: u64,
    own: Option<usize>,
    min_cache: &mut u64,
) {
    if next_seq.saturating_sub(*min_cache) <= window {
        return;
    }
    loop {
        let notified = state.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        state.waiting.store(true, Ordering::SeqCst);
        *min_cache = state.paced_seen(own);
        if next_seq.saturating_sub(*min_cache) <= window {
            state.waiting.store(false, Ordering::SeqCst);
            return;
        }
        // The notification is the wake-up; the timeout only bounds a miss.
        let _ = tokio::time::timeout(Duration::from_millis(20), notified).await;
    }
}

/// The publish request, with the stamp rewritten in place each time.
#[derive(Debug)]
struct Publish {
    payload: Vec<u8>,
    stamp_at: usize,
}

impl Publish {
    fn new(room: &str, size: usize) -> Self {
        let mut payload = br#"{"op":"publish","room":"#.to_vec();
        payload.extend_from_slice(
            serde_json::to_string(room)
                .expect("a string serializes")
                .as_bytes(),
        );
        payload.extend_from_slice(br#","message":""#);
        let stamp_at = payload.len();
        payload.resize(stamp_at + STAMP_LEN, b'0');
        payload.resize(stamp_at + size, b'.');
        payload.extend_from_slice(br#""}"#);
        Self { payload, stamp_at }
    }

    fn queue(&mut self, out: &mut OutBuf, stamp: u64) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, byte) in self.payload[self.stamp_at..self.stamp_at + STAMP_LEN]
            .iter_mut()
            .enumerate()
        {
            *byte = HEX[(stamp >> (60 - 4 * i)) as usize & 0xf];
        }
        out.push(Opcode::Text, &self.payload);
    }
}

/// A hub message, borrowed from the read buffer where possible.
#[derive(Debug, Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    seq: Option<u64>,
    offset: Option<u64>,
    #[serde(borrow)]
    epoch: Option<Cow<'a, str>>,
    recovered: Option<bool>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
}

/// What one read's messages add up to, applied once per read.
struct Tally<'s> {
    stats: &'s mut FanStats,
    now_ns: u64,
    measuring: bool,
    counted: bool,
    deliveries: u64,
    error: Option<ConnectionError>,
}

/// One delivery of the message at `offset` under `epoch`, published at
/// `stamp` (if it is one of ours).
#[inline]
fn delivered(
    track: &mut Track,
    offset: u64,
    epoch: Option<&[u8]>,
    stamp: Option<u64>,
    tally: &mut Tally<'_>,
) {
    tally.deliveries += 1;
    if !track.delivered(offset, epoch) {
        // Replayed after a resume: published while this subscriber was
        // away, so its latency says nothing of the fan-out.
        tally.stats.resume.replayed += 1;
        return;
    }
    if tally.counted && tally.measuring {
        if let Some(stamp) = stamp {
            tally.stats.deliveries += 1;
            let ns = tally.now_ns.saturating_sub(stamp);
            record(&mut tally.stats.hist, Duration::from_nanos(ns));
        }
    }
    if let Some(dropped_at) = track.dropped_at {
        track.dropped_at = None;
        let ns = tally.now_ns.saturating_sub(dropped_at);
        record(&mut tally.stats.resume_hist, Duration::from_nanos(ns));
    }
}

/// One whole message from the hub.
fn on_message(track: &mut Track, text: &[u8], tally: &mut Tally<'_>) {
    // Presence notices are most of what a big room's members receive
    // while it fills up; they need no parsing.
    if text.starts_with(br#"{"type":"presence""#) {
        return;
    }
    if let Some(m) = scan_message(text) {
        match m.place {
            Some(place) => delivered(track, place.offset, Some(place.epoch), m.stamp, tally),
            None => delivered(track, m.seq, None, m.stamp, tally),
        }
        return;
    }
    let Ok(incoming) = serde_json::from_slice::<Incoming<'_>>(text) else {
        if text != b"pong" {
            tally.error.get_or_insert(ConnectionError::BadHubMessage);
        }
        return;
    };
    let epoch = incoming.epoch.as_deref().map(str::as_bytes);
    match (&*incoming.kind, incoming.offset.or(incoming.seq)) {
        ("message", Some(offset)) => {
            let stamp = incoming
                .message
                .as_deref()
                .and_then(|m| stamp(m.as_bytes()));
            // Checked by offset only with both of its place's names.
            let epoch = epoch.filter(|_| incoming.offset.is_some());
            delivered(track, offset, epoch, stamp, tally);
        }
        ("joined", Some(offset)) if !track.joined && track.resuming => {
            let recovered = incoming.recovered == Some(true);
            let resume = &mut tally.stats.resume;
            resume.resumes += 1;
            match track.on_resumed(offset, epoch, recovered) {
                Resumed::Recovered { .. } => resume.recovered += 1,
                Resumed::NotRecovered { skipped } => {
                    resume.not_recovered += 1;
                    resume.skipped += skipped.unwrap_or(0);
                }
            }
        }
        ("joined", Some(offset)) if !track.joined => track.on_joined(offset, epoch),
        ("error", _) => {
            let code = incoming.code.map_or_else(String::new, Cow::into_owned);
            tally.error.get_or_insert(ConnectionError::Hub { code });
        }
        _ => {}
    }
}

/// A room member's connection: the publisher's or a subscriber's.
struct FanSession<'a> {
    state: &'a FanState,
    stats: &'a RefCell<FanStats>,
    live: &'a Live,
    seat: Seat,
    /// Deliveries, latency and losses count (not on the publisher's own connection).
    counted: bool,
    reader: FrameReader,
    control: OutBuf,
    /// A message arriving in several reads or frames.
    message: Vec<u8>,
    /// What the member has received, on this connection and before.
    track: &'a mut Track,
    /// A resume that has not caught up yet with the offset of its `joined`
    /// answer: the publisher's window leaves it out until then.
    catching_up: bool,
    closing: bool,
    error: Option<ConnectionError>,
}

impl<'a> FanSession<'a> {
    fn new(
        state: &'a FanState,
        stats: &'a RefCell<FanStats>,
        live: &'a Live,
        seat: Seat,
        track: &'a mut Track,
    ) -> Self {
        Self {
            state,
            stats,
            live,
            seat,
            counted: true,
            reader: FrameReader::default(),
            control: OutBuf::default(),
            message: Vec::new(),
            catching_up: track.resuming,
            track,
            closing: false,
            error: None,
        }
    }
}

impl Session for FanSession<'_> {
    fn on_read(&mut self, data: &[u8], now: Instant) -> bool {
        let was_joined = self.track.joined;
        let measuring = self.state.timing.get().is_some_and(|t| t.measuring(now));
        let mut stats = self.stats.borrow_mut();
        let measured_before = stats.deliveries;
        let mut tally = Tally {
            stats: &mut stats,
            now_ns: now.duration_since(self.state.epoch).as_nanos() as u64,
            measuring,
            counted: self.counted,
            deliveries: 0,
            error: None,
        };
        let mut close = None;
        let Self {
            reader,
            control,
            message,
            track,
            ..
        } = self;
        let result = reader.feed(data, &mut |item| match item {
            Item::Data {
                payload,
                first,
                last,
                ..
            } => {
                if first && last {
                    on_message(track, payload, &mut tally);
                    return;
                }
                if first {
                    message.clear();
                }
                if message.len() + payload.len() > MAX_MESSAGE {
                    tally.error.get_or_insert(ConnectionError::MessageTooBig {
                        size: (message.len() + payload.len()) as u64,
                    });
                    return;
                }
                message.extend_from_slice(payload);
                if last {
                    on_message(track, message, &mut tally);
                }
            }
            Item::Ping(payload) => control.pong(payload),
            Item::Pong => {}
            Item::Close(code) => close = Some(code),
        });
        let deliveries = tally.deliveries;
        let error = tally.error.take();
        if self.counted {
            let measured = stats.deliveries - measured_before;
            if measured > 0 {
                stats.per_url[self.seat.url].deliveries += measured;
            }
        }
        drop(stats);
        if self.counted {
            Live::add(&self.live.events, deliveries);
        }
        if self.track.joined && (deliveries > 0 || !was_joined) {
            if !self.catching_up {
                self.state.set_seen(self.seat.slot, self.track.last);
            } else if self.track.last >= self.track.replay_until {
                self.catching_up = false;
                self.state.set_seen(self.seat.slot, self.track.last);
                self.state.back(self.seat.slot);
            }
        }
        if let Err(e) = result {
            self.error = Some(e.into());
            return false;
        }
        if let Some(e) = error {
            self.error.get_or_insert(e);
        }
        if let Some(code) = close {
            if !self.closing {
                self.error
                    .get_or_insert(ConnectionError::ClosedByServer { code });
                self.control.close();
            }
            return false;
        }
        // While joining, the join answer ends the first `drive`.
        self.error.is_none() && (was_joined || !self.track.joined)
    }

    fn pending(&self) -> &[u8] {
        self.control.pending()
    }

    fn wrote(&mut self, n: usize) {
        self.control.advance(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publish_request_is_json_with_the_stamp_first_in_the_message() {
        let mut publish = Publish::new("bench \"1\"", 20);
        let mut out = OutBuf::default();
        publish.queue(&mut out, 0x0123_4567_89ab_cdef);
        let start = publish.stamp_at;
        let value: serde_json::Value = serde_json::from_slice(&publish.payload).unwrap();
        assert_eq!(value["op"], "publish");
        assert_eq!(value["room"], "bench \"1\"");
        assert_eq!(value["message"], "0123456789abcdef....");
        assert_eq!(&publish.payload[start..start + 4], b"0123");
        assert!(!out.is_empty());
    }

    fn tally(stats: &mut FanStats) -> Tally<'_> {
        Tally {
            stats,
            now_ns: 0,
            measuring: false,
            counted: true,
            deliveries: 0,
            error: None,
        }
    }

    #[test]
    fn gaps_count_as_lost_and_old_offsets_as_duplicated() {
        let mut stats = FanStats::new(1);
        let mut tally = tally(&mut stats);
        let mut track = Track::default();
        on_message(
            &mut track,
            br#"{"type":"joined","room":"r","name":"n","members":[],"offset":4,"seq":4,"epoch":"e-1"}"#,
            &mut tally,
        );
        assert!(track.joined);
        for offset in [5, 6, 9, 7, 10] {
            let text = format!(
                r#"{{"type":"message","room":"r","from":"p","seq":{offset},"ts":1,"message":"x","from_id":2,"epoch":"e-1","offset":{offset}}}"#
            );
            on_message(&mut track, text.as_bytes(), &mut tally);
        }
        // Fields in another order go through serde, and are checked alike.
        on_message(
            &mut track,
            br#"{"offset":12,"epoch":"e-1","type":"message","room":"r","seq":12,"message":"x"}"#,
            &mut tally,
        );
        assert_eq!(
            (
                track.last,
                track.lost,
                track.duplicated,
                track.unverified,
                track.epoch_changes
            ),
            (12, 3, 1, 0, 0)
        );
        assert_eq!(tally.deliveries, 6);
        assert!(tally.error.is_none());
        on_message(
            &mut track,
            br#"{"type":"error","code":"not_joined","message":"m"}"#,
            &mut tally,
        );
        assert!(matches!(tally.error, Some(ConnectionError::Hub { .. })));
    }

    #[test]
    fn a_server_without_offsets_is_checked_by_seq_and_counted_unverified() {
        let mut stats = FanStats::new(1);
        let mut tally = tally(&mut stats);
        let mut track = Track::default();
        on_message(
            &mut track,
            br#"{"type":"joined","room":"r","name":"n","seq":4}"#,
            &mut tally,
        );
        for seq in [5, 7, 7] {
            let text = format!(
                r#"{{"type":"message","room":"r","from":"p","seq":{seq},"ts":1,"message":"x"}}"#
            );
            on_message(&mut track, text.as_bytes(), &mut tally);
        }
        assert_eq!(
            (track.last, track.lost, track.duplicated, track.unverified),
            (7, 1, 1, 3)
        );
    }
}
