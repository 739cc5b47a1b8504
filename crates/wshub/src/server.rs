//! The server side of the opening handshake (RFC 6455 §4.2).

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wshub_proto::deflate::negotiate_offers;
use wshub_proto::handshake::{accept_response, reject_response, HeadReader};
use wshub_proto::Role;

pub use wshub_proto::handshake::{
    validate_request, HandshakeError, Request, UpgradeRequest, DEFAULT_MAX_HEAD_LEN,
};

use crate::websocket::HandshakeInfo;
use crate::{Error, WebSocket, WebSocketConfig};

/// What to answer an acceptable upgrade request with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accept {
    /// The subprotocol to select; must be one of
    /// [`UpgradeRequest::protocols`]. `None` selects none.
    pub protocol: Option<String>,
    /// Extra response headers, e.g. `Set-Cookie`.
    pub headers: Vec<(String, String)>,
}

/// A refusal: the HTTP status and a short plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// HTTP status, e.g. 403 or 404.
    pub status: u16,
    /// Plain-text body explaining why, one line.
    pub body: String,
}

impl Reject {
    /// A refusal with `status` and `body`.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
        }
    }
}

/// Reads one HTTP request head (at most `max_head_len` bytes) from `io`.
///
/// Returns the request and any bytes the client sent after the head. Bound
/// the wait with `tokio::time::timeout`: a client that never finishes its head
/// otherwise holds the connection.
///
/// # Errors
/// - [`Error::Handshake`] with [`HandshakeError::HeadTooLarge`],
///   [`HandshakeError::TooManyHeaders`] or [`HandshakeError::MalformedHttp`];
///   answer it with [`write_rejection`].
/// - [`Error::Io`] if the transport fails or closes before the head ends.
pub async fn read_request<S: AsyncRead + Unpin>(
    io: &mut S,
    max_head_len: usize,
) -> Result<(Request, Vec<u8>), Error> {
    let reader = read_head(io, max_head_len).await?;
    let head = reader.head().expect("read_head returns a complete head");
    Ok((Request::parse(head)?, reader.remainder().to_vec()))
}

/// [`read_request`], given at most `timeout` to complete.
///
/// The timer is armed only if the head is not complete at the first poll:
/// a timer costs a registration in the runtime's timer wheel and, on a busy
/// current-thread runtime, often a wake-up of its I/O driver (an eventfd
/// write). For a tokio `TcpStream` just accepted the first poll is nearly
/// always pending (tokio learns the socket is readable only from epoll), so
/// the timer is skipped mostly for transports that already hold the bytes;
/// measured under `--runtime current-thread`, the eventfd writes fell from
/// 0.89 to 0.44 per handshake.
///
/// # Errors
/// As [`read_request`], and [`Error::HandshakeTimeout`] when the head did
/// not arrive in time.
pub async fn read_request_within<S: AsyncRead + Unpin>(
    io: &mut S,
    max_head_len: usize,
    timeout: Duration,
) -> Result<(Request, Vec<u8>), Error> {
    let mut read = std::pin::pin!(read_request(io, max_head_len));
    if let Poll::Ready(result) =
        std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await
    {
        return result;
    }
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(Error::HandshakeTimeout))
}

/// Reads from `io` until a whole HTTP head (at most `max_head_len` bytes) has
/// arrived; the reader also holds any bytes after it.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(
    io: &mut S,
    max_head_len: usize,
) -> Result<HeadReader, Error> {
    let mut reader = HeadReader::new(max_head_len);
    // On the heap and dropped after the handshake: a stack array here would
    // live inside the connection's future, and so for its whole life.
    let mut buf = vec![0u8; 2048];
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if reader.push(&buf[..n])? {
            return Ok(reader);
        }
    }
}

