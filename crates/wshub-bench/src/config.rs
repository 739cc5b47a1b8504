//! What to run: the target, the mode and how long. Every field states its
//! unit and default; [`Config::validate`] checks the ranges.

use std::time::Duration;

use crate::error::ConfigError;

/// One benchmark run.
///
/// ```
/// use std::time::Duration;
/// use wshub_bench::{Config, EchoConfig, Mode};
///
/// let mut echo = EchoConfig::default();
/// echo.in_flight = 16;
/// let mut config = Config::new("ws://127.0.0.1:8080/echo", Mode::Echo(echo));
/// config.duration = Duration::from_secs(5);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The server, `ws://host[:port]/path[?query]` or the same with `wss://`. The host is resolved once,
    /// before the first connection.
    pub url: String,
    /// What to do against it.
    pub mode: Mode,
    /// Time measured after the warm-up. Not used by [`Mode::Idle`], which holds
    /// its connections for [`IdleConfig::hold`]. Default: 10 s.
    pub duration: Duration,
    /// Time run but not measured, before `duration`. Not used by
    /// [`Mode::Idle`]. Default: 2 s.
    pub warmup: Duration,
    /// Worker threads, each a single-threaded tokio runtime owning a share of
    /// the connections (connection `i` runs on thread `i % threads`).
    /// Default: 1.
    pub threads: usize,
    /// Bound on one TCP connect plus opening handshake, on a close handshake,
    /// and on the drain at the end of a fan-out run. Default: 10 s.
    pub timeout: Duration,
    /// Draw a live progress line on stderr, when stderr is a terminal.
    /// Default: true.
    pub progress: bool,
    /// The TLS configuration of a `wss://` URL's connections (roots, a
    /// client certificate). Default: `None`, the system's roots
    /// ([`wshub::tls::native_roots`]).
    pub tls: Option<std::sync::Arc<wshub::rustls::ClientConfig>>,
    /// Which TLS sessions a `wss://` connection may resume. Default:
    /// [`TlsResumption::PerConnection`].
    pub tls_resumption: TlsResumption,
}

/// Which TLS sessions a `wss://` connection may resume (RFC 8446 §2.2).
///
/// Only [`Mode::Connect`] reconnects, so it is the mode where
/// `PerConnection` and `Shared` differ; the other modes open each connection
/// once and, under both, share the run's cache (a connection may resume a
/// session an earlier one left).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TlsResumption {
    /// Each connect loop keeps its own session cache, as independent clients
    /// do: a loop's first handshake is full, every later one resumes with a
    /// ticket from the one before.
    #[default]
    PerConnection,
    /// One session cache for the whole run (rustls' default for one
    /// `ClientConfig`). rustls keeps at most 8 TLS 1.3 tickets per server, so
    /// with more handshakes in flight than that, most are full.
    Shared,
    /// Never resume: every handshake is a full one.
    Off,
}

impl Config {
    /// A run of `mode` against `url` with the default duration, warm-up,
    /// thread count and timeout.
    pub fn new(url: impl Into<String>, mode: Mode) -> Self {
        Self {
            url: url.into(),
            mode,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            threads: 1,
            timeout: Duration::from_secs(10),
            progress: true,
            tls: None,
            tls_resumption: TlsResumption::default(),
        }
    }

