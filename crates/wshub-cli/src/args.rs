//! The command line as typed (clap). Values are checked in `config.rs`.
//!
//! A flag that sets a library setting takes its default from the library
//! (`HubConfig::default()`, `WebSocketConfig::default()`,
//! `DeflateConfig::default()`), computed when the help is shown, so the help
//! states the real default and no number is written twice.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use wshub::{DeflateConfig, WebSocketConfig};
use wshub_bench::{EchoConfig, FanoutConfig, IdleConfig};
use wshub_hub::HubConfig;

/// A bench run's defaults that do not depend on its mode (threads,
/// timeout, duration, warm-up).
fn bench_run() -> wshub_bench::Config {
    let mode = wshub_bench::Mode::Connect(wshub_bench::ConnectConfig::default());
    wshub_bench::Config::new(String::new(), mode)
}

/// `duration` as the flags write it: `25s`, `1m 30s`.
fn flag_duration(duration: Duration) -> humantime::Duration {
    duration.into()
}

/// `bytes` as the flags write it: `16MiB` when it is a whole number of
/// GiB, MiB or KiB, else plain bytes.
pub(crate) fn flag_size(bytes: usize) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes != 0 && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// wshub: a WebSocket hub, client and toolkit.
#[derive(Debug, Parser)]
#[command(name = "wshub", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Log filter for stderr, e.g. `info`, `debug`, `wshub_hub=debug` (the
    /// RUST_LOG environment variable overrides it).
    #[arg(long, global = true, default_value = "info", value_name = "FILTER")]
    pub(crate) log: String,

    /// Log lines as human-readable text, or as one JSON object a line
    /// (level, target, fields with the message, timestamp).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the real-time hub: chat page at /, JSON hub at /ws, echo at /echo.
    Serve(Box<ServeArgs>),
    /// Connect to a WebSocket server: stdin lines are sent, messages printed.
    Connect(ConnectArgs),
    /// Listen for a WebSocket client: its messages are printed, stdin lines
    /// sent to it (as wscat -l, websocat -s).
    Listen(ListenArgs),
    /// Publish one message into a hub room through its HTTP API (POST
    /// /api/publish); the hub's answer is printed.
    Publish(PublishArgs),
    /// Load-test any WebSocket server: echo, connect, idle or hub fan-out.
    Bench(BenchArgs),
}

/// `wshub serve --engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Engine {
    /// Rooms in this process's memory.
    Memory,
    /// Rooms in Redis, shared by every node on it.
    Redis,
}

