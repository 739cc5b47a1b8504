//! Connection admission: which connections the hub takes on, counted by the
//! client's address once its request head has arrived.
//!
//! Three limits, each checked before the upgrade and answered
//! `503 Service Unavailable` with `Retry-After` through the one accept path
//! ([`Handshake::respond`](wshub::server::Handshake::respond)); connections
//! already open are never touched:
//!
//! 1. [`AdmissionConfig::handshakes_per_ip`]: a token bucket per client
//!    address, refilled at that many handshakes per second, holding at most
//!    twice as many (a burst of two seconds' worth). Every request takes a
//!    token, refused or not, so a client retrying in a loop stays refused.
//! 2. [`AdmissionConfig::max_connections_per_ip`]: connections of one client
//!    address at once.
//! 3. [`AdmissionConfig::max_connections`]: connections at once in all.
//!
//! A client address is an IPv4 address, or an IPv6 address's /64 prefix
//! (the smallest block one subscriber is usually given, so one host cannot
//! step around the limits by using many of its addresses); an IPv4-mapped
//! IPv6 address (`::ffff:a.b.c.d`) counts as the IPv4 address. It is the
//! TCP peer's address, or with [`AdmissionConfig::trusted_proxies`] the one
//! that `X-Forwarded-For` names (see [`AdmissionConfig::trusted_proxies`]).
//!
//! A connection is counted from its request head to its end; one still
//! sending its head is bounded by the handshake timeout and, in number, by
//! the open-file limit (the accept loop backs off when it runs out).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wshub::server::{Request, Response};

/// A bucket holds this many seconds of [`AdmissionConfig::handshakes_per_ip`].
pub const HANDSHAKE_BURST_SECONDS: u32 = 2;

/// `Retry-After` of a refusal at a connection cap: 5 s. A connection frees
/// its slot only when it ends, so sooner would mostly be refused again.
const CAP_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The limits on connections the hub takes on; 0 switches a limit off.
///
/// [`AdmissionConfig::default`], and so [`HubConfig::default`](crate::HubConfig::default),
/// has every limit off: the library cannot know whether its clients come
/// from many addresses or through one proxy, nor its open-file limit.
/// `wshub serve` turns them on with [`AdmissionConfig::recommended`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdmissionConfig {
    /// Connections at once (WebSockets, and plain HTTP requests being
    /// answered); the next one is answered 503 with `Retry-After: 5`.
    /// Default: 0 (off); [`AdmissionConfig::recommended`] derives it from the
    /// open-file limit.
    pub max_connections: usize,
    /// Connections at once from one client address (an IPv4 address or an
    /// IPv6 /64); the next one is answered 503 with `Retry-After: 5`.
    /// Default: 0 (off); recommended: [`DEFAULT_MAX_CONNECTIONS_PER_IP`].
    pub max_connections_per_ip: usize,
    /// Requests per second from one client address, with a burst of
    /// [`HANDSHAKE_BURST_SECONDS`] seconds' worth; one beyond is answered
    /// 503 with `Retry-After` the seconds until the next is allowed.
    /// Default: 0 (off); recommended: [`DEFAULT_HANDSHAKES_PER_IP`].
    pub handshakes_per_ip: u32,
    /// Proxies whose `X-Forwarded-For` is believed; from any other TCP peer
    /// the header is ignored. Default: none.
    ///
    /// When the peer is one of them, `X-Forwarded-For` (every such header,
    /// in order, as one comma list) is read from right to left, skipping
    /// trusted addresses: the first address not trusted is the client, for
    /// the per-address limits and the logs. An entry that is not an address
    /// (`unknown`, an obfuscated name) ends the walk at the proxy that added
    /// it; if every entry is trusted, the leftmost is the client. Only the
    /// right end can be believed: each trusted proxy appends the address it
    /// saw, while whatever lies left of the first untrusted entry was
    /// written by the client itself.
    pub trusted_proxies: Vec<IpNetwork>,
}

/// Recommended [`AdmissionConfig::max_connections_per_ip`]: 1,000, room for
/// a large office behind one NAT address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1000;

/// Recommended [`AdmissionConfig::handshakes_per_ip`]: 100 per second (a
/// burst of 200), far above a browser's reconnects, far below what one
/// host can make the hub spend on handshakes (some 37,000 per second).
pub const DEFAULT_HANDSHAKES_PER_IP: u32 = 100;