    /// Checks every count and duration.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |value: usize, field: &'static str| {
            if value == 0 {
                Err(ConfigError::Zero { field })
            } else {
                Ok(())
            }
        };
        positive(self.threads, "threads")?;
        if self.timeout.is_zero() {
            return Err(ConfigError::ZeroDuration { field: "timeout" });
        }
        if !matches!(self.mode, Mode::Idle(_)) && self.duration.is_zero() {
            return Err(ConfigError::ZeroDuration { field: "duration" });
        }
        match &self.mode {
            Mode::Echo(echo) => {
                positive(echo.connections, "connections")?;
                positive(echo.in_flight, "in_flight")?;
                if echo.size > MAX_ECHO_SIZE {
                    return Err(ConfigError::TooLarge {
                        field: "size",
                        value: echo.size as u64,
                        limit: MAX_ECHO_SIZE as u64,
                    });
                }
            }
            Mode::Connect(connect) => positive(connect.concurrency, "concurrency")?,
            Mode::Idle(idle) => {
                positive(idle.connections, "connections")?;
                positive(idle.handshake_concurrency, "handshake_concurrency")?;
                if idle.hold.is_zero() {
                    return Err(ConfigError::ZeroDuration { field: "hold" });
                }
                if let Some(burst) = idle.burst {
                    positive(burst, "burst")?;
                    if burst > MAX_ECHO_SIZE {
                        return Err(ConfigError::TooLarge {
                            field: "burst",
                            value: burst as u64,
                            limit: MAX_ECHO_SIZE as u64,
                        });
                    }
                    for (set, other) in [
                        (idle.join.is_some(), "join"),
                        (idle.compression, "compression"),
                    ] {
                        if set {
                            return Err(ConfigError::Conflict {
                                field: "burst",
                                other,
                            });
                        }
                    }
                }
            }
            Mode::Fanout(fanout) => {
                positive(fanout.subscribers, "subscribers")?;
                positive(fanout.handshake_concurrency, "handshake_concurrency")?;
                positive(fanout.window, "window")?;
                if fanout.size < MIN_FANOUT_SIZE {
                    return Err(ConfigError::TooSmall {
                        field: "size",
                        value: fanout.size as u64,
                        minimum: MIN_FANOUT_SIZE as u64,
                    });
                }
                if fanout.size > MAX_FANOUT_SIZE {
                    return Err(ConfigError::TooLarge {
                        field: "size",
                        value: fanout.size as u64,
                        limit: MAX_FANOUT_SIZE as u64,
                    });
                }
                if fanout.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
                    return Err(ConfigError::InvalidRate);
                }
                if fanout.room.is_empty() || fanout.room.len() > 64 {
                    return Err(ConfigError::InvalidRoom);
                }
                if !(0.0..=1.0).contains(&fanout.resume_share) {
                    return Err(ConfigError::InvalidShare {
                        field: "resume_share",
                    });
                }
                if fanout.resume_share > 0.0 && fanout.resume_every.is_zero() {
                    return Err(ConfigError::ZeroDuration {
                        field: "resume_every",
                    });
                }
            }
        }
        Ok(())
    }

    /// The URLs the fan-out subscribers are spread over: [`FanoutConfig::urls`],
    /// or [`Config::url`] alone.
    pub(crate) fn subscriber_urls<'a>(&'a self, fanout: &'a FanoutConfig) -> Vec<&'a str> {
        if fanout.urls.is_empty() {
            vec![self.url.as_str()]
        } else {
            fanout.urls.iter().map(String::as_str).collect()
        }
    }

    /// Connections this run holds open at once (file descriptors needed).
    pub(crate) fn connections(&self) -> usize {
        match &self.mode {
            Mode::Echo(echo) => echo.connections,
            Mode::Connect(connect) => connect.concurrency,
            Mode::Idle(idle) => idle.connections,
            Mode::Fanout(fanout) => fanout.subscribers + 1,
        }
    }
}

/// Largest echo payload: 16 MiB, the hub's default message limit. A run
/// pre-encodes a ring of at least `2 × (in_flight + 1)` frames of this size,
/// shared by every connection.
pub const MAX_ECHO_SIZE: usize = 16 << 20;

/// Smallest fan-out payload: the 16 hexadecimal digits of the publish time.
pub const MIN_FANOUT_SIZE: usize = 16;

/// Largest fan-out payload: 64 KiB.
pub const MAX_FANOUT_SIZE: usize = 64 << 10;

/// The four kinds of load.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Mode {
    /// Round trips through an echo server.
    Echo(EchoConfig),
    /// Opening and closing handshakes, back to back.
    Connect(ConnectConfig),
    /// Many open, quiet connections; optionally the server's memory per connection.
    Idle(IdleConfig),
    /// One publisher, many subscribers of one room of the wshub hub (`/ws`).
    Fanout(FanoutConfig),
}

impl Mode {
    /// The mode's name: `echo`, `connect`, `idle` or `fanout`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Echo(_) => "echo",
            Self::Connect(_) => "connect",
            Self::Idle(_) => "idle",
            Self::Fanout(_) => "fanout",
        }
    }
}

/// Echo: each connection keeps `in_flight` messages outstanding and checks
/// every echo (same bytes, same type, same order).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EchoConfig {
    /// Connections, all opened before the clock starts. Default: 100.
    pub connections: usize,
    /// Payload of each message, in bytes. Default: 20.
    pub size: usize,
    /// Send binary messages instead of text. Default: false.
    pub binary: bool,
    /// Messages outstanding per connection: a new one is sent as each echo
    /// arrives. Default: 1.
    pub in_flight: usize,
}

impl Default for EchoConfig {
    fn default() -> Self {
        Self {
            connections: 100,
            size: 20,
            binary: false,
            in_flight: 1,
        }
    }
}