/// The shape of log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// Every flag here is also a key of the `--config` file and a `WSHUB_*`
/// environment variable (`sources.rs` derives both from the flag's long
/// name), so a new flag needs no code for them.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Read settings from this TOML file: each key is a flag's long name
    /// (`max-connections = 1000`); see wshub.example.toml. Environment
    /// variables override the file, and flags override both.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Check the settings (flags, environment, --config file) as serving
    /// would, print the effective ones and exit: 0 if valid, 2 if not. Binds
    /// no port.
    #[arg(long)]
    pub(crate) check_config: bool,

    /// Address to listen on (port 0 picks a free port; the chosen address is
    /// printed as `listening on http://ADDR`).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub(crate) listen: SocketAddr,

    #[command(flatten)]
    pub(crate) admission: AdmissionArgs,

    #[command(flatten)]
    pub(crate) access: AccessArgs,

    #[command(flatten)]
    pub(crate) tls: ServeTlsArgs,

    /// Send a protocol Ping to every client this often (e.g. 25s, 1m).
    #[arg(long, value_name = "DURATION",
        default_value_t = flag_duration(HubConfig::default().websocket.ping_interval.unwrap_or_default()))]
    pub(crate) ping_interval: humantime::Duration,

    /// Disconnect a client that sends nothing back this long after a Ping.
    #[arg(long, value_name = "DURATION",
        default_value_t = flag_duration(HubConfig::default().websocket.pong_timeout))]
    pub(crate) pong_timeout: humantime::Duration,

    /// Time a client has to finish a message once its first frame arrived,
    /// however it is fragmented and whatever Pings come in between; past it
    /// the connection is closed with 1008. 0s turns the bound off.
    #[arg(long, value_name = "DURATION",
        default_value_t = flag_duration(HubConfig::default().websocket.message_timeout.unwrap_or_default()))]
    pub(crate) message_timeout: humantime::Duration,

    /// Largest message accepted on /echo, in bytes (suffixes KiB, MiB, GiB);
    /// bigger ones close the connection with 1009. /ws has its own,
    /// --max-hub-message-size.
    #[arg(long, value_name = "BYTES",
        default_value_t = flag_size(HubConfig::default().websocket.protocol.max_message_size))]
    pub(crate) max_message_size: String,

    /// Largest single frame accepted, in bytes (suffixes KiB, MiB, GiB).
    #[arg(long, value_name = "BYTES",
        default_value_t = flag_size(HubConfig::default().websocket.protocol.max_frame_size))]
    pub(crate) max_frame_size: String,

    /// Frames queued per client before a slow reader is disconnected (1008).
    #[arg(long, value_name = "FRAMES", default_value_t = HubConfig::default().send_queue)]
    pub(crate) send_queue: usize,

    /// Rooms announce joins and leaves while they have at most this many
    /// members; bigger rooms stay quiet about presence.
    #[arg(long, value_name = "MEMBERS", default_value_t = HubConfig::default().presence_limit)]
    pub(crate) presence_limit: usize,

    /// Messages each room keeps in its history, for clients that reconnect
    /// and resume with a `join`'s `since` (docs/protocol.md, "History and
    /// resume"); 0 keeps none.
    #[arg(long, value_name = "MESSAGES", default_value_t = HubConfig::default().history_size)]
    pub(crate) history_size: usize,

    /// How long a room keeps a message in its history (at most 365d); a room
    /// without members is freed once its newest message is this old. 0s keeps
    /// none.
    #[arg(long, value_name = "DURATION",
        default_value_t = flag_duration(HubConfig::default().history_ttl))]
    pub(crate) history_ttl: humantime::Duration,

    /// Most messages replayed to one resuming `join`; a client that missed
    /// more is answered `recovered: false`, gets none, and must reload.
    #[arg(long, value_name = "MESSAGES",
        default_value_t = HubConfig::default().history_max_replay)]
    pub(crate) history_max_replay: usize,

    /// Most bytes of messages each room keeps in its history (as sent,
    /// uncompressed; KiB/MiB suffixes), the oldest dropped first; the
    /// newest is kept whatever its size.
    #[arg(long, value_name = "BYTES",
        default_value_t = flag_size(HubConfig::default().history_bytes))]
    pub(crate) history_bytes: String,

    /// Where rooms' offsets and history live: memory (this process only) or
    /// redis (shared by every hub node on the same Redis, so they serve the
    /// same rooms; docs/design/redis-engine.md).
    #[arg(long, value_enum, default_value = "memory")]
    pub(crate) engine: Engine,

    /// The Redis server of --engine redis: redis://host:port,
    /// redis://[user]:password@host:port/db, or rediss://… for TLS. Redis 7
    /// or later (sharded Pub/Sub).
    #[arg(long, value_name = "URL", default_value = "redis://127.0.0.1:6379")]
    pub(crate) redis_url: String,

    /// With --engine redis: how long a member's presence entry outlives
    /// its node's last renewal (renewed every third of it). The members of
    /// a node that died or lost Redis leave their rooms, for every other
    /// node, this long after (300ms to 1d).
    #[arg(long, value_name = "DURATION",
        default_value_t = flag_duration(wshub_hub::DEFAULT_PRESENCE_TTL))]
    pub(crate) presence_ttl: humantime::Duration,

    /// Where the node's Redis subscriber (its one Pub/Sub connection)
    /// connects, if not to --redis-url: the same Redis reached another way,
    /// e.g. a proxy that passes Pub/Sub. Same forms as --redis-url.
    /// Default: --redis-url.
    #[arg(long, value_name = "URL")]
    pub(crate) redis_subscriber_url: Option<String>,

    /// A seed node of the Redis Cluster of --engine redis, instead of
    /// --redis-url: redis://host:port or rediss://… (repeatable; give two or
    /// three, the others are found from them). Room keys carry the room as
    /// hash tag, so each room lives on one slot.
    #[arg(
        long = "redis-cluster",
        value_name = "URL",
        conflicts_with = "redis_url"
    )]
    pub(crate) redis_cluster: Vec<String>,

    /// CA certificates (PEM) that rediss:// trusts besides the platform's
    /// roots: a private Redis' CA.
    #[arg(long, value_name = "FILE")]
    pub(crate) redis_ca: Option<PathBuf>,

    /// Client certificate chain (PEM) that rediss:// shows to a Redis that
    /// asks for one (tls-auth-clients yes); with --redis-key.
    #[arg(long, value_name = "FILE", requires = "redis_key")]
    pub(crate) redis_cert: Option<PathBuf>,

    /// The private key (PEM) of --redis-cert.
    #[arg(long, value_name = "FILE", requires = "redis_cert")]
    pub(crate) redis_key: Option<PathBuf>,

    /// Time a client has to send its HTTP request head (408 after it).
    #[arg(long, value_name = "DURATION",
        default_value_t = flag_duration(HubConfig::default().websocket.handshake_timeout))]
    pub(crate) handshake_timeout: humantime::Duration,

    /// On Ctrl-C or SIGTERM, time allowed to close every connection and for
    /// the close handshakes before exiting.
    #[arg(long, value_name = "DURATION",
        default_value_t = flag_duration(HubConfig::default().shutdown_timeout))]
    pub(crate) shutdown_timeout: humantime::Duration,

    /// On shutdown, open connections are closed with 1001 in 10 batches
    /// spread over this time (at most half --shutdown-timeout), so clients
    /// reconnect spread out; 0s closes them all at once.
    #[arg(long, value_name = "DURATION",
        default_value_t = flag_duration(HubConfig::default().drain_spread))]
    pub(crate) drain_spread: humantime::Duration,

    /// Serve Prometheus metrics at /metrics on the hub's own address.
    #[arg(long, conflicts_with = "metrics_listen")]
    pub(crate) metrics: bool,

    /// Serve /metrics (and /healthz, /readyz) on this address instead, e.g.
    /// 127.0.0.1:9090, one only the monitoring network reaches.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<SocketAddr>,

    /// The tokio scheduler: `multi-thread` (work-stealing, one worker per
    /// --workers) or `current-thread` (everything on the main thread).
    #[arg(long, value_enum, default_value_t = Runtime::MultiThread)]
    pub(crate) runtime: Runtime,

    /// Worker threads of the multi-thread runtime [default: the CPUs this
    /// process may run on, as `taskset` or cgroups allow].
    #[arg(long, value_name = "N")]
    pub(crate) workers: Option<usize>,

    #[command(flatten)]
    pub(crate) member_limits: MemberLimitArgs,
    #[command(flatten)]
    pub(crate) compression: CompressionArgs,

    /// With --compression: keep each connection's compression context
    /// between messages, both ways (better ratio for many small similar
    /// messages, about 460 KiB of memory per connection that sent or received
    /// a compressed message). Without it no context is kept: no memory per
    /// idle connection, and a room message is compressed once for everyone.
    #[arg(long, requires = "compression")]
    pub(crate) compression_context_takeover: bool,
}