/// Writes a non-101 answer (see [`reject_response`]) and flushes it.
///
/// # Errors
/// [`Error::Io`] if the transport fails; [`Error::Handshake`] if a header
/// holds CR, LF or NUL.
pub async fn write_rejection<S: AsyncWrite + Unpin>(
    io: &mut S,
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<(), Error> {
    let response = reject_response(status, headers, body)?;
    io.write_all(&response).await?;
    io.flush().await?;
    Ok(())
}

/// Answers a validated request with `101 Switching Protocols` and returns
/// the open WebSocket. `early` is what [`read_request`] returned after the head.
///
/// With [`WebSocketConfig::compression`] set, the first acceptable
/// permessage-deflate offer is accepted (RFC 7692 §5); an offer that is not
/// acceptable is declined and the connection opens uncompressed.
///
/// # Errors
/// [`Error::Io`] if the transport fails; [`Error::Handshake`] if an
/// [`Accept`] header holds CR, LF or NUL.
pub async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    request: &UpgradeRequest,
    early: &[u8],
    accept: Accept,
    config: WebSocketConfig,
) -> Result<WebSocket<S>, Error> {
    let protocol = accept
        .protocol
        .filter(|p| request.protocols.iter().any(|offered| offered == p));
    let mut config = config;
    let deflate = config
        .compression
        .as_ref()
        .and_then(|settings| negotiate_offers(&request.extensions, settings));
    let extensions = deflate.as_ref().map(|(_, header)| header.as_str());
    let response = accept_response(request, protocol.as_deref(), extensions, &accept.headers)?;
    io.write_all(&response).await?;
    io.flush().await?;
    let mut info = HandshakeInfo {
        protocol: protocol.map(String::into_boxed_str),
        extensions: None,
        url: request.request.target.as_str().into(),
    };
    if let Some((agreement, header)) = deflate {
        config.protocol = std::mem::take(&mut config.protocol).deflate(Some(agreement));
        info.extensions = Some(header.into_boxed_str());
    }
    Ok(WebSocket::from_parts(io, Role::Server, config, info, early))
}

/// Reads a handshake from `io`, lets `decide` inspect it (path, headers,
/// `Origin`, subprotocols) and accept or refuse it, and answers.
///
/// # Errors
/// - [`Error::Handshake`] when the request breaks RFC 6455 §4.2.1; it was
///   answered with [`HandshakeError::status`] (426 with
///   `Sec-WebSocket-Version: 13` for a plain HTTP request or another version).
/// - [`Error::Rejected`] when `decide` refused; it was answered with its status.
/// - [`Error::HandshakeTimeout`] when the request head did not arrive within
///   [`WebSocketConfig::handshake_timeout`].
/// - [`Error::Io`] if the transport fails.
pub async fn accept_with<S, F>(
    mut io: S,
    config: WebSocketConfig,
    decide: F,
) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&UpgradeRequest) -> Result<Accept, Reject>,
{
    let read = read_request_within(&mut io, DEFAULT_MAX_HEAD_LEN, config.handshake_timeout);
    let (request, early) = match read.await {
        Ok(ok) => ok,
        Err(Error::Handshake(e)) => {
            let _ = write_rejection(&mut io, e.status(), &[], &format!("{e}\n")).await;
            return Err(Error::Handshake(e));
        }
        Err(e) => return Err(e),
    };
    let upgrade_request = match validate_request(request) {
        Ok(r) => r,
        Err(e) => {
            let body = match e {
                HandshakeError::NotUpgrade => {
                    "this is a WebSocket endpoint: connect with a WebSocket client\n".to_owned()
                }
                ref other => format!("{other}\n"),
            };
            let _ = write_rejection(&mut io, e.status(), &[], &body).await;
            return Err(Error::Handshake(e));
        }
    };
    match decide(&upgrade_request) {
        Ok(accept) => upgrade(io, &upgrade_request, &early, accept, config).await,
        Err(reject) => {
            let _ =
                write_rejection(&mut io, reject.status, &[], &format!("{}\n", reject.body)).await;
            Err(Error::Rejected {
                status: reject.status,
            })
        }
    }
}

/// Accepts any valid WebSocket handshake on `io`, with default settings.
///
/// # Errors
/// As [`accept_with`].
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(io: S) -> Result<WebSocket<S>, Error> {
    accept_with(io, WebSocketConfig::default(), |_| Ok(Accept::default())).await
}
