//! Arguments checked and turned into library configuration. Every error
//! names the flag and says what to fix.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use wshub::{
    CloseCode, DeflateConfig, DeflateConfigError, OriginPolicy, ProtocolConfig, WebSocketConfig,
};
use wshub_hub::{
    AdmissionConfig, ApiKey, AuthConfig, HubConfig, MetricsEndpoint, RedisConfig, TokenVerifier,
};

use crate::args::{
    AccessArgs, AdmissionArgs, CompressionArgs, ConnectArgs, Engine, MemberLimitArgs, Runtime,
    ServeArgs, SessionArgs,
};

/// Parses a byte size: a whole number with an optional `B`, `KiB`, `MiB` or
/// `GiB` suffix (also `K`, `M`, `G`, `KB`, `MB`, `GB`, all binary), at least 1.
pub(crate) fn parse_size(flag: &str, value: &str) -> Result<usize> {
    let bytes = parse_bytes(flag, value)?;
    if bytes == 0 {
        bail!("{flag} must be at least 1 byte");
    }
    Ok(bytes)
}

/// [`parse_size`], where 0 is allowed.
fn parse_bytes(flag: &str, value: &str) -> Result<usize> {
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

/// The hub's settings: [`HubConfig::default`] with each flag applied (the
/// flags' own defaults are taken from it, see `args.rs`).
pub(crate) fn hub_config(args: &ServeArgs) -> Result<HubConfig> {
    let ping_interval = Duration::from(args.ping_interval);
    let pong_timeout = Duration::from(args.pong_timeout);
    let handshake_timeout = Duration::from(args.handshake_timeout);
    if ping_interval.is_zero() {
        bail!("--ping-interval must be more than 0, e.g. 25s");
    }
    if pong_timeout.is_zero() {
        bail!("--pong-timeout must be more than 0, e.g. 10s");
    }
    if handshake_timeout.is_zero() {
        bail!("--handshake-timeout must be more than 0, e.g. 10s");
    }
    if args.send_queue == 0 {
        bail!("--send-queue must be at least 1 frame");
    }
    let mut config = HubConfig::default();
    let websocket = &mut config.websocket;
    websocket.ping_interval = Some(ping_interval);
    websocket.pong_timeout = pong_timeout;
    websocket.handshake_timeout = handshake_timeout;
    let message_timeout = Duration::from(args.message_timeout);
    websocket.message_timeout = (!message_timeout.is_zero()).then_some(message_timeout);
    websocket.protocol.max_message_size = parse_size("--max-message-size", &args.max_message_size)?;
    websocket.protocol.max_frame_size = parse_size("--max-frame-size", &args.max_frame_size)?;
    websocket.compression = deflate_config(&args.compression, DeflateConfig::server())?;
    if let Some(deflate) = websocket.compression.as_mut() {
        if args.compression_context_takeover {
            deflate.server_no_context_takeover = false;
            deflate.client_no_context_takeover = false;
        }
    }
    config.send_queue = args.send_queue;
    config.origin = origin_policy(&args.access)?;
    config.auth = auth_config(&args.access)?;
    config.api_key = api_key(&args.access)?;
    member_limits(&args.member_limits, &mut config)?;
    config.presence_limit = args.presence_limit;
    config.history_size = args.history_size;
    config.history_ttl = args.history_ttl.into();
    if config.history_ttl > wshub_hub::rooms::MAX_HISTORY_TTL {
        bail!("--history-ttl must be at most 365d; 0s keeps no history");
    }
    config.history_max_replay = args.history_max_replay;
    config.history_bytes = parse_size("--history-bytes", &args.history_bytes)?;
    if args.engine == Engine::Redis {
        config.redis = Some(redis_config(args)?);
    }
    config.shutdown_timeout = args.shutdown_timeout.into();
    config.drain_spread = args.drain_spread.into();
    config.metrics = match (args.metrics, args.metrics_listen) {
        (_, Some(addr)) => MetricsEndpoint::Listen(addr),
        (true, None) => MetricsEndpoint::Main,
        (false, None) => MetricsEndpoint::Off,
    };
    Ok(config)
}

/// The admission limits from their flags, for a process that may hold
/// `open_files` descriptors (`None` where that is not known: then
/// `--max-connections` has no default cap). Kept apart from [`hub_config`]
/// because the library's default has every limit off and `serve` turns them
/// on (see [`AdmissionConfig::recommended`]).
pub(crate) fn admission(args: &AdmissionArgs, open_files: Option<u64>) -> Result<AdmissionConfig> {
    let mut config = open_files.map_or_else(AdmissionConfig::default, AdmissionConfig::recommended);
    if let Some(max) = args.max_connections {
        if let Some(open_files) = open_files {
            check_max_connections(max, open_files)?;
        }
        config.max_connections = max;
    }
    config.max_connections_per_ip = args.max_connections_per_ip;
    config.handshakes_per_ip = args.handshakes_per_ip;
    for proxy in &args.trusted_proxies {
        let network = proxy.trim().parse().with_context(|| {
            format!(
                "--trusted-proxy {proxy:?}: use an address (192.0.2.1) or a network (10.0.0.0/8, fd00::/8)"
            )
        })?;
        config.trusted_proxies.push(network);
    }
    Ok(config)
}

/// Descriptors `serve` needs besides its connections at the least: the
/// listener, the standard streams, the runtime's (epoll, its wakers, the
/// signal pipe), the metrics listener, a log file.
const FIXED_DESCRIPTORS: u64 = 32;

/// Refuses a `--max-connections` that the process's open-file limit cannot
/// hold (one descriptor a connection, and [`FIXED_DESCRIPTORS`]): at
/// start, with what to change, rather than `accept` failing with EMFILE
/// once that many are open. One that fits but leaves less than the
/// default's reserve (an eighth, [`wshub_hub::max_connections_for`], for
/// connections still in their handshake or being answered 503) is logged.
/// 0 (no cap) is left alone: the cap is then the open-file limit itself.
fn check_max_connections(max: usize, open_files: u64) -> Result<()> {
    let max_u64 = max as u64;
    if max == 0 {
        return Ok(());
    }
    let holds = open_files.saturating_sub(FIXED_DESCRIPTORS);
    if max_u64 > holds {
        anyhow::bail!(
            "--max-connections {max}: this process may open only {open_files} files (the hard \
             RLIMIT_NOFILE, which serve raises the soft limit to), enough for {holds} \
             connections; use --max-connections {holds} or less, or raise the hard limit to at \
             least {needed} (ulimit -Hn as root, LimitNOFILE= in a systemd unit, nofile in \
             /etc/security/limits.conf; above 1048576 also sysctl fs.nr_open)",
            needed = max_u64 + FIXED_DESCRIPTORS,
        );
    }
    let recommended = wshub_hub::max_connections_for(open_files);
    if max > recommended {
        tracing::warn!(
            max_connections = max,
            open_files,
            "--max-connections leaves {} descriptors for connections in their handshake or \
             being refused (the default leaves an eighth of the limit: {recommended} connections)",
            open_files - max_u64,
        );
    }
    Ok(())
}

/// The Origin check from `--allowed-origin`.
fn origin_policy(args: &AccessArgs) -> Result<OriginPolicy> {
    args.allowed_origins
        .iter()
        .try_fold(OriginPolicy::default(), |policy, origin| {
            policy
                .allow(origin)
                .map_err(|e| anyhow::anyhow!("--allowed-origin {e}"))
        })
}

/// The Redis engine's settings from their flags: one server
/// (--redis-url) or a cluster's seeds (--redis-cluster), and the rediss://
/// files read and checked now, so a bad one stops the server at start.
fn redis_config(args: &ServeArgs) -> Result<RedisConfig> {
    let mut config = if args.redis_cluster.is_empty() {
        RedisConfig::new(&args.redis_url).map_err(|e| anyhow::anyhow!("--redis-url {e}"))?
    } else {
        RedisConfig::cluster(&args.redis_cluster)
            .map_err(|e| anyhow::anyhow!("--redis-cluster {e}"))?
    };
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("{flag} {}: cannot read it", path.display()))
    };
    if let Some(path) = &args.redis_ca {
        config = config
            .with_ca_pem(read("--redis-ca", path)?)
            .map_err(|e| anyhow::anyhow!("--redis-ca {}: {e}", path.display()))?;
    }
    if let (Some(cert), Some(key)) = (&args.redis_cert, &args.redis_key) {
        config = config
            .with_client_identity(read("--redis-cert", cert)?, read("--redis-key", key)?)
            .map_err(|e| {
                anyhow::anyhow!(
                    "--redis-cert {} / --redis-key {}: {e}",
                    cert.display(),
                    key.display()
                )
            })?;
    }
    config = config
        .with_presence_ttl(args.presence_ttl.into())
        .map_err(|e| anyhow::anyhow!("--presence-ttl: {e}"))?;
    if let Some(url) = &args.redis_subscriber_url {
        if !config.cluster_seeds.is_empty() {
            bail!("--redis-subscriber-url is for one Redis server (--redis-url); a cluster's subscriber connects to each master");
        }
        config = config
            .with_subscriber_url(url)
            .map_err(|e| anyhow::anyhow!("--redis-subscriber-url {e}"))?;
    }
    let tls_files = args.redis_ca.is_some() || args.redis_cert.is_some();
    let mut urls = std::iter::once(&config.url).chain(&config.cluster_seeds);
    if tls_files && !urls.any(|url| url.starts_with("rediss://")) {
        bail!("--redis-ca, --redis-cert and --redis-key are for rediss:// URLs; use rediss://host:port in --redis-url or --redis-cluster");
    }
    Ok(config)
}