/// `serve` over TLS: https:// and wss:// on the --listen port.
#[derive(Debug, Args)]
pub(crate) struct ServeTlsArgs {
    /// Serve TLS with this certificate chain (PEM: the server's certificate
    /// first, then intermediates); needs --tls-key. SIGHUP reloads both
    /// files.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, RSA or EC).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
}

/// A client's TLS settings for wss:// and https:// URLs (`connect`,
/// `bench`, `publish`).
#[derive(Debug, Args)]
pub(crate) struct ClientTlsArgs {
    /// Trust the CA certificates of this PEM file for wss:// (https://),
    /// instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,

    /// Present this client certificate chain (PEM) over wss:// (https://);
    /// needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub(crate) cert: Option<PathBuf>,

    /// The private key of --cert (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<PathBuf>,

    /// Accept any server certificate over wss:// (https://): no check of
    /// its issuer, dates or name; for tests only; a warning is printed.
    #[arg(long, short = 'n', visible_alias = "no-check", conflicts_with = "ca")]
    pub(crate) insecure: bool,
}

/// `serve`'s limits on the connections it takes on. A request beyond one is
/// answered `503 Service Unavailable` with `Retry-After`, before any
/// upgrade; open connections are not touched.
#[derive(Debug, Args)]
pub(crate) struct AdmissionArgs {
    /// Connections at once (WebSockets and HTTP requests); 0 = no cap
    /// [default: the open-file limit, raised to the hard limit at start,
    /// less an eighth of it (at least 32)].
    #[arg(long, value_name = "N")]
    pub(crate) max_connections: Option<usize>,

    /// Connections at once from one client address (an IPv4 address, or an
    /// IPv6 /64); 0 = no limit.
    #[arg(long, value_name = "N", default_value_t = wshub_hub::DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub(crate) max_connections_per_ip: usize,

    /// Requests per second from one client address, with a burst of two
    /// seconds' worth; 0 = no limit.
    #[arg(long, value_name = "PER_SEC", default_value_t = wshub_hub::DEFAULT_HANDSHAKES_PER_IP)]
    pub(crate) handshakes_per_ip: u32,

    /// A proxy (address, or network as ADDR/PREFIX) whose X-Forwarded-For is
    /// believed: its last address that is not itself a trusted proxy is the
    /// client, for the per-address limits and the logs (repeatable).
    #[arg(long = "trusted-proxy", value_name = "ADDR/CIDR")]
    pub(crate) trusted_proxies: Vec<String>,

    /// Do not serve /echo (404).
    #[arg(long)]
    pub(crate) no_echo: bool,
}

/// Who may open a WebSocket: a refused handshake is answered before the
/// upgrade (docs/protocol.md, "Origin").
#[derive(Debug, Args)]
pub(crate) struct AccessArgs {
    /// A page origin allowed to open /ws and /echo from a browser, besides
    /// the hub's own host: `https://app.example.com`, `https://*.example.com`
    /// (its subdomains), or `*` to turn the check off (repeatable). Others
    /// get 403; clients that send no Origin pass.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub(crate) allowed_origins: Vec<String>,

    /// Turn on the HTTP API for backends (POST /api/publish, GET
    /// /api/rooms/ROOM, GET /api/rooms/ROOM/history; docs/protocol.md,
    /// "HTTP API"), taking the key in this file (at least 16 bytes of
    /// printable ASCII, e.g. from `openssl rand -hex 32`; a final newline is
    /// ignored) as `Authorization: Bearer <key>`. Without it, /api/ is 404.
    #[arg(long, value_name = "FILE")]
    pub(crate) api_key_file: Option<PathBuf>,

    /// Take JWTs signed with HS256 by the secret in this file (at least 32
    /// bytes; a final newline is ignored). Tokens come as ?token=,
    /// `Authorization: Bearer`, or an `auth` request; their `sub` is the
    /// member's name (docs/protocol.md, "Authentication").
    #[arg(long, value_name = "FILE", group = "jwt_key")]
    pub(crate) jwt_hs256_secret_file: Option<PathBuf>,

    /// Take JWTs signed by the private half of this PEM public key: RSA
    /// (RS256), P-256 (ES256) or Ed25519 (EdDSA).
    #[arg(long, value_name = "FILE", group = "jwt_key")]
    pub(crate) jwt_public_key: Option<PathBuf>,

    /// Take JWTs signed by any key of this JWK Set file, chosen by `kid`.
    #[arg(long, value_name = "FILE", group = "jwt_key")]
    pub(crate) jwks_file: Option<PathBuf>,