/// Connect: each loop opens a connection (TCP and upgrade), closes it with a
/// clean close handshake, and starts again.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectConfig {
    /// Loops running at once. Default: 50.
    pub concurrency: usize,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        Self { concurrency: 50 }
    }
}

/// Idle: open `connections`, hold them for `hold` answering Pings, then
/// close them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IdleConfig {
    /// Connections to open. Default: 10,000.
    pub connections: usize,
    /// Handshakes in progress at once while opening. Default: 200.
    pub handshake_concurrency: usize,
    /// Time all connections are held open, from when the last one opened.
    /// Default: 30 s.
    pub hold: Duration,
    /// Server process whose resident memory (`VmRSS` in `/proc/PID/status`) is
    /// sampled before opening and once all connections are open. Default: none.
    pub pid: Option<u32>,
    /// Join this room of the wshub hub on each connection (the URL must be the
    /// hub's `/ws`). Default: none.
    pub join: Option<String>,
    /// Offer permessage-deflate (RFC 7692) and, where the server accepts it,
    /// send one compressed message on each connection once it is open: the
    /// join request with `join`, else a 4 KiB text (which `/echo` sends back
    /// compressed). Measures what an idle compressed connection costs the
    /// server, with whatever context takeover it negotiated. Default: off.
    pub compression: bool,
    /// Send one binary message of this many bytes on each connection once it
    /// is open, before it goes quiet (the echo route sends it back): the
    /// memory then measured is an idle connection's after a burst, so a
    /// buffer grown for the burst and kept shows. At most
    /// [`MAX_ECHO_SIZE`]; not with `join` or `compression`. Default: none.
    pub burst: Option<usize>,
}

impl Default for IdleConfig {
    fn default() -> Self {
        Self {
            connections: 10_000,
            handshake_concurrency: 200,
            hold: Duration::from_secs(30),
            pid: None,
            join: None,
            compression: false,
            burst: None,
        }
    }
}