impl AdmissionConfig {
    /// The limits `wshub serve` applies by default, for a process that may
    /// hold `open_files` descriptors (the soft `RLIMIT_NOFILE`):
    /// [`max_connections_for`]`(open_files)`,
    /// [`DEFAULT_MAX_CONNECTIONS_PER_IP`] and [`DEFAULT_HANDSHAKES_PER_IP`].
    pub fn recommended(open_files: u64) -> Self {
        Self {
            max_connections: max_connections_for(open_files),
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            handshakes_per_ip: DEFAULT_HANDSHAKES_PER_IP,
            trusted_proxies: Vec::new(),
        }
    }
}

/// The connection cap for a process that may hold `open_files` descriptors:
/// `open_files − max(32, open_files / 8)`, at least 1.
///
/// The eighth kept back (at least 32) is for the listener, standard streams,
/// the runtime's own descriptors, logs, and the connections not counted:
/// those still sending their request head and those being answered 503. For
/// 1,024 that is 896 connections; for 1,048,576, 917,504.
pub fn max_connections_for(open_files: u64) -> usize {
    let reserve = (open_files / 8).max(32);
    let cap = open_files.saturating_sub(reserve).max(1);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// An IPv4 or IPv6 network, `ADDR/PREFIX` (e.g. `10.0.0.0/8`, `fd00::/8`),
/// or a single address (`192.0.2.1`, a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    /// The first address of the network (no bits set past the prefix).
    addr: IpAddr,
    /// The prefix length in bits: at most 32 for IPv4, 128 for IPv6.
    prefix_len: u8,
}

/// Why a string is not an [`IpNetwork`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpNetworkError {
    /// The part before any `/` is not an IPv4 or IPv6 address.
    #[error("not an IP address")]
    InvalidAddress,
    /// The prefix length is not a number up to 32 (IPv4) or 128 (IPv6).
    #[error("the prefix length must be a number up to {max}")]
    InvalidPrefix {
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// Bits are set after the prefix, e.g. `10.0.0.1/8`.
    #[error("bits are set past the prefix; the network is {network}")]
    HostBitsSet {
        /// The network meant, probably: the address with those bits cleared.
        network: IpNetwork,
    },
}

impl IpNetwork {
    /// The network of `addr`'s first `prefix_len` bits.
    ///
    /// # Errors
    /// [`IpNetworkError::InvalidPrefix`] past 32 (IPv4) or 128 (IPv6 bits);
    /// [`IpNetworkError::HostBitsSet`] if `addr` has bits set past the prefix.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, IpNetworkError> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix_len > max {
            return Err(IpNetworkError::InvalidPrefix { max });
        }
        let network = Self {
            addr: masked(addr, prefix_len),
            prefix_len,
        };
        if network.addr != addr {
            return Err(IpNetworkError::HostBitsSet { network });
        }
        Ok(network)
    }

    /// Whether `ip` is in this network; an IPv4-mapped IPv6 address is
    /// compared as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        matches!(
            (ip, self.addr),
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
        ) && masked(ip, self.prefix_len) == self.addr
    }
}

/// `addr` with every bit past the first `prefix_len` cleared.
fn masked(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

impl FromStr for IpNetwork {
    type Err = IpNetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| IpNetworkError::InvalidAddress)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or(IpNetworkError::InvalidPrefix { max })?,
        };
        Self::new(addr, prefix_len)
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// What the per-address limits count by: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    V4(u32),
    V6(u64),
}

impl ClientKey {
    fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(a) => Self::V4(u32::from(a)),
            IpAddr::V6(a) => Self::V6((u128::from(a) >> 64) as u64),
        }
    }
}

/// The limit a refused connection hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    HandshakesPerIp,
    MaxConnectionsPerIp,
    MaxConnections,
}

impl Limit {
    /// The [`AdmissionConfig`] field, for logs.
    pub(crate) fn field(self) -> &'static str {
        match self {
            Self::HandshakesPerIp => "handshakes_per_ip",
            Self::MaxConnectionsPerIp => "max_connections_per_ip",
            Self::MaxConnections => "max_connections",
        }
    }
}

/// A connection turned away: which limit, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) limit: Limit,
    pub(crate) retry_after: Duration,
}

impl Refusal {
    /// The answer: `503 Service Unavailable`, `Retry-After` in whole seconds
    /// (rounded up, at least 1), and a one-line body naming the limit.
    pub(crate) fn response(&self) -> Response {
        let body: &'static str = match self.limit {
            Limit::HandshakesPerIp => "too many requests from your address; retry later\n",
            Limit::MaxConnectionsPerIp => "too many connections from your address\n",
            Limit::MaxConnections => "the server is at its connection limit\n",
        };
        let nanos = self.retry_after.as_nanos();
        let seconds = nanos.div_ceil(1_000_000_000).max(1);
        Response::text(503, Bytes::from_static(body.as_bytes()))
            .header("Retry-After", seconds.to_string())
    }
}