    /// Close /ws connections that have not authenticated within
    /// --auth-timeout (4001), and answer /echo without a token 401.
    #[arg(long, requires = "jwt_key")]
    pub(crate) require_auth: bool,

    /// Time a /ws connection of a hub with --require-auth has to send its
    /// `auth` request.
    #[arg(long, value_name = "DURATION",
        default_value_t = flag_duration(wshub_hub::AuthConfig::default().timeout))]
    pub(crate) auth_timeout: humantime::Duration,
}

/// Limits of each `/ws` member (docs/protocol.md says what a client sees).
#[derive(Debug, Args)]
pub(crate) struct MemberLimitArgs {
    /// Bytes waiting for one member's socket (suffixes KiB, MiB, GiB) before
    /// it is closed as a slow consumer (1008).
    #[arg(long, value_name = "BYTES",
        default_value_t = flag_size(HubConfig::default().send_queue_bytes))]
    pub(crate) send_queue_bytes: String,

    /// How long a member's socket may take none of the bytes waiting for it
    /// before it is closed as a slow consumer (1008).
    #[arg(long, value_name = "DURATION",
        default_value_t = flag_duration(HubConfig::default().write_timeout))]
    pub(crate) write_timeout: humantime::Duration,

    /// Largest message a /ws client may send, in bytes (suffixes KiB, MiB,
    /// GiB); bigger ones close the connection with 1009. /echo keeps
    /// --max-message-size.
    #[arg(long, value_name = "BYTES",
        default_value_t = flag_size(HubConfig::default().max_hub_message_size))]
    pub(crate) max_hub_message_size: String,

    /// Messages per second a /ws client may send on average; more are
    /// answered with a `rate_limited` error.
    #[arg(long, value_name = "MSGS_PER_SEC", default_value_t = HubConfig::default().message_rate)]
    pub(crate) message_rate: u32,

    /// Messages a /ws client may send at once above --message-rate.
    #[arg(long, value_name = "MESSAGES", default_value_t = HubConfig::default().message_burst)]
    pub(crate) message_burst: u32,

    /// How long a /ws client may stay over --message-rate before it is
    /// closed with 1008.
    #[arg(long, value_name = "DURATION",
        default_value_t = flag_duration(HubConfig::default().rate_limit_grace))]
    pub(crate) rate_limit_grace: humantime::Duration,

    /// Rooms one /ws client may be in at once; one more is answered with a
    /// `too_many_rooms` error.
    #[arg(long, value_name = "ROOMS", default_value_t = HubConfig::default().max_rooms_per_member)]
    pub(crate) max_rooms_per_member: usize,
}

/// permessage-deflate flags, shared by `serve` and `connect`.
#[derive(Debug, Args)]
pub(crate) struct CompressionArgs {
    /// Negotiate permessage-deflate (RFC 7692): the server accepts a client's
    /// offer, the client offers it.
    #[arg(long)]
    pub(crate) compression: bool,

    /// With --compression: zlib level for messages this end sends, 0 (none)
    /// to 9 (smallest, slowest).
    #[arg(long, value_name = "0-9", requires = "compression",
        default_value_t = DeflateConfig::default().level)]
    pub(crate) compression_level: u32,

    /// With --compression: zlib memory level for messages this end sends, 1
    /// to 9. Lower saves memory where a compression context is kept
    /// (--compression-context-takeover): a state holds 371 KiB at 8, 260 KiB
    /// at 1 (15-bit window).
    #[arg(long, value_name = "1-9", requires = "compression",
        default_value_t = DeflateConfig::default().mem_level)]
    pub(crate) compression_memory_level: u8,

    /// With --compression: messages shorter than this are sent uncompressed
    /// (suffixes KiB, MiB).
    #[arg(long, value_name = "BYTES", requires = "compression",
        default_value_t = flag_size(DeflateConfig::default().threshold))]
    pub(crate) compression_threshold: String,

    /// With --compression: largest LZ77 window either side may use, as a power
    /// of two, 8 to 15 (15 = 32 KiB; smaller saves memory, costs ratio).
    #[arg(long, value_name = "BITS", requires = "compression",
        default_value_t = DeflateConfig::default().server_max_window_bits)]
    pub(crate) compression_window_bits: u8,
}

/// Which tokio scheduler `serve` runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Runtime {
    /// tokio's work-stealing scheduler with --workers threads.
    MultiThread,
    /// tokio's single-threaded scheduler on the main thread.
    CurrentThread,
}

/// How binary messages are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BinaryOutput {
    /// Lowercase hexadecimal, one message per line.
    Hex,
    /// Standard base64, one message per line.
    Base64,
}

/// `wshub connect`. Exit codes: 0 closed by you (end of input, Ctrl-C,
/// `/close`, --execute and --wait done) or cleanly by the server; 1 the
/// connection failed or dropped; 2 a usage error (a flag, the URL or a
/// proxy setting), with a message that says what to fix.
#[derive(Debug, Args)]
#[command(after_help = CONNECT_AFTER_HELP)]
pub(crate) struct ConnectArgs {
    /// Server URL: ws://host[:port]/path or wss://… (user:password@ in it
    /// is sent as Basic authentication, as --auth).
    pub(crate) url: String,