/// Token authentication from its flags: the key file read and checked now,
/// so a bad one stops the server at start.
fn auth_config(args: &AccessArgs) -> Result<AuthConfig> {
    let mut config = AuthConfig::default();
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("{flag} {}: cannot read it", path.display()))
    };
    let verifier = if let Some(path) = &args.jwt_hs256_secret_file {
        let flag = "--jwt-hs256-secret-file";
        Some(
            TokenVerifier::hs256(&read(flag, path)?)
                .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))?,
        )
    } else if let Some(path) = &args.jwt_public_key {
        let flag = "--jwt-public-key";
        Some(
            TokenVerifier::public_key_pem(&read(flag, path)?)
                .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))?,
        )
    } else if let Some(path) = &args.jwks_file {
        let flag = "--jwks-file";
        let text = String::from_utf8(read(flag, path)?)
            .map_err(|_| anyhow::anyhow!("{flag} {}: not UTF-8 text", path.display()))?;
        Some(
            TokenVerifier::jwks(&text)
                .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))?,
        )
    } else {
        None
    };
    config.verifier = verifier;
    config.require = args.require_auth;
    config.timeout = args.auth_timeout.into();
    if config.timeout.is_zero() {
        bail!("--auth-timeout must be more than 0, e.g. 10s");
    }
    Ok(config)
}

