//! [`HandshakeError`]: the ways an opening handshake fails, each with the
//! HTTP status a server answers it with (RFC 6455 §4.2.1, §4.4).

/// Ways an opening handshake can fail (RFC 6455 §4).
///
/// On the server, [`HandshakeError::status`] is the HTTP status to answer with
/// and [`http_response`](super::http_response) builds the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The HTTP head outgrew the limit before its blank line (431).
    #[error("HTTP head is over {limit} bytes")]
    HeadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// More header lines than [`MAX_HEADERS`](super::MAX_HEADERS) (431).
    #[error("more than {limit} header lines")]
    TooManyHeaders {
        /// The limit.
        limit: usize,
    },
    /// The head is not valid HTTP/1.x (400).
    #[error("malformed HTTP head")]
    MalformedHttp,
    /// "The method of the request MUST be GET" (§4.1) (405).
    #[error("method {method} is not GET")]
    MethodNotGet {
        /// The request's method.
        method: String,
    },
    /// "The HTTP version MUST be at least 1.1" (§4.1) (505).
    #[error("HTTP version is below 1.1")]
    HttpVersion,
    /// The request has no `Host` header (§4.1) (400).
    #[error("missing Host header")]
    MissingHost,
    /// No `Upgrade: websocket`: a plain HTTP request to a WebSocket endpoint (426).
    #[error("not a WebSocket upgrade request")]
    NotUpgrade,
    /// `Upgrade: websocket` without `Connection: upgrade` (§4.1) (400).
    #[error("Connection header does not contain \"upgrade\"")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Version` is missing or not 13 (§4.4) (426, with
    /// `Sec-WebSocket-Version: 13`).
    #[error("unsupported Sec-WebSocket-Version (this server speaks 13)")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` is missing or not 16 bytes in base64 (§4.1) (400).
    #[error("Sec-WebSocket-Key is missing or is not 16 bytes in base64")]
    InvalidKey,
    /// `Sec-WebSocket-Extensions` does not follow the grammar of §9.1 (400).
    #[error("malformed Sec-WebSocket-Extensions header")]
    InvalidExtensions,
    /// A header name that is not an HTTP token, or a value with CR, LF or NUL.
    #[error("invalid header {name:?}: names are HTTP tokens, values have no CR, LF or NUL")]
    InvalidHeader {
        /// The header's name.
        name: String,
    },
    /// Client: the server answered with another status than 101 (§4.1).
    #[error("server answered HTTP {status} instead of 101")]
    UnexpectedStatus {
        /// The status code.
        status: u16,
    },
    /// Client: the 101 response lacks `Upgrade: websocket` or
    /// `Connection: upgrade` (§4.1).
    #[error("response is missing Upgrade: websocket or Connection: upgrade")]
    ResponseNotUpgrade,
    /// Client: `Sec-WebSocket-Accept` is missing or wrong (§4.1).
    #[error("Sec-WebSocket-Accept does not match the key")]
    InvalidAccept,
    /// Client: the server chose a subprotocol the client did not offer (§4.1).
    #[error("server chose subprotocol {protocol:?}, which was not offered")]
    UnexpectedProtocol {
        /// The subprotocol the server chose.
        protocol: String,
    },
    /// Client: the server answered with an extension the client did not offer (§4.1).
    #[error("server chose extension {name:?}, which was not offered")]
    UnexpectedExtension {
        /// The extension's name.
        name: String,
    },
    /// Client: the server's `permessage-deflate` response breaks RFC 7692
    /// §7.1 or does not fit what was offered. "If the response does not
    /// conform to the requirements [...] the client MUST _Fail the WebSocket
    /// Connection_" (RFC 7692 §5); an async layer reports it as a handshake
    /// failure, or closes with 1010 (`MandatoryExtension`) if it already
    /// switched protocols.
    #[error("invalid permessage-deflate response")]
    InvalidDeflateResponse {
        /// What is wrong with it.
        #[source]
        error: DeflateResponseError,
    },
}

/// Why a client refuses a server's `permessage-deflate` response
/// (RFC 7692 §5, §7.1). Parameter names are the RFC's, as received.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeflateResponseError {
    /// More than one `permessage-deflate` element in the response: a server
    /// accepts at most one offer (RFC 7692 §5).
    #[error("more than one permessage-deflate element")]
    DuplicateExtension,
    /// A parameter RFC 7692 §7.1 does not define.
    #[error("unknown parameter {name:?}")]
    UnknownParameter {
        /// The parameter's name.
        name: String,
    },
    /// A parameter given twice (RFC 7692 §7: "MUST NOT ... more than one").
    #[error("parameter {name:?} appears more than once")]
    DuplicateParameter {
        /// The parameter's name.
        name: String,
    },
    /// A value where none is allowed (`*_no_context_takeover`), no value where
    /// one is required, or a window size that is not a decimal integer from 8
    /// to 15 without leading zeros (RFC 7692 §7.1.2).
    #[error("invalid value for parameter {name:?}")]
    InvalidValue {
        /// The parameter's name.
        name: String,
    },
    /// A parameter the offer did not allow in the response:
    /// `client_max_window_bits` when the offer did not carry it (RFC 7692
    /// §7.1.2.2), or a `*_max_window_bits` above the value offered.
    #[error("parameter {name:?} does not fit the offer")]
    NotOffered {
        /// The parameter's name.
        name: String,
    },
    /// A parameter the offer asked for and the response lacks:
    /// `server_no_context_takeover` (RFC 7692 §7.1.1.1) or
    /// `server_max_window_bits` (§7.1.2.1).
    #[error("parameter {name:?} was requested but is missing")]
    MissingParameter {
        /// The parameter's name.
        name: String,
    },
}

impl HandshakeError {
    /// The HTTP status a server answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            Self::HeadTooLarge { .. } | Self::TooManyHeaders { .. } => 431,
            Self::MethodNotGet { .. } => 405,
            Self::HttpVersion => 505,
            Self::NotUpgrade | Self::UnsupportedVersion => 426,
            Self::MalformedHttp
            | Self::MissingHost
            | Self::MissingConnectionUpgrade
            | Self::InvalidKey
            | Self::InvalidExtensions
            | Self::InvalidHeader { .. }
            | Self::UnexpectedStatus { .. }
            | Self::ResponseNotUpgrade
            | Self::InvalidAccept
            | Self::UnexpectedProtocol { .. }
            | Self::UnexpectedExtension { .. }
            | Self::InvalidDeflateResponse { .. } => 400,
        }
    }
}