    /// Extra request header `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub(crate) headers: Vec<String>,

    /// Subprotocol to offer (repeatable, in preference order).
    #[arg(short = 's', long = "subprotocol", value_name = "PROTOCOL")]
    pub(crate) subprotocols: Vec<String>,

    /// The Origin header to send, e.g. https://example.com (a server may
    /// refuse requests without the origin it expects).
    #[arg(short = 'o', long, value_name = "ORIGIN")]
    pub(crate) origin: Option<String>,

    /// HTTP Basic authentication: sends `Authorization: Basic …` with
    /// USER:PASSWORD.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub(crate) auth: Option<String>,

    /// Follow HTTP redirects (301, 302, 303, 307, 308) of the opening
    /// handshake, at most 10; an http(s):// Location is taken as ws(s)://.
    #[arg(short = 'L', long)]
    pub(crate) location: bool,

    #[command(flatten)]
    pub(crate) session: SessionArgs,

    /// Reconnect with exponential backoff and jitter when the connection drops
    /// (not after you close it with Ctrl-D or Ctrl-C).
    ///
    /// With a wshub hub (/ws) it also resumes the rooms you joined through
    /// it: it watches the `joined` answers and `message`s passing by and,
    /// after reconnecting, sends your last `auth` request again and joins
    /// each room again with `since` (the epoch and offset of the last
    /// message printed), so the hub replays what you missed. A message
    /// printed already is not printed again (de-duplicated by offset), and
    /// when the hub no longer has them all it prints `room ROOM: some
    /// messages may be missing` on stderr. A room you `leave` is forgotten.
    #[arg(long)]
    pub(crate) reconnect: bool,

    /// Longest wait between reconnect attempts.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub(crate) reconnect_max_delay: Duration,

    #[command(flatten)]
    pub(crate) proxy: ProxyArgs,

    #[command(flatten)]
    pub(crate) compression: CompressionArgs,

    #[command(flatten)]
    pub(crate) tls: ClientTlsArgs,

    /// Time allowed for TCP connect, proxy, TLS handshake and the opening
    /// handshake, per attempt (each redirect is one).
    #[arg(long, value_name = "DURATION",
        default_value_t = flag_duration(WebSocketConfig::default().handshake_timeout))]
    pub(crate) handshake_timeout: humantime::Duration,
}

const CONNECT_AFTER_HELP: &str = "\
Input: each line of stdin is one message. When stdin and stdout are
terminals, a prompt with line editing and history (Up/Down, Ctrl-R) is
shown and received messages are printed above it, prefixed `< `; otherwise
lines are read and printed as they are (pipe mode). Status lines go to
stderr.

Slash commands (with --slash): /ping [PAYLOAD], /pong [PAYLOAD],
/close [CODE [REASON]]; `//text` sends `/text`.

Proxies: --proxy and --socks5, else the environment: https_proxy/HTTPS_PROXY
for wss://, http_proxy/HTTP_PROXY for ws://, then all_proxy/ALL_PROXY;
no_proxy/NO_PROXY lists hosts to reach directly (comma-separated names,
`.domain` suffixes, addresses, optional :port, or `*`). A proxy URL is
http://[user:password@]host[:port] (HTTP CONNECT; port 80 unless given),
socks5://… (names resolved here) or socks5h://… (by the proxy; port 1080
unless given for both).

Exit codes: 0 closed by you or cleanly by the server, 1 connection failed
or dropped, 2 usage error.

Examples:
  wshub connect ws://127.0.0.1:8080/echo
  wshub connect -x hello -1 ws://127.0.0.1:8080/echo
  wshub connect -x '{\"op\":\"join\",\"room\":\"lobby\"}' -w 2 ws://127.0.0.1:8080/ws
  wshub connect --show-ping-pong --slash wss://example.com/socket
  wshub connect --proxy http://user:pw@proxy:3128 wss://example.com/socket";

/// What `connect` and `listen` do with one connection: what is sent, what is
/// printed, and how it ends.
#[derive(Debug, Args)]
pub(crate) struct SessionArgs {
    /// Send each stdin line as a binary message instead of text.
    #[arg(long)]
    pub(crate) binary: bool,

    /// How to print binary messages.
    #[arg(long, value_enum, default_value_t = BinaryOutput::Hex)]
    pub(crate) binary_output: BinaryOutput,

    /// Send MESSAGE once connected (listen: to the client once it
    /// connects), instead of reading stdin (repeatable, sent in order);
    /// then close after --wait.
    #[arg(short = 'x', long = "execute", value_name = "MESSAGE")]
    pub(crate) execute: Vec<String>,

    /// With --execute: how long to go on printing what arrives before
    /// closing, in seconds (`2`, `0.5`) or as a duration (`500ms`). With
    /// --one-message the wait for the message does not end with it.
    #[arg(short = 'w', long, value_name = "SECS", default_value = "0", value_parser = parse_wait, requires = "execute")]
    pub(crate) wait: Duration,

    /// Close after the first message received (printed), e.g. with
    /// --execute for a request and its answer. The end of input does not
    /// close before it.
    #[arg(short = '1', long)]
    pub(crate) one_message: bool,

    /// On end of input (Ctrl-D, the end of a pipe, --execute done) close
    /// the connection and exit: the default (wscat's behaviour); the flag is
    /// accepted so websocat command lines work.
    #[arg(short = 'E', long, conflicts_with = "keep_open")]
    pub(crate) exit_on_eof: bool,