/// The HTTP API's key from `--api-key-file`, read and checked now.
fn api_key(args: &AccessArgs) -> Result<Option<ApiKey>> {
    let Some(path) = &args.api_key_file else {
        return Ok(None);
    };
    let flag = "--api-key-file";
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{flag} {}: cannot read it as UTF-8 text", path.display()))?;
    let secret = text.strip_suffix('\n').unwrap_or(&text);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    ApiKey::new(secret)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))
}

/// The `/ws` member limits from their flags.
fn member_limits(args: &MemberLimitArgs, config: &mut HubConfig) -> Result<()> {
    config.send_queue_bytes = parse_size("--send-queue-bytes", &args.send_queue_bytes)?;
    config.write_timeout = args.write_timeout.into();
    if config.write_timeout.is_zero() {
        bail!("--write-timeout must be more than 0, e.g. 10s");
    }
    config.max_hub_message_size = parse_size("--max-hub-message-size", &args.max_hub_message_size)?;
    if args.message_rate == 0 {
        bail!("--message-rate must be at least 1 message per second, e.g. 100");
    }
    if args.message_burst == 0 {
        bail!("--message-burst must be at least 1 message, e.g. 200");
    }
    config.message_rate = args.message_rate;
    config.message_burst = args.message_burst;
    config.rate_limit_grace = args.rate_limit_grace.into();
    if args.max_rooms_per_member == 0 {
        bail!("--max-rooms-per-member must be at least 1, e.g. 100");
    }
    config.max_rooms_per_member = args.max_rooms_per_member;
    Ok(())
}

