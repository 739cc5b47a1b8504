//! The hub's Prometheus metrics, served as text at `GET /metrics`
//! (docs/protocol.md, "Metrics", lists every series).
//!
//! Encoding is `prometheus-client`'s. What the hot paths count (echoed
//! messages, fan-out deliveries) is counted here in [`Sharded`] counters,
//! where each thread adds to a cache line of its own: a shared atomic
//! bouncing between cores on every message would cost the echo and fan-out
//! rows of `bench/compare`. Counts are added per batch or per fan-out, never
//! per frame written.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::rooms::Rooms;

/// Shards of a [`Sharded`] counter; threads beyond this many share.
const SHARDS: usize = 16;

/// A monotonic counter split into one cache line per thread (up to
/// [`SHARDS`]), summed when read.
#[derive(Debug, Default)]
pub(crate) struct Sharded {
    shards: [Padded; SHARDS],
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// This thread's shard, taken round-robin the first time it counts.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

impl Sharded {
    pub(crate) fn add(&self, n: u64) {
        self.shards[shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// The WebSocket routes, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Route {
    Hub,
    Echo,
}

impl Route {
    fn label(self) -> [(&'static str, &'static str); 1] {
        match self {
            Route::Hub => [("route", "/ws")],
            Route::Echo => [("route", "/echo")],
        }
    }
}

/// Why the hub itself closed a connection, as a label.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HubClose {
    /// 1008: the send queue overflowed or the socket stayed blocked.
    SlowConsumer,
    /// 1008: over the message rate for longer than the grace.
    RateLimit,
    /// 1001: the server is shutting down.
    Shutdown,
    /// 4001: no `auth` within the auth timeout on a hub that requires it.
    AuthRequired,
    /// 4002: the token expired without a fresh `auth`.
    TokenExpired,
}

impl HubClose {
    fn label(self) -> [(&'static str, &'static str); 1] {
        [(
            "reason",
            match self {
                HubClose::SlowConsumer => "slow_consumer",
                HubClose::RateLimit => "rate_limit",
                HubClose::Shutdown => "shutdown",
                HubClose::AuthRequired => "auth_required",
                HubClose::TokenExpired => "token_expired",
            },
        )]
    }
}

/// A family with one label of static names (`route`, `reason`, `result`).
type LabelFamily<M> = Family<[(&'static str, &'static str); 1], M>;

/// One hub's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<[(&'static str, u16); 1], Counter>,
    open: LabelFamily<Gauge>,
    parked: Gauge,
    resumed: Counter,
    closed: Family<[(&'static str, String); 2], Counter>,
    hub_closes: LabelFamily<Counter>,
    rate_limited: Counter,
    tls_handshakes: LabelFamily<Counter>,
    hub_requests: Counter,
    hub_request_bytes: Counter,
    fanout_seconds: Histogram,
    traffic: Arc<Traffic>,
}

/// What the hot paths count, and the rooms, read at each scrape.
#[derive(Debug, Default)]
struct Traffic {
    echoed_messages: Sharded,
    echoed_bytes: Sharded,
    rooms: std::sync::OnceLock<Weak<Rooms>>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("wshub");
        let requests = Family::default();
        registry.register(
            "http_requests",
            "Requests answered, by HTTP status: 101 is an upgrade; 400, 403 (Origin), 408, 426, \
             431 and 503 (admission limits) are refusals before it",
            requests.clone(),
        );
        let open = LabelFamily::<Gauge>::default();
        registry.register(
            "connections_open",
            "Open WebSocket connections, by route",
            open.clone(),
        );
        let parked = Gauge::default();
        registry.register(
            "connections_parked",
            "Open connections parked while quiet: held without a task or buffers until more \
             than Pongs arrive, their rooms deliver to them or a deadline of theirs passes \
             (counted in connections_open too)",
            parked.clone(),
        );
        let resumed = Counter::default();
        registry.register(
            "connections_resumed",
            "Parked connections given back to a session: a message or anything but Pongs \
             arrived, a room delivered, an auth deadline passed, the peer left, a keepalive Ping \
             found no room or the peer stayed silent past the pong timeout, or the drain began \
             (keepalive Pings and Pongs are answered while parked)",
            resumed.clone(),
        );
        let closed = Family::default();
        registry.register(
            "connections_closed",
            "WebSocket connections ended, by route and close code (the peer's code, 1005 for \
             none, the hub's failing code on a protocol error, 1006 without a close handshake)",
            closed.clone(),
        );
        let hub_closes = LabelFamily::<Counter>::default();
        registry.register(
            "hub_closes",
            "Connections the hub closed itself, by reason: slow_consumer (1008), rate_limit \
             (1008), shutdown (1001), auth_required (4001), token_expired (4002)",
            hub_closes.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited",
            "Hub requests ignored and answered rate_limited",
            rate_limited.clone(),
        );
        let tls_handshakes = LabelFamily::<Counter>::default();
        registry.register(
            "tls_handshakes",
            "TLS handshakes on the hub's listener, by result: ok, or failed (an error, a \
             client that left, or the handshake deadline)",
            tls_handshakes.clone(),
        );
        let hub_requests = Counter::default();
        registry.register(
            "hub_requests_received",
            "Messages received on /ws (requests)",
            hub_requests.clone(),
        );
        let hub_request_bytes = Counter::default();
        registry.register(
            "hub_request_bytes_received",
            "Payload bytes of the messages received on /ws",
            hub_request_bytes.clone(),
        );
        // 10 µs to about 5 s.
        let fanout_seconds = Histogram::new(exponential_buckets(1e-5, 4.0, 10));
        registry.register(
            "publish_fanout_seconds",
            "Time from a publish's arrival to its frame queued for every member of the room",
            fanout_seconds.clone(),
        );
        let traffic = Arc::new(Traffic::default());
        registry.register_collector(Box::new(traffic.clone()));
        Self {
            registry,
            requests,
            open,
            parked,
            resumed,
            closed,
            hub_closes,
            rate_limited,
            tls_handshakes,
            hub_requests,
            hub_request_bytes,
            fanout_seconds,
            traffic,
        }
    }

    /// Reads the rooms' gauges and fan-out counts from `rooms` at each scrape.
    pub(crate) fn watch_rooms(&self, rooms: &Arc<Rooms>) {
        let _ = self.traffic.rooms.set(Arc::downgrade(rooms));
    }

    /// The text exposition format (`text/plain; version=0.0.4`).
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub(crate) fn answered(&self, status: u16) {
        self.requests.get_or_create(&[("status", status)]).inc();
    }

    pub(crate) fn hub_closed(&self, why: HubClose) {
        self.hub_closes.get_or_create(&why.label()).inc();
    }

    pub(crate) fn tls_handshake(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.tls_handshakes
            .get_or_create(&[("result", result)])
            .inc();
    }

    pub(crate) fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    pub(crate) fn hub_request(&self, bytes: usize) {
        self.hub_requests.inc();
        self.hub_request_bytes.inc_by(bytes as u64);
    }

    pub(crate) fn fanned_out(&self, took: Duration) {
        self.fanout_seconds.observe(took.as_secs_f64());
    }

    /// `n` connections are parked now.
    pub(crate) fn set_parked(&self, n: usize) {
        self.parked.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// `n` more parked connections were resumed.
    pub(crate) fn resumed(&self, n: u64) {
        self.resumed.inc_by(n);
    }

    /// `messages` echoed on `/echo`, `bytes` of payload in all.
    pub(crate) fn echoed(&self, messages: u64, bytes: u64) {
        self.traffic.echoed_messages.add(messages);
        self.traffic.echoed_bytes.add(bytes);
    }
}

/// An open connection of `/ws` (`HUB`) or `/echo`, counted in
/// `wshub_connections_open` until dropped, however its session ends; also
/// its session's handle on the metrics. One pointer: every idle connection
/// holds it.
#[derive(Debug)]
pub(crate) struct OpenConnection<const HUB: bool>(Arc<Metrics>);

impl<const HUB: bool> OpenConnection<HUB> {
    const ROUTE: Route = if HUB { Route::Hub } else { Route::Echo };

    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        metrics.open.get_or_create(&Self::ROUTE.label()).inc();
        Self(metrics)
    }

    /// The session ended with close code `code` (its `CloseEvent`'s).
    pub(crate) fn ended(&self, code: u16) {
        let labels = [
            ("route", Self::ROUTE.label()[0].1.to_owned()),
            ("code", code.to_string()),
        ];
        self.0.closed.get_or_create(&labels).inc();
    }
}

impl<const HUB: bool> std::ops::Deref for OpenConnection<HUB> {
    type Target = Metrics;