    /// On end of input keep the connection open and go on printing until
    /// the peer closes it or Ctrl-C (websocat's default).
    #[arg(long)]
    pub(crate) keep_open: bool,

    /// Show the Pings and Pongs received on stderr, each Pong answering one
    /// of ours (/ping, --ping-interval) with its round-trip time in
    /// milliseconds.
    #[arg(long = "show-ping-pong", short = 'P')]
    pub(crate) show_ping_pong: bool,

    /// Take lines starting with `/` as commands: /ping [PAYLOAD],
    /// /pong [PAYLOAD], /close [CODE [REASON]]; `//text` sends `/text`.
    #[arg(long)]
    pub(crate) slash: bool,

    /// Send a protocol Ping this often (e.g. 10s); off by default.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub(crate) ping_interval: Option<Duration>,

    /// With --ping-interval: give up on a peer silent this long after a Ping
    /// (the connection ends as dropped, exit 1).
    #[arg(long, value_name = "DURATION",
        default_value_t = flag_duration(WebSocketConfig::default().pong_timeout))]
    pub(crate) pong_timeout: humantime::Duration,

    /// Close code sent on Ctrl-D / end of input (1000, 1001, 1002, 1003,
    /// 1007–1014 or 3000–4999).
    #[arg(long, default_value_t = 1000, value_name = "CODE")]
    pub(crate) close_code: u16,

    /// Close reason sent on Ctrl-D / end of input (at most 123 bytes of UTF-8).
    #[arg(long, default_value = "", value_name = "TEXT")]
    pub(crate) close_reason: String,

    /// Largest message (and frame) accepted, in bytes (suffixes KiB, MiB, GiB).
    #[arg(long, value_name = "BYTES",
        default_value_t = flag_size(WebSocketConfig::default().protocol.max_message_size))]
    pub(crate) max_message_size: String,
}

/// `--wait`: seconds as a number, or a humantime duration.
fn parse_wait(value: &str) -> Result<Duration, String> {
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{value}: use seconds of 0 or more, e.g. 2 or 0.5"));
    }
    humantime::parse_duration(value)
        .map_err(|e| format!("{value}: {e}; use seconds (2, 0.5) or a duration (500ms)"))
}

/// Where `connect` goes through a proxy; see the proxy part of
/// `wshub connect --help` for the environment variables.
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// Connect through this proxy: http://[USER:PASSWORD@]HOST[:PORT] (HTTP
    /// CONNECT, with Basic authentication when given), socks5://… or
    /// socks5h://…. Overrides the proxy environment variables.
    #[arg(long, value_name = "URL", conflicts_with_all = ["socks5", "no_proxy"])]
    pub(crate) proxy: Option<String>,

    /// Connect through this SOCKS5 proxy, HOST:PORT (the proxy resolves the
    /// server's name), as --proxy socks5h://HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "no_proxy")]
    pub(crate) socks5: Option<String>,

    /// Ignore the proxy environment variables: connect directly.
    #[arg(long)]
    pub(crate) no_proxy: bool,
}

/// `wshub listen`. Exit codes: 0 input ended, Ctrl-C, or the client served
/// (--once, --execute); 1 the address cannot be bound; 2 a usage error.
#[derive(Debug, Args)]
#[command(after_help = LISTEN_AFTER_HELP)]
pub(crate) struct ListenArgs {
    /// Port to listen on (on 127.0.0.1), or ADDR:PORT (0.0.0.0:8080, [::]:8080
    /// to be reached from other machines). Port 0 picks a free one; the
    /// address is printed as `listening on ws://ADDR` on stderr.
    #[arg(value_name = "[ADDR:]PORT")]
    pub(crate) listen: String,

    /// Subprotocol to accept when the client offers it (repeatable, in
    /// preference order).
    #[arg(short = 's', long = "subprotocol", value_name = "PROTOCOL")]
    pub(crate) subprotocols: Vec<String>,

    /// Serve one client, then exit when it goes.
    #[arg(long)]
    pub(crate) once: bool,

    #[command(flatten)]
    pub(crate) session: SessionArgs,

    #[command(flatten)]
    pub(crate) compression: CompressionArgs,
}

const LISTEN_AFTER_HELP: &str = "\
One client at a time: each line of stdin is sent to it as a message, each
message it sends is printed; another client meanwhile is answered 503. When
a client goes, the next one is taken (unless --once); lines typed with no
client connected are dropped, with a warning. A terminal gets the same
prompt as `wshub connect`.

Exit codes: 0 input ended, Ctrl-C, or (--once, --execute) the client
served; 1 the address cannot be bound; 2 usage error.

Examples:
  wshub listen 8080
  wshub listen -x hello -1 0.0.0.0:8080";