/// Fan-out: `subscribers` connections join one room of the wshub hub and one
/// more connection publishes to it (docs/protocol.md).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FanoutConfig {
    /// Subscribers of the room. Default: 1,000.
    pub subscribers: usize,
    /// Publishes per second; `None` publishes as fast as `window` allows.
    /// Default: `None`.
    pub rate: Option<f64>,
    /// The published message: a JSON string of this many bytes, starting with
    /// the publish time. Bytes, at least 16. Default: 64.
    pub size: usize,
    /// Publishes allowed in flight: the publisher waits while the oldest
    /// publish not yet received by every subscriber is this many behind. Keep
    /// it well under the hub's `--send-queue` (1,024 frames by default), so the
    /// generator itself never trips the hub's slow-consumer kick. Default: 128.
    pub window: usize,
    /// Count only the publisher's own copies in `window`, as a client does
    /// that knows nothing of the other members: the publisher sends the next
    /// message as each of its own comes back, and only the hub's
    /// back-pressure keeps the subscribers from falling behind (issue 12).
    /// Default: `false` (the window counts the slowest subscriber).
    pub own_copies: bool,
    /// Handshakes in progress at once while subscribers connect. Default: 200.
    pub handshake_concurrency: usize,
    /// Room name, 1–64 bytes. Default: `bench-` followed by random digits, so
    /// no one else's room is disturbed.
    pub room: String,
    /// The hub's URLs the subscribers are spread over: subscriber `i`
    /// joins at `urls[i % urls.len()]`. Empty: [`Config::url`] alone (which
    /// names the run in the report; set it to the first of these). Several
    /// URLs are several nodes of one hub that share their rooms, or one
    /// node under several names. Default: empty.
    pub urls: Vec<String>,
    /// Where the publisher joins. Default: `None`, the first subscriber URL.
    pub publisher_url: Option<String>,
    /// Share of the subscribers, 0 to 1, that resume every `resume_every`
    /// during the measured window: each one, drawn afresh each round,
    /// drops its connection without a close handshake, reconnects and joins
    /// again with `since`, the epoch and offset of the last message it got
    /// (docs/protocol.md, "History and resume"). 0 is off. Default: 0.
    pub resume_share: f64,
    /// Time between rounds of resumes; the first starts with the measured
    /// window. Default: 1 s.
    pub resume_every: Duration,
    /// A resuming subscriber reconnects to the next of `urls` (round-robin)
    /// instead of its own, as when the node it was on dies. Default: `false`.
    pub resume_elsewhere: bool,
    /// Fail the run ([`Report::passed`](crate::Report::passed) false) unless
    /// every delivery was checked by its `epoch` and `offset` and none was
    /// lost or duplicated. Losses and duplicates fail a run anyway; this adds
    /// that a server whose messages carry no offset cannot pass. Default:
    /// `false`.
    pub verify: bool,
    /// Members join with a `name` of their own, `s<i>` (subscriber *i*;
    /// `s<i>r<k>` on its *k*-th resume) and `p` (the publisher), rather than
    /// as the hub's `anon-<id>`. Each node of a hub on Redis numbers its
    /// connections from 1, so anonymous members on different nodes can get
    /// the same `anon-<id>`, which the room's presence then refuses
    /// (`name_taken`). Default: `false`.
    pub named: bool,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        Self {
            subscribers: 1_000,
            rate: None,
            size: 64,
            window: 128,
            own_copies: false,
            handshake_concurrency: 200,
            room: format!("bench-{:08}", rand::random::<u32>() % 100_000_000),
            urls: Vec::new(),
            publisher_url: None,
            resume_share: 0.0,
            resume_every: Duration::from_secs(1),
            resume_elsewhere: false,
            verify: false,
            named: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        for mode in [
            Mode::Echo(EchoConfig::default()),
            Mode::Connect(ConnectConfig::default()),
            Mode::Idle(IdleConfig::default()),
            Mode::Fanout(FanoutConfig::default()),
        ] {
            Config::new("ws://127.0.0.1:1/", mode).validate().unwrap();
        }
    }

    #[test]
    fn a_burst_is_1_byte_to_16_mib_and_goes_with_neither_join_nor_compression() {
        let idle = |burst, join: Option<&str>, compression| {
            let idle = IdleConfig {
                burst: Some(burst),
                join: join.map(str::to_owned),
                compression,
                ..Default::default()
            };
            Config::new("ws://a/", Mode::Idle(idle)).validate()
        };
        assert_eq!(idle(64 * 1024, None, false), Ok(()));
        assert_eq!(
            idle(0, None, false),
            Err(ConfigError::Zero { field: "burst" })
        );
        assert_eq!(
            idle(MAX_ECHO_SIZE + 1, None, false),
            Err(ConfigError::TooLarge {
                field: "burst",
                value: MAX_ECHO_SIZE as u64 + 1,
                limit: MAX_ECHO_SIZE as u64
            })
        );
        assert_eq!(
            idle(1, Some("room"), false),
            Err(ConfigError::Conflict {
                field: "burst",
                other: "join"
            })
        );
        assert_eq!(
            idle(1, None, true),
            Err(ConfigError::Conflict {
                field: "burst",
                other: "compression"
            })
        );
    }

    #[test]
    fn zero_counts_and_small_payloads_are_refused() {
        let echo = EchoConfig {
            in_flight: 0,
            ..Default::default()
        };
        let config = Config::new("ws://a/", Mode::Echo(echo));
        assert_eq!(
            config.validate(),
            Err(ConfigError::Zero { field: "in_flight" })
        );
        let fanout = FanoutConfig {
            size: 15,
            ..Default::default()
        };
        let config = Config::new("ws://a/", Mode::Fanout(fanout));
        assert!(matches!(
            config.validate(),
            Err(ConfigError::TooSmall { field: "size", .. })
        ));
        let fanout = FanoutConfig {
            rate: Some(0.0),
            ..Default::default()
        };
        let config = Config::new("ws://a/", Mode::Fanout(fanout));
        assert_eq!(config.validate(), Err(ConfigError::InvalidRate));
    }

    #[test]
    fn a_resume_share_is_a_fraction_and_needs_a_period() {
        let fanout = |share, every| {
            let fanout = FanoutConfig {
                resume_share: share,
                resume_every: every,
                ..Default::default()
            };
            Config::new("ws://a/", Mode::Fanout(fanout)).validate()
        };
        let second = Duration::from_secs(1);
        assert_eq!(fanout(0.0, second), Ok(()));
        assert_eq!(fanout(0.0, Duration::ZERO), Ok(()), "off: no period needed");
        assert_eq!(fanout(1.0, second), Ok(()));
        for bad in [-0.1, 1.5, f64::NAN] {
            assert_eq!(
                fanout(bad, second),
                Err(ConfigError::InvalidShare {
                    field: "resume_share"
                }),
                "{bad}"
            );
        }
        assert_eq!(
            fanout(0.2, Duration::ZERO),
            Err(ConfigError::ZeroDuration {
                field: "resume_every"
            })
        );
    }
}