    fn deref(&self) -> &Metrics {
        &self.0
    }
}

impl<const HUB: bool> Drop for OpenConnection<HUB> {
    fn drop(&mut self) {
        self.0.open.get_or_create(&Self::ROUTE.label()).dec();
    }
}

impl Collector for Traffic {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut counter = |name: &str, help: &str, value: u64| {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)
        };
        counter(
            "echo_messages",
            "Messages echoed on /echo (each received once and sent once)",
            self.echoed_messages.get(),
        )?;
        counter(
            "echo_bytes",
            "Payload bytes echoed on /echo (each received once and sent once)",
            self.echoed_bytes.get(),
        )?;
        let Some(rooms) = self.rooms.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        let stats = rooms.stats();
        counter(
            "fanout_deliveries",
            "Room frames queued for members (messages and presence notices; one per member)",
            stats.deliveries,
        )?;
        counter(
            "fanout_bytes",
            "Bytes of the room frames queued for members, as framed on the wire uncompressed",
            stats.bytes,
        )?;
        let mut gauge = |name: &str, help: &str, value: i64| {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)
        };
        gauge(
            "rooms",
            "Rooms held, with members or with history only",
            stats.rooms as i64,
        )?;
        gauge(
            "room_members",
            "Room memberships (a connection in three rooms counts three times)",
            stats.members as i64,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_counts_add_up_across_threads() {
        let counter = Arc::new(Sharded::default());
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| counter.add(3)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.get(), 60_000);
    }

    #[test]
    fn the_exposition_names_every_series() {
        let metrics = Arc::new(Metrics::new());
        let rooms = Arc::new(Rooms::default());
        metrics.watch_rooms(&rooms);
        metrics.answered(101);
        metrics.answered(403);
        let _echo = OpenConnection::<false>::new(metrics.clone());
        let hub = OpenConnection::<true>::new(metrics.clone());
        hub.ended(1000);
        drop(hub);
        metrics.echoed(3, 30);
        metrics.hub_closed(HubClose::SlowConsumer);
        let text = metrics.encode();
        for line in [
            "wshub_http_requests_total{status=\"101\"} 1",
            "wshub_http_requests_total{status=\"403\"} 1",
            "wshub_connections_open{route=\"/echo\"} 1",
            "wshub_connections_open{route=\"/ws\"} 0",
            "wshub_connections_parked 0",
            "wshub_connections_resumed_total 0",
            "wshub_connections_closed_total{route=\"/ws\",code=\"1000\"} 1",
            "wshub_hub_closes_total{reason=\"slow_consumer\"} 1",
            "wshub_echo_messages_total 3",
            "wshub_echo_bytes_total 30",
            "wshub_rooms 0",
            "wshub_room_members 0",
            "wshub_fanout_deliveries_total 0",
            "# TYPE wshub_publish_fanout_seconds histogram",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