/// `wshub publish`. Exit codes: 0 published (or a duplicate), 1 the hub
/// refused it or could not be reached, 2 a usage error.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The hub's base URL: http://HOST:PORT or https://HOST:PORT (ws:// and
    /// wss:// are taken as http:// and https://). A path is the prefix the
    /// API sits under: /api/publish is appended to it.
    #[arg(long, value_name = "URL")]
    pub(crate) url: String,

    /// Room to publish into.
    #[arg(long, value_name = "ROOM")]
    pub(crate) room: String,

    /// Display name the members see as the message's sender [default: the
    /// hub's, `api`].
    #[arg(long, value_name = "NAME")]
    pub(crate) from: Option<String>,

    /// Idempotency key, 1 to 64 bytes: while the room's history holds a
    /// message published with this key, the hub publishes nothing again and
    /// answers with that message's offset and `"duplicate": true`, so a
    /// retry after a timeout publishes once.
    #[arg(long, value_name = "KEY")]
    pub(crate) idempotency_key: Option<String>,

    /// Send MESSAGE as the JSON value it spells (`{"n":1}`, `42`, `"text"`)
    /// rather than as a JSON string.
    #[arg(long)]
    pub(crate) json: bool,

    /// File holding the hub's API key (trailing whitespace is ignored).
    /// Without it, the key is taken from the WSHUB_API_KEY environment
    /// variable.
    #[arg(long, value_name = "FILE")]
    pub(crate) api_key_file: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) tls: ClientTlsArgs,

    /// Time allowed for the whole request: connecting, the TLS handshake,
    /// sending and the hub's answer.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub(crate) timeout: Duration,

    /// The message: text, sent as a JSON string, or with --json a JSON
    /// value. `-` reads it from stdin (all of it, less one trailing
    /// newline).
    #[arg(value_name = "MESSAGE")]
    pub(crate) message: String,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    pub(crate) mode: BenchMode,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchMode {
    /// Round trips through an echo server; every echo is checked (bytes, type,
    /// order) and any mismatch makes the exit code 1.
    Echo(BenchEchoArgs),
    /// Handshake rate: each loop connects, upgrades, does a clean close
    /// handshake, and starts again.
    Connect(BenchConnectArgs),
    /// Open many connections and hold them, answering Pings; with --pid,
    /// report the server's memory per connection.
    Idle(BenchIdleArgs),
    /// Hub fan-out (the hub's /ws): subscribers join one room, one publisher
    /// publishes; lost or reordered messages make the exit code 1.
    Fanout(BenchFanoutArgs),
}

/// Flags every bench mode takes.
#[derive(Debug, Args)]
pub(crate) struct BenchOutputArgs {
    /// Worker threads, each a single-threaded async runtime with its share of
    /// the connections.
    #[arg(long, value_name = "N", default_value_t = bench_run().threads)]
    pub(crate) threads: usize,

    /// Bound on one TCP connect plus opening handshake, and on each close
    /// handshake.
    #[arg(long, value_name = "DURATION", default_value_t = flag_duration(bench_run().timeout))]
    pub(crate) timeout: humantime::Duration,

    /// Print the summary as JSON on stdout instead of text.
    #[arg(long)]
    pub(crate) json: bool,

    #[command(flatten)]
    pub(crate) tls: ClientTlsArgs,

    /// With wss://: which TLS sessions a handshake may resume. per-connection:
    /// each `connect` loop resumes its own previous session, as independent
    /// clients reconnecting do; shared: one cache for the run (at most 8
    /// tickets, so with many handshakes in flight most are full); off: every
    /// handshake is full.
    #[arg(long, value_name = "WHICH", default_value = "per-connection")]
    pub(crate) tls_resumption: TlsResumption,
}

/// `wshub bench --tls-resumption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TlsResumption {
    /// Each connect loop keeps its own session cache.
    PerConnection,
    /// One session cache for the whole run.
    Shared,
    /// Never resume.
    Off,
}

/// How long a measured mode runs.
#[derive(Debug, Args)]
pub(crate) struct BenchTimeArgs {
    /// Time measured, after the warm-up.
    #[arg(short = 'd', long, value_name = "DURATION",
        default_value_t = flag_duration(bench_run().duration))]
    pub(crate) duration: humantime::Duration,

    /// Time run before measuring starts.
    #[arg(long, value_name = "DURATION", default_value_t = flag_duration(bench_run().warmup))]
    pub(crate) warmup: humantime::Duration,
}

#[derive(Debug, Args)]
pub(crate) struct BenchEchoArgs {
    /// Echo server URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/echo", value_name = "URL")]
    pub(crate) url: String,

    /// Connections.
    #[arg(short = 'c', long, value_name = "N", default_value_t = EchoConfig::default().connections)]
    pub(crate) connections: usize,

    /// Payload of each message, in bytes (suffixes KiB, MiB).
    #[arg(short = 's', long, value_name = "BYTES", default_value_t = flag_size(EchoConfig::default().size))]
    pub(crate) size: String,

    /// Send binary messages instead of text.
    #[arg(long)]
    pub(crate) binary: bool,

    /// Messages in flight per connection.
    #[arg(short = 'p', long, value_name = "P", default_value_t = EchoConfig::default().in_flight)]
    pub(crate) in_flight: usize,

    #[command(flatten)]
    pub(crate) time: BenchTimeArgs,