/// permessage-deflate settings from the `--compression*` flags, on top of
/// `base` (the role's defaults); `None` without `--compression`.
pub(crate) fn deflate_config(
    args: &CompressionArgs,
    base: DeflateConfig,
) -> Result<Option<DeflateConfig>> {
    if !args.compression {
        return Ok(None);
    }
    let mut config = base;
    config.level = args.compression_level;
    config.mem_level = args.compression_memory_level;
    // 0 compresses every message.
    config.threshold = parse_bytes("--compression-threshold", &args.compression_threshold)?;
    config.server_max_window_bits = args.compression_window_bits;
    config.client_max_window_bits = args.compression_window_bits;
    // The ranges are wshub-proto's; here they are only worded as flags.
    match config.validate() {
        Ok(()) => Ok(Some(config)),
        Err(DeflateConfigError::LevelOutOfRange { level }) => {
            bail!("--compression-level {level}: use 0 (no compression) to 9 (smallest)")
        }
        Err(DeflateConfigError::MemLevelOutOfRange { mem_level }) => {
            bail!("--compression-memory-level {mem_level}: use 1 (least memory) to 9")
        }
        Err(DeflateConfigError::WindowBitsOutOfRange { bits, .. }) => {
            bail!("--compression-window-bits {bits}: use 8 to 15 (RFC 7692 section 7.1.2)")
        }
        Err(other) => bail!("--compression: {other}"),
    }
}

/// A connect command, validated.
#[derive(Debug)]
pub(crate) struct ConnectConfig {
    pub(crate) session: SessionConfig,
    /// Request headers: --header, then Origin and Authorization.
    pub(crate) headers: Vec<(String, String)>,
}

/// What `connect` and `listen` share, validated.
#[derive(Debug)]
pub(crate) struct SessionConfig {
    /// The connection's settings, from [`WebSocketConfig::default`] and the flags.
    pub(crate) websocket: WebSocketConfig,
    pub(crate) close_code: CloseCode,
    /// --ping-interval when the session sends the Pings itself
    /// (--show-ping-pong, to time their Pongs); then the library's
    /// keepalive is off.
    pub(crate) own_pings: Option<Duration>,
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
    if let Some(origin) = &args.origin {
        if origin.is_empty() || origin.contains(['\r', '\n', '\0']) {
            bail!("--origin {origin:?}: give an origin such as https://example.com");
        }
        headers.push(("Origin".to_owned(), origin.clone()));
    }
    let credentials = match &args.auth {
        Some(auth) => {
            if !auth.contains(':') {
                bail!("--auth {auth:?}: expected USER:PASSWORD");
            }
            Some(auth.clone())
        }
        None => url_credentials(&args.url),
    };
    if let Some(credentials) = credentials {
        headers.push(("Authorization".to_owned(), basic_auth(&credentials)));
    }
    let handshake_timeout = Duration::from(args.handshake_timeout);
    if handshake_timeout.is_zero() {
        bail!("--handshake-timeout must be more than 0, e.g. 10s");
    }
    let mut session = session_config(&args.session, &args.compression, DeflateConfig::client())?;
    session.websocket = session.websocket.handshake_timeout(handshake_timeout);
    Ok(ConnectConfig { session, headers })
}

/// The `user:password` of a URL's userinfo, percent-decoded; `None` when
/// it has none (or is no URL: connecting reports that).
fn url_credentials(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    Some(format!(
        "{}:{}",
        decode(url.username()),
        decode(url.password().unwrap_or(""))
    ))
}

