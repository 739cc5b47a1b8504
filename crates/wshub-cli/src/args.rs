//! The command line as typed (clap). Values are checked in `config.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// wshub: a WebSocket hub, client and toolkit.
#[derive(Debug, Parser)]
#[command(name = "wshub", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Log filter for stderr, e.g. `info`, `debug`, `wshub_hub=debug` (the
    /// RUST_LOG environment variable overrides it).
    #[arg(long, global = true, default_value = "info", value_name = "FILTER")]
    pub(crate) log: String,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the real-time hub: chat page at /, JSON hub at /ws, echo at /echo.
    Serve(ServeArgs),
    /// Connect to a WebSocket server: stdin lines are sent, messages printed.
    Connect(ConnectArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is
    /// printed as `listening on http://ADDR`).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub(crate) listen: SocketAddr,

    /// Send a protocol Ping to every client this often (e.g. 25s, 1m).
    #[arg(long, default_value = "25s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub(crate) ping_interval: Duration,

    /// Disconnect a client that sends nothing back this long after a Ping.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub(crate) pong_timeout: Duration,

    /// Largest message accepted, in bytes (suffixes KiB, MiB, GiB); bigger
    /// ones close the connection with 1009.
    #[arg(long, default_value = "16MiB", value_name = "BYTES")]
    pub(crate) max_message_size: String,

    /// Largest single frame accepted, in bytes (suffixes KiB, MiB, GiB).
    #[arg(long, default_value = "16MiB", value_name = "BYTES")]
    pub(crate) max_frame_size: String,

    /// Frames queued per client before a slow reader is disconnected (1008).
    #[arg(long, default_value_t = 1024, value_name = "FRAMES")]
    pub(crate) send_queue: usize,

    /// Time a client has to send its HTTP request head.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub(crate) handshake_timeout: Duration,

    /// On Ctrl-C or SIGTERM, time allowed for close handshakes before exiting.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub(crate) shutdown_timeout: Duration,
}

/// How binary messages are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BinaryOutput {
    /// Lowercase hexadecimal, one message per line.
    Hex,
    /// Standard base64, one message per line.
    Base64,
}

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Server URL, e.g. ws://127.0.0.1:8080/ws.
    pub(crate) url: String,

    /// Extra request header `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub(crate) headers: Vec<String>,

    /// Subprotocol to offer (repeatable, in preference order).
    #[arg(short = 's', long = "subprotocol", value_name = "PROTOCOL")]
    pub(crate) subprotocols: Vec<String>,

    /// Send each stdin line as a binary message instead of text.
    #[arg(long)]
    pub(crate) binary: bool,

    /// How to print binary messages.
    #[arg(long, value_enum, default_value_t = BinaryOutput::Hex)]
    pub(crate) binary_output: BinaryOutput,

    /// Send a protocol Ping this often (e.g. 10s); off by default.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub(crate) ping_interval: Option<Duration>,

    /// With --ping-interval: give up on a server silent this long after a Ping.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub(crate) pong_timeout: Duration,

    /// Reconnect with exponential backoff and jitter when the connection drops
    /// (not after you close it with Ctrl-D or Ctrl-C).
    #[arg(long)]
    pub(crate) reconnect: bool,

    /// Longest wait between reconnect attempts.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub(crate) reconnect_max_delay: Duration,

    /// Close code sent on Ctrl-D / end of input (1000, 1001, 1002, 1003,
    /// 1007–1014 or 3000–4999).
    #[arg(long, default_value_t = 1000, value_name = "CODE")]
    pub(crate) close_code: u16,

    /// Close reason sent on Ctrl-D / end of input (at most 123 bytes of UTF-8).
    #[arg(long, default_value = "", value_name = "TEXT")]
    pub(crate) close_reason: String,

    /// Time allowed for TCP connect plus the opening handshake.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub(crate) handshake_timeout: Duration,

    /// Largest message accepted, in bytes (suffixes KiB, MiB, GiB).
    #[arg(long, default_value = "64MiB", value_name = "BYTES")]
    pub(crate) max_message_size: String,
}