    #[command(flatten)]
    pub(crate) output: BenchOutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct BenchConnectArgs {
    /// Server URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/echo", value_name = "URL")]
    pub(crate) url: String,

    /// Concurrent connect-upgrade-close loops.
    #[arg(short = 'c', long, value_name = "C",
        default_value_t = wshub_bench::ConnectConfig::default().concurrency)]
    pub(crate) concurrency: usize,

    #[command(flatten)]
    pub(crate) time: BenchTimeArgs,

    #[command(flatten)]
    pub(crate) output: BenchOutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct BenchIdleArgs {
    /// Server URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/echo", value_name = "URL")]
    pub(crate) url: String,

    /// Connections to open and hold.
    #[arg(short = 'c', long, value_name = "N", default_value_t = IdleConfig::default().connections)]
    pub(crate) connections: usize,

    /// Handshakes in progress at once while opening.
    #[arg(long, value_name = "K", default_value_t = IdleConfig::default().handshake_concurrency)]
    pub(crate) handshake_concurrency: usize,

    /// Time to hold the connections once all are open.
    #[arg(long, value_name = "DURATION", default_value_t = flag_duration(IdleConfig::default().hold))]
    pub(crate) hold: humantime::Duration,

    /// Server process id: its resident memory (VmRSS in /proc/PID/status) is
    /// sampled before and after opening, giving KiB per connection.
    #[arg(long, value_name = "PID")]
    pub(crate) pid: Option<u32>,

    /// Join this hub room on every connection (the URL must be the hub's /ws).
    #[arg(long, value_name = "ROOM")]
    pub(crate) join: Option<String>,

    /// Offer permessage-deflate and, where accepted, send one compressed
    /// message per connection (the join with --join, else 4 KiB of text), so
    /// the server's memory per idle compressed connection is measured.
    #[arg(long)]
    pub(crate) compression: bool,

    /// Before going quiet, send one binary message of this size on every
    /// connection (the echo route sends it back), so the memory measured is
    /// that of an idle connection after a burst (buffers grown for it and
    /// not released would show). Up to 16MiB.
    #[arg(long, value_name = "BYTES", conflicts_with_all = ["compression", "join"])]
    pub(crate) burst: Option<String>,

    #[command(flatten)]
    pub(crate) output: BenchOutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct BenchFanoutArgs {
    /// The hub's JSON endpoint. Repeat it to spread the subscribers over
    /// several (nodes of one hub, or one hub under several names):
    /// subscriber i joins at URL i mod n.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws", value_name = "URL")]
    pub(crate) url: Vec<String>,

    /// Where the publisher joins (default: the first --url).
    #[arg(long, value_name = "URL")]
    pub(crate) publisher_url: Option<String>,

    /// Subscribers of the room.
    #[arg(short = 'm', long, value_name = "M", default_value_t = FanoutConfig::default().subscribers)]
    pub(crate) subscribers: usize,

    /// Publishes per second; default: as fast as --window allows.
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub(crate) rate: Option<f64>,

    /// Bytes of each published message (at least 16, the time stamp).
    #[arg(short = 's', long, value_name = "BYTES", default_value_t = flag_size(FanoutConfig::default().size))]
    pub(crate) size: String,

    /// Publishes allowed ahead of the slowest subscriber; keep it well under
    /// the hub's --send-queue so the generator never trips its slow-consumer
    /// kick.
    #[arg(long, value_name = "MESSAGES", default_value_t = FanoutConfig::default().window)]
    pub(crate) window: usize,

    /// Count only the publisher's own copies in --window, as a client that
    /// knows nothing of the other members would: the hub's back-pressure is
    /// then all that keeps the subscribers from falling behind. Run the hub
    /// with a --message-rate above the publish rate.
    #[arg(long)]
    pub(crate) own_copies: bool,

    /// Handshakes in progress at once while subscribers connect.
    #[arg(long, value_name = "K", default_value_t = FanoutConfig::default().handshake_concurrency)]
    pub(crate) handshake_concurrency: usize,

    /// Room to use (default: bench- and random digits).
    #[arg(long, value_name = "ROOM")]
    pub(crate) room: Option<String>,

    /// Share of the subscribers (0 to 1) that resume every --resume-every
    /// during the measured window, drawn at random each time: each drops its
    /// connection without a close handshake, reconnects and joins again with
    /// `since`, the epoch and offset of the last message it got; the missed
    /// messages must follow in order. 0: off.
    #[arg(long, value_name = "FRACTION", default_value_t = FanoutConfig::default().resume_share)]
    pub(crate) resume_share: f64,

    /// Time between rounds of resumes (with --resume-share).
    #[arg(long, value_name = "DURATION",
        default_value_t = flag_duration(FanoutConfig::default().resume_every))]
    pub(crate) resume_every: humantime::Duration,

    /// A resuming subscriber reconnects to the next --url (round-robin), not
    /// its own, as when the node it was on dies.
    #[arg(long)]
    pub(crate) resume_elsewhere: bool,

    /// Verify delivery: exit 1 if any message was lost or duplicated (each
    /// subscriber checks every delivery's epoch and offset against the last
    /// it received; losses and duplicates fail any run), or if the server's
    /// messages carry no epoch and offset to check.
    #[arg(long)]
    pub(crate) verify: bool,

    /// Members join with names of their own (subscriber i as s<i>, s<i>r<k>
    /// after its k-th resume, the publisher as p) instead of the hub's
    /// anon-<id>, which nodes of one hub on Redis can hand out twice
    /// (name_taken).
    #[arg(long)]
    pub(crate) named: bool,

    #[command(flatten)]
    pub(crate) time: BenchTimeArgs,

    #[command(flatten)]
    pub(crate) output: BenchOutputArgs,
}