/// One client address's state.
#[derive(Debug)]
struct Client {
    /// Its connections open now.
    connections: usize,
    /// The token bucket, as the time it would be full again (the generic
    /// cell rate algorithm's "theoretical arrival time"): one `Instant`
    /// instead of a count and a refill time. At or before now: full.
    full_at: Instant,
}

/// Every client address with connections, or with a bucket not yet full.
#[derive(Debug)]
struct Clients {
    by_key: HashMap<ClientKey, Client>,
    /// Sweep the idle entries once the table holds this many, then set it
    /// to twice what is left (at least 1,024): amortized O(1) per insert,
    /// and at most about twice the live entries are kept.
    sweep_at: usize,
}

const MIN_SWEEP_AT: usize = 1024;

/// The admission state of one server: the limits and the counts.
#[derive(Debug)]
pub(crate) struct Admission {
    max_connections: usize,
    max_per_ip: usize,
    /// Time one handshake token takes to refill; `None`: no rate limit.
    token_interval: Option<Duration>,
    /// How far ahead of now a bucket's `full_at` may go and still give a
    /// token: (burst − 1) intervals.
    burst_tolerance: Duration,
    trusted_proxies: Vec<IpNetwork>,
    connections: AtomicUsize,
    /// A std `Mutex`: taken once per request head and once per connection
    /// end, never across an `.await`, never on the message path.
    clients: Mutex<Clients>,
}

/// A connection admitted: its slots are given back when this is dropped.
#[derive(Debug)]
pub(crate) struct Admitted {
    admission: Arc<Admission>,
    key: Option<ClientKey>,
}

impl Admission {
    pub(crate) fn new(config: &AdmissionConfig) -> Self {
        let (token_interval, burst_tolerance) = match config.handshakes_per_ip {
            0 => (None, Duration::ZERO),
            rate => {
                let interval = Duration::from_secs(1) / rate;
                let burst = rate.saturating_mul(HANDSHAKE_BURST_SECONDS);
                (Some(interval), interval * (burst - 1))
            }
        };
        Self {
            max_connections: config.max_connections,
            max_per_ip: config.max_connections_per_ip,
            token_interval,
            burst_tolerance,
            trusted_proxies: config.trusted_proxies.clone(),
            connections: AtomicUsize::new(0),
            clients: Mutex::new(Clients {
                by_key: HashMap::new(),
                sweep_at: MIN_SWEEP_AT,
            }),
        }
    }

    fn per_ip(&self) -> bool {
        self.max_per_ip != 0 || self.token_interval.is_some()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(ip))
    }

    /// The client's address: the TCP `peer`'s, or the one `X-Forwarded-For`
    /// names when the peer is trusted (the rule is on
    /// [`AdmissionConfig::trusted_proxies`]).
    pub(crate) fn client_ip(&self, peer: IpAddr, request: &Request) -> IpAddr {
        let peer = peer.to_canonical();
        if self.trusted_proxies.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let forwarded = request
            .headers
            .iter()
            .rev()
            .filter(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-for"))
            .flat_map(|(_, value)| value.rsplit(','));
        let mut client = peer;
        for entry in forwarded {
            match forwarded_ip(entry.trim()) {
                Some(ip) if self.trusts(ip) => client = ip,
                Some(ip) => return ip,
                None => return client,
            }
        }
        client
    }

    /// Admits a connection from `client` at `now`, or says which limit
    /// refuses it.
    pub(crate) fn admit(
        self: &Arc<Self>,
        client: IpAddr,
        now: Instant,
    ) -> Result<Admitted, Refusal> {
        if !self.per_ip() {
            self.take_connection()?;
            return Ok(Admitted {
                admission: self.clone(),
                key: None,
            });
        }
        let key = ClientKey::of(client);
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if clients.by_key.len() >= clients.sweep_at {
            clients
                .by_key
                .retain(|_, c| c.connections > 0 || c.full_at > now);
            clients.sweep_at = (clients.by_key.len() * 2).max(MIN_SWEEP_AT);
        }
        let entry = clients.by_key.entry(key).or_insert(Client {
            connections: 0,
            full_at: now,
        });
        if let Some(interval) = self.token_interval {
            let full_at = entry.full_at.max(now);
            let limit = now + self.burst_tolerance;
            if full_at > limit {
                return Err(Refusal {
                    limit: Limit::HandshakesPerIp,
                    retry_after: full_at - limit,
                });
            }
            entry.full_at = full_at + interval;
        }
        if self.max_per_ip != 0 && entry.connections >= self.max_per_ip {
            return Err(Refusal {
                limit: Limit::MaxConnectionsPerIp,
                retry_after: CAP_RETRY_AFTER,
            });
        }
        self.take_connection()?;
        entry.connections += 1;
        Ok(Admitted {
            admission: self.clone(),
            key: Some(key),
        })
    }

    /// Counts one more connection, unless [`AdmissionConfig::max_connections`] are open.
    fn take_connection(&self) -> Result<(), Refusal> {
        let max = match self.max_connections {
            0 => usize::MAX,
            max => max,
        };
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map(drop)
            .map_err(|_| Refusal {
                limit: Limit::MaxConnections,
                retry_after: CAP_RETRY_AFTER,
            })
    }

    /// Connections admitted and not yet ended.
    #[cfg(test)]
    fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let admission = &self.admission;
        admission.connections.fetch_sub(1, Ordering::AcqRel);
        let Some(key) = self.key else { return };
        let mut clients = admission
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.by_key.get_mut(&key) {
            client.connections = client.connections.saturating_sub(1);
            if client.connections == 0 && client.full_at <= Instant::now() {
                clients.by_key.remove(&key);
            }
        }
    }
}