/// An `Authorization` (or `Proxy-Authorization`) value for HTTP Basic
/// authentication (RFC 7617) with `user:password`.
pub(crate) fn basic_auth(credentials: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// The flags `connect` and `listen` share, checked.
pub(crate) fn session_config(
    args: &SessionArgs,
    compression: &CompressionArgs,
    deflate: DeflateConfig,
) -> Result<SessionConfig> {
    let close_code = CloseCode::from(args.close_code);
    if !close_code.is_allowed_on_wire() {
        bail!(
            "--close-code {}: not a code that may be sent; use 1000-1003, 1007-1014 or 3000-4999 (RFC 6455 section 7.4)",
            args.close_code
        );
    }
    if args.close_reason.len() > wshub::MAX_CLOSE_REASON_LEN {
        bail!(
            "--close-reason is {} bytes; the limit is {} (RFC 6455 section 5.5)",
            args.close_reason.len(),
            wshub::MAX_CLOSE_REASON_LEN
        );
    }
    if args.ping_interval.is_some_and(|d| d.is_zero()) {
        bail!("--ping-interval must be more than 0, e.g. 10s");
    }
    let max_message_size = parse_size("--max-message-size", &args.max_message_size)?;
    let protocol = ProtocolConfig::default()
        .max_message_size(max_message_size)
        .max_frame_size(max_message_size);
    let own_pings = args.ping_interval.filter(|_| args.show_ping_pong);
    let websocket = WebSocketConfig::default()
        .protocol(protocol)
        .ping_interval(args.ping_interval.filter(|_| own_pings.is_none()))
        .pong_timeout(args.pong_timeout.into())
        .compression(deflate_config(compression, deflate)?);
    Ok(SessionConfig {
        websocket,
        close_code,
        own_pings,
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
            Command::Serve(args) => *args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn max_connections_beyond_the_open_file_limit_is_refused_with_what_to_change() {
        let args = |max: &str| serve_args(&["--max-connections", max]).admission;
        // 20,000 files hold 19,968 connections (32 kept for the rest).
        assert_eq!(
            admission(&args("19968"), Some(20_000))
                .unwrap()
                .max_connections,
            19_968
        );
        let e = admission(&args("19969"), Some(20_000)).unwrap_err();
        let e = e.to_string();
        assert!(e.starts_with("--max-connections 19969: "), "{e}");
        assert!(e.contains("only 20000 files"), "{e}");
        assert!(e.contains("use --max-connections 19968 or less"), "{e}");
        assert!(e.contains("at least 20001"), "{e}");
        assert!(e.contains("fs.nr_open"), "{e}");
        // The limit it names is enough, and one less is not.
        for max in [1usize, 100, 17_501, 1_000_000] {
            let e = admission(&args(&max.to_string()), Some(0)).unwrap_err();
            let e = e.to_string();
            let needed = e.split("at least ").nth(1).unwrap().split(' ').next();
            let needed: u64 = needed.unwrap().parse().unwrap();
            assert!(
                admission(&args(&max.to_string()), Some(needed)).is_ok(),
                "{max}"
            );
            assert!(
                admission(&args(&max.to_string()), Some(needed - 1)).is_err(),
                "{max}"
            );
        }
        // No cap, or an unknown limit: nothing to check.
        assert_eq!(
            admission(&args("0"), Some(20_000)).unwrap().max_connections,
            0
        );
        assert_eq!(
            admission(&args("1000000"), None).unwrap().max_connections,
            1_000_000
        );
    }

    #[test]
    fn compression_flags_become_deflate_settings_or_say_what_to_fix() {
        assert!(hub_config(&serve_args(&[]))
            .unwrap()
            .websocket
            .compression
            .is_none());
        let hub = hub_config(&serve_args(&[
            "--compression",
            "--compression-threshold",
            "0",
            "--compression-level",
            "6",
            "--compression-window-bits",
            "10",
            "--compression-memory-level",
            "3",
        ]))
        .unwrap();
        let d = hub.websocket.compression.unwrap();
        assert_eq!(
            (
                d.threshold,
                d.level,
                d.server_max_window_bits,
                d.client_max_window_bits,
                d.mem_level
            ),
            (0, 6, 10, 10, 3)
        );
        assert!(d.server_no_context_takeover && d.client_no_context_takeover);
        let d = hub_config(&serve_args(&[
            "--compression",
            "--compression-context-takeover",
        ]))
        .unwrap()
        .websocket
        .compression
        .unwrap();
        assert!(!d.server_no_context_takeover && !d.client_no_context_takeover);
        assert_eq!(
            (d.threshold, d.level, d.mem_level),
            (1024, 2, 8),
            "documented defaults"
        );

        for (flags, fix) in [
            (&["--compression", "--compression-level", "10"][..], "use 0"),
            (
                &["--compression", "--compression-memory-level", "0"],
                "use 1 (least memory) to 9",
            ),
            (
                &["--compression", "--compression-memory-level", "10"],
                "use 1 (least memory) to 9",
            ),
            (
                &["--compression", "--compression-window-bits", "16"],
                "use 8 to 15",
            ),
            (
                &["--compression", "--compression-window-bits", "7"],
                "use 8 to 15",
            ),
            (
                &["--compression", "--compression-threshold", "1XB"],
                "unknown unit",
            ),
        ] {
            let err = hub_config(&serve_args(flags)).unwrap_err().to_string();
            assert!(err.contains(fix), "{flags:?}: {err}");
        }
        // The tuning flags mean nothing without --compression: clap says so.
        for flags in [
            &["serve", "--compression-level", "3"][..],
            &["serve", "--compression-context-takeover"],
            &["connect", "--compression-threshold", "0", "ws://a/"],
        ] {
            let argv = ["wshub"].iter().chain(flags);
            assert!(Cli::try_parse_from(argv).is_err(), "{flags:?}");
        }
    }

    /// Every flag left out means the library's default: the flags' defaults
    /// are computed from `HubConfig::default()`, so they cannot drift.
    #[test]
    fn serve_without_flags_is_the_hubs_default_config() {
        let from_flags = hub_config(&serve_args(&[])).unwrap();
        let default = HubConfig::default();
        assert_eq!(format!("{from_flags:?}"), format!("{default:?}"));
        let from_flags = hub_config(&serve_args(&[
            "--ping-interval",
            "1m",
            "--max-message-size",
            "1MiB",
            "--handshake-timeout",
            "3s",
        ]))
        .unwrap();
        assert_eq!(
            from_flags.websocket.ping_interval,
            Some(Duration::from_secs(60))
        );
        assert_eq!(from_flags.websocket.protocol.max_message_size, 1 << 20);
        assert_eq!(
            from_flags.websocket.handshake_timeout,
            Duration::from_secs(3)
        );
    }

    #[test]
    fn connect_without_flags_is_the_librarys_default_config() {
        let argv = ["wshub", "connect", "ws://a/"];
        let Command::Connect(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not connect");
        };
        let from_flags = connect_config(&args).unwrap().session.websocket;
        // One flag bounds messages and frames alike.
        let mut expected = WebSocketConfig::default();
        expected.protocol.max_frame_size = expected.protocol.max_message_size;
        assert_eq!(format!("{from_flags:?}"), format!("{expected:?}"));
    }

    #[test]
    fn the_help_shows_the_library_defaults() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        let serve = cli.find_subcommand_mut("serve").unwrap();
        let help = serve.render_long_help().to_string();
        for shown in [
            "[default: 25s]",
            "[default: 16MiB]",
            "[default: 1024]",
            "[default: 1KiB]",
        ] {
            assert!(help.contains(shown), "{shown} missing from:\n{help}");
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
    fn sizes_are_shown_with_the_largest_whole_suffix() {
        use crate::args::flag_size;
        assert_eq!(flag_size(16 << 20), "16MiB");
        assert_eq!(flag_size(1024), "1KiB");
        assert_eq!(flag_size(3 << 30), "3GiB");
        assert_eq!(flag_size(1500), "1500");
        assert_eq!(flag_size(0), "0");
        for bytes in [0, 1, 1500, 1024, 16 << 20] {
            assert_eq!(parse_bytes("--x", &flag_size(bytes)).unwrap(), bytes);
        }
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

    #[test]
    fn member_limit_flags_become_the_hub_config_or_say_what_to_fix() {
        let hub = hub_config(&serve_args(&[
            "--send-queue-bytes",
            "256KiB",
            "--write-timeout",
            "3s",
            "--max-hub-message-size",
            "8KiB",
            "--message-rate",
            "5",
            "--message-burst",
            "9",
            "--rate-limit-grace",
            "1m",
            "--max-rooms-per-member",
            "3",
        ]))
        .unwrap();
        assert_eq!(hub.send_queue_bytes, 256 << 10);
        assert_eq!(hub.write_timeout, Duration::from_secs(3));
        assert_eq!(hub.max_hub_message_size, 8 << 10);
        assert_eq!((hub.message_rate, hub.message_burst), (5, 9));
        assert_eq!(hub.rate_limit_grace, Duration::from_secs(60));
        assert_eq!(hub.max_rooms_per_member, 3);
        for (flags, fix) in [
            (
                &["--send-queue-bytes", "0"][..],
                "--send-queue-bytes must be at least 1 byte",
            ),
            (
                &["--write-timeout", "0s"],
                "--write-timeout must be more than 0",
            ),
            (
                &["--message-rate", "0"],
                "--message-rate must be at least 1",
            ),
            (
                &["--message-burst", "0"],
                "--message-burst must be at least 1",
            ),
            (
                &["--max-rooms-per-member", "0"],
                "--max-rooms-per-member must be at least 1",
            ),
            (
                &["--max-hub-message-size", "0"],
                "--max-hub-message-size must be at least 1 byte",
            ),
        ] {
            let err = hub_config(&serve_args(flags)).unwrap_err().to_string();
            assert!(err.contains(fix), "{flags:?}: {err}");
        }
    }
}
