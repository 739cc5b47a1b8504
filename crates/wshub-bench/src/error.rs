//! Errors that stop a run ([`Error`]) apart from the failures of single
//! connections ([`ConnectionError`]), which are counted in the report.

use std::io;

use wshub_proto::handshake::HandshakeError;
use wshub_proto::ProtocolError;

/// A [`Config`](crate::Config) value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count that must be at least 1 was 0.
    #[error("{field} must be at least 1")]
    Zero {
        /// The field, as named in the config struct.
        field: &'static str,
    },
    /// A duration that must be more than 0 was 0.
    #[error("{field} must be more than 0")]
    ZeroDuration {
        /// The field, as named in the config struct.
        field: &'static str,
    },
    /// A size below its minimum.
    #[error("{field} is {value}, the minimum is {minimum}")]
    TooSmall {
        /// The field, as named in the config struct.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The smallest accepted value.
        minimum: u64,
    },
    /// A size over its limit.
    #[error("{field} is {value}, the limit is {limit}")]
    TooLarge {
        /// The field, as named in the config struct.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The largest accepted value.
        limit: u64,
    },
    /// A publish rate that is not a positive finite number.
    #[error("rate must be a positive number of messages per second")]
    InvalidRate,
    /// A share that is not a number from 0 to 1.
    #[error("{field} must be a number from 0 to 1")]
    InvalidShare {
        /// The field, as named in the config struct.
        field: &'static str,
    },
    /// A room name outside the hub's 1–64 bytes.
    #[error("room names are 1 to 64 bytes")]
    InvalidRoom,
    /// Two fields that cannot be set together were.
    #[error("{field} cannot be used with {other}")]
    Conflict {
        /// The field, as named in the config struct.
        field: &'static str,
        /// The field it cannot go with.
        other: &'static str,
    },
}

/// Why a run could not start or finish. Failures of single connections are
/// not errors of the run: they are counted in the [`Report`](crate::Report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is out of range.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The URL is not a `ws://` URL this generator can use.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host name did not resolve.
    #[error("cannot resolve {host}")]
    Resolve {
        /// The host and port looked up.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// More connections than the process may open files, even after raising
    /// the soft `RLIMIT_NOFILE` to the hard limit.
    #[error(
        "{connections} connections need about {needed} file descriptors but RLIMIT_NOFILE is {limit} \
         (soft limit already raised to the hard limit); raise the hard limit (ulimit -Hn, or \
         LimitNOFILE= for a service) or use fewer connections"
    )]
    TooManyConnections {
        /// Connections the run would hold open at once.
        connections: u64,
        /// File descriptors that takes, with a margin.
        needed: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The server's resident memory could not be read from `/proc/PID/status`.
    #[error("cannot read VmRSS of process {pid} from /proc/{pid}/status")]
    Rss {
        /// The process id given.
        pid: u32,
        /// Why reading failed.
        #[source]
        source: io::Error,
    },
    /// A worker thread or its runtime could not start.
    #[error("cannot start a worker thread")]
    Runtime(#[source] io::Error),
    /// A worker thread panicked.
    #[error("a worker thread panicked")]
    WorkerPanicked,
    /// The fan-out publisher could not connect to the hub or join the room.
    #[error("the fan-out publisher failed")]
    Publisher(#[source] ConnectionError),
}

/// Why one connection failed. Counted, and the first one is quoted in the
/// report; the run carries on with the other connections.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The socket failed (refused, reset, ...).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The connection or the opening handshake took longer than the timeout.
    #[error("timed out")]
    Timeout,
    /// The server's answer to the upgrade request was not a valid 101 (RFC 6455 §4.1).
    #[error("opening handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The server broke RFC 6455.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The server closed the TCP connection without a close handshake.
    #[error("the server closed the connection without a Close frame")]
    Eof,
    /// The server sent a Close frame the run did not ask for.
    #[error("the server closed with code {}", code.map_or_else(|| "none".to_owned(), |c| c.to_string()))]
    ClosedByServer {
        /// Its close code, if it sent one.
        code: Option<u16>,
    },
    /// The server answered our Close with a different code.
    #[error("the server answered Close 1000 with {}", code.map_or_else(|| "no code".to_owned(), |c| c.to_string()))]
    UncleanClose {
        /// Its close code, if it sent one.
        code: Option<u16>,
    },
    /// A message larger than the run expects (fan-out messages are small).
    #[error("a {size}-byte message is larger than expected")]
    MessageTooBig {
        /// Bytes received so far of the message.
        size: u64,
    },
    /// The hub answered with a protocol error (docs/protocol.md).
    #[error("the hub answered with error {code:?}")]
    Hub {
        /// The hub's error code, e.g. `not_joined`.
        code: String,
    },
    /// The hub sent something that is not its JSON protocol.
    #[error("the hub sent a message that is not its JSON protocol")]
    BadHubMessage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_stay_small() {
        assert!(std::mem::size_of::<ConnectionError>() <= 40);
    }
}