/// One `X-Forwarded-For` entry as an address: `192.0.2.1`, `2001:db8::1`,
/// or with a port, `192.0.2.1:4711` or `[2001:db8::1]:4711`.
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn admission(config: AdmissionConfig) -> Arc<Admission> {
        Arc::new(Admission::new(&config))
    }

    fn request(forwarded: &[&str]) -> Request {
        let mut head = String::from("GET /ws HTTP/1.1\r\nHost: hub\r\n");
        for value in forwarded {
            head.push_str(&format!("X-Forwarded-For: {value}\r\n"));
        }
        head.push_str("\r\n");
        Request::parse(head.as_bytes()).unwrap()
    }

    #[test]
    fn the_connection_cap_is_the_open_file_limit_less_an_eighth_or_32() {
        assert_eq!(max_connections_for(1024), 896);
        assert_eq!(max_connections_for(64), 32);
        assert_eq!(max_connections_for(1 << 20), 917_504);
        assert_eq!(max_connections_for(16), 1);
        assert!(max_connections_for(u64::MAX) > 1 << 40);
    }

    #[test]
    fn networks_parse_with_or_without_a_prefix_and_say_what_is_wrong() {
        let net: IpNetwork = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.200.1.1")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::a00:1")));
        let one: IpNetwork = "192.0.2.7".parse().unwrap();
        assert_eq!(one.to_string(), "192.0.2.7/32");
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: IpNetwork = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fdab::1")) && !v6.contains(ip("fe80::1")));
        let all: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));

        assert_eq!(
            "10.0.0.1/8".parse::<IpNetwork>().unwrap_err().to_string(),
            "bits are set past the prefix; the network is 10.0.0.0/8"
        );
        assert_eq!(
            "10.0.0.0/33".parse::<IpNetwork>(),
            Err(IpNetworkError::InvalidPrefix { max: 32 })
        );
        assert_eq!(
            "::/129".parse::<IpNetwork>(),
            Err(IpNetworkError::InvalidPrefix { max: 128 })
        );
        assert_eq!(
            "proxy.local".parse::<IpNetwork>(),
            Err(IpNetworkError::InvalidAddress)
        );
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ClientKey::of(ip("::ffff:192.0.2.1")),
            ClientKey::of(ip("192.0.2.1"))
        );
    }

    #[test]
    fn the_per_ip_cap_refuses_the_next_connection_until_one_ends() {
        let admission = admission(AdmissionConfig {
            max_connections_per_ip: 2,
            ..Default::default()
        });
        let now = Instant::now();
        let a = admission.admit(ip("192.0.2.1"), now).unwrap();
        let _b = admission.admit(ip("192.0.2.1"), now).unwrap();
        let refused = admission.admit(ip("192.0.2.1"), now).unwrap_err();
        assert_eq!(refused.limit, Limit::MaxConnectionsPerIp);
        let _other = admission.admit(ip("192.0.2.2"), now).unwrap();
        drop(a);
        let _c = admission.admit(ip("192.0.2.1"), now).unwrap();
        assert_eq!(admission.connections(), 3);
    }

    #[test]
    fn the_global_cap_counts_every_address() {
        let admission = admission(AdmissionConfig {
            max_connections: 2,
            max_connections_per_ip: 10,
            ..Default::default()
        });
        let now = Instant::now();
        let a = admission.admit(ip("192.0.2.1"), now).unwrap();
        let _b = admission.admit(ip("2001:db8::1"), now).unwrap();
        let refused = admission.admit(ip("192.0.2.3"), now).unwrap_err();
        assert_eq!(refused.limit, Limit::MaxConnections);
        drop(a);
        let _c = admission.admit(ip("192.0.2.3"), now).unwrap();
        // A refusal at the global cap leaves the address's own count alone.
        let clients = admission.clients.lock().unwrap();
        assert_eq!(
            clients.by_key[&ClientKey::of(ip("192.0.2.3"))].connections,
            1
        );
    }

    #[test]
    fn the_handshake_bucket_gives_a_burst_of_two_seconds_then_the_rate() {
        let admission = admission(AdmissionConfig {
            handshakes_per_ip: 10,
            ..Default::default()
        });
        let t0 = Instant::now();
        for i in 0..20 {
            assert!(admission.admit(ip("192.0.2.1"), t0).is_ok(), "burst {i}");
        }
        let refused = admission.admit(ip("192.0.2.1"), t0).unwrap_err();
        assert_eq!(refused.limit, Limit::HandshakesPerIp);
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert!(refused
            .response()
            .headers
            .contains(&("Retry-After".into(), "1".into())));
        // Refused attempts cost nothing more, and other addresses are untouched.
        assert!(admission.admit(ip("192.0.2.2"), t0).is_ok());
        let t1 = t0 + Duration::from_millis(100);
        assert!(admission.admit(ip("192.0.2.1"), t1).is_ok());
        assert!(admission.admit(ip("192.0.2.1"), t1).is_err());
        // Two idle seconds refill the whole burst.
        let t2 = t1 + Duration::from_secs(2);
        for i in 0..20 {
            assert!(admission.admit(ip("192.0.2.1"), t2).is_ok(), "refill {i}");
        }
        assert!(admission.admit(ip("192.0.2.1"), t2).is_err());
    }

    #[test]
    fn idle_addresses_are_swept_once_the_table_doubles() {
        let admission = admission(AdmissionConfig {
            handshakes_per_ip: 1000,
            ..Default::default()
        });
        // In the future, so that no bucket is full yet when its connection
        // ends (which would remove it at once): only the sweep removes.
        let t0 = Instant::now() + Duration::from_secs(3600);
        let addr = |i: u32| IpAddr::V4(Ipv4Addr::from(i));
        for i in 0..1100 {
            drop(admission.admit(addr(i), t0));
        }
        // Their buckets are full again 1 ms later: idle, swept when the
        // table next reaches its sweep mark (2,048 after the first sweep).
        let later = t0 + Duration::from_secs(10);
        for i in 0..1000 {
            drop(admission.admit(addr(1_000_000 + i), later));
        }
        let len = admission.clients.lock().unwrap().by_key.len();
        assert!(len <= 1000, "{len} entries kept");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let admission = admission(AdmissionConfig {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()],
            ..Default::default()
        });
        let spoofed = request(&["198.51.100.1"]);
        assert_eq!(
            admission.client_ip(ip("203.0.113.5"), &spoofed),
            ip("203.0.113.5")
        );
        assert_eq!(
            admission.client_ip(ip("10.0.0.2"), &spoofed),
            ip("198.51.100.1")
        );
        assert_eq!(admission.client_ip(ip("::1"), &spoofed), ip("198.51.100.1"));
        // The last untrusted address; what the client wrote further left is ignored.
        let chain = request(&["1.1.1.1, 198.51.100.1", "10.0.0.9:4711, 10.0.0.3"]);
        assert_eq!(
            admission.client_ip(ip("10.0.0.2"), &chain),
            ip("198.51.100.1")
        );
        let v6 = request(&["[2001:db8::7]:80"]);
        assert_eq!(admission.client_ip(ip("10.0.0.2"), &v6), ip("2001:db8::7"));
        // Garbage stops at the proxy that added it; all trusted: the leftmost.
        let garbage = request(&["198.51.100.1, unknown, 10.0.0.3"]);
        assert_eq!(
            admission.client_ip(ip("10.0.0.2"), &garbage),
            ip("10.0.0.3")
        );
        let inside = request(&["10.0.0.4, 10.0.0.3"]);
        assert_eq!(admission.client_ip(ip("10.0.0.2"), &inside), ip("10.0.0.4"));
        assert_eq!(
            admission.client_ip(ip("10.0.0.2"), &request(&[])),
            ip("10.0.0.2")
        );
        // No proxy trusted: the header means nothing.
        let none = self::admission(AdmissionConfig::default());
        assert_eq!(none.client_ip(ip("10.0.0.2"), &spoofed), ip("10.0.0.2"));
    }
}
