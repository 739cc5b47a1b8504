//! The server side of the opening handshake (RFC 6455 §4.2), and the plain
//! HTTP answers a WebSocket server gives on the same port.
//!
//! Every connection takes one path: [`read_handshake`] reads the request
//! head within [`WebSocketConfig::handshake_timeout`]; the caller routes on
//! [`Handshake::request`] and either answers plain HTTP with
//! [`Handshake::respond`] or goes on with [`Handshake::into_upgrade`], which
//! checks RFC 6455 §4.2.1; the [`Upgrade`] is then accepted (`101`) or
//! refused. Each answer that ends the connection is written by the one
//! writer, [`http_response`], and
//! followed by a linger (see [`Handshake::respond`]). [`accept_with`] and
//! [`accept`] are this path with one route.
//!
//! ```no_run
//! use wshub::server::{read_handshake, Response};
//! use wshub::{Accept, WebSocketConfig};
//!
//! # async fn run(tcp: tokio::net::TcpStream) -> Result<(), wshub::Error> {
//! let config = WebSocketConfig::default();
//! let handshake = read_handshake(tcp, &config).await?;
//! if handshake.request().path() != "/ws" {
//!     return handshake.respond(&Response::text(404, "not found\n")).await;
//! }
//! let ws = handshake.into_upgrade().await?.accept(Accept::default(), config).await?;
//! # drop(ws); Ok(()) }
//! ```

use std::borrow::Cow;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
#[cfg(feature = "deflate")]
use wshub_proto::deflate::negotiate_offers;
use wshub_proto::handshake::{accept_response, http_response, HeadReader};
use wshub_proto::Role;

pub use wshub_proto::handshake::{
    validate_request, HandshakeError, OriginPatternError, OriginPolicy, OriginRefused, Request,
    UpgradeRequest, DEFAULT_MAX_HEAD_LEN,
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

/// A refusal from [`accept_with`]'s callback: the HTTP status and a short
/// plain-text body. It is answered as [`Response::text`] with a newline added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// HTTP status, e.g. 403 or 404.
    pub status: u16,
    /// Plain-text body explaining why, one line.
    pub body: String,
    /// Extra headers, e.g. `WWW-Authenticate` with a 401 or `Retry-After`
    /// with a 503.
    pub headers: Vec<(String, String)>,
}

impl Reject {
    /// A refusal with `status` and `body`.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header to the refusal (`WWW-Authenticate`, `Retry-After`).
    /// A name that is not an HTTP token or a value holding CR, LF or NUL
    /// cannot be written: the connection is then closed unanswered.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
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
///   [`HandshakeError::TooManyHeaders`] or [`HandshakeError::MalformedHttp`].
/// - [`Error::Io`] if the transport fails or closes before the head ends.
pub(crate) async fn read_request<S: AsyncRead + Unpin>(
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
pub(crate) async fn read_request_within<S: AsyncRead + Unpin>(
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

/// A plain HTTP answer (anything but `101`), sent with `Connection: close`.
///
/// The body is [`Bytes`], so a page embedded with `include_str!` is sent
/// without a copy into the response value: `Bytes::from_static(PAGE.as_bytes())`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status, e.g. 200, 404 or 426. A 426 also gets `Upgrade: websocket`
    /// and `Sec-WebSocket-Version: 13` (RFC 6455 §4.4).
    pub status: u16,
    /// Extra headers, e.g. `Cache-Control`; `Content-Type`, `Content-Length`
    /// and `Connection` are written from the other fields.
    pub headers: Vec<(String, String)>,
    /// `Content-Type`, e.g. `text/html; charset=utf-8`.
    pub content_type: Cow<'static, str>,
    /// The body, sent as is.
    pub body: Bytes,
}

impl Response {
    /// A response with `status`, `content_type` and `body`, and no extra header.
    pub fn new(
        status: u16,
        content_type: impl Into<Cow<'static, str>>,
        body: impl Into<Bytes>,
    ) -> Self {
        Self {
            status,
            headers: Vec::new(),
            content_type: content_type.into(),
            body: body.into(),
        }
    }

    /// A `text/plain; charset=utf-8` response; end `body` with a newline, as
    /// a terminal client prints it.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body)
    }

    /// Adds the header `name: value`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds the headers that keep a browser from doing more with this
    /// answer than showing it: `Content-Security-Policy: csp`,
    /// `X-Frame-Options: DENY` (for browsers without `frame-ancestors`),
    /// `X-Content-Type-Options: nosniff` and `Cache-Control: no-store`.
    /// The library's own answers (400, 408, 426, 431) carry them with
    /// [`Response::TEXT_CSP`].
    pub fn secured(self, csp: &str) -> Self {
        self.header("Cache-Control", "no-store")
            .header("X-Content-Type-Options", "nosniff")
            .header("Content-Security-Policy", csp)
            .header("X-Frame-Options", "DENY")
    }

    /// The `Content-Security-Policy` of an answer that is only text: nothing
    /// to load, no framing.
    pub const TEXT_CSP: &'static str = "default-src 'none'; frame-ancestors 'none'";

    /// A [`Response::text`] answer of the library's own (and a [`Reject`]'s),
    /// [`secured`](Self::secured).
    fn refusal(status: u16, body: impl Into<Bytes>) -> Self {
        Self::text(status, body).secured(Self::TEXT_CSP)
    }
}

/// `403 Forbidden`, as a browser's cross-site handshake is answered:
///
/// ```
/// use wshub::server::{Accept, OriginPolicy, UpgradeRequest};
/// use wshub::Reject;
///
/// let policy = OriginPolicy::default().allow("https://app.example.com").unwrap();
/// let decide = move |request: &UpgradeRequest| -> Result<Accept, Reject> {
///     policy.check_request(&request.request)?;
///     Ok(Accept::default())
/// };
/// # let _ = decide;
/// ```
impl From<OriginRefused> for Reject {
    fn from(refused: OriginRefused) -> Self {
        Self::new(403, refused.to_string())
    }
}

impl From<Reject> for Response {
    fn from(reject: Reject) -> Self {
        let mut body = reject.body;
        body.push('\n');
        let mut response = Self::refusal(reject.status, body);
        response.headers.extend(reject.headers);
        response
    }
}

/// The body of the 426 answered to a plain HTTP request on a WebSocket route.
pub(crate) const NOT_AN_UPGRADE: &str =
    "this is a WebSocket endpoint: connect with a WebSocket client (ws://)\n";

/// After an answer that ends the connection, the longest wait for the client
/// to close its side: 1 s.
const LINGER_TIME: Duration = Duration::from_secs(1);

/// After an answer that ends the connection, the most bytes read and
/// discarded from the client: 64 KiB.
const LINGER_BYTES: usize = 64 * 1024;

/// An opening handshake under way: the client's request head has been read,
/// nothing has been answered yet. Route on [`Handshake::request`], then
/// [`respond`](Handshake::respond) or [`into_upgrade`](Handshake::into_upgrade).
#[derive(Debug)]
pub struct Handshake<S> {
    io: S,
    request: Request,
    /// Bytes the client sent after the head: frames, if it did not wait for
    /// the `101`.
    early: Vec<u8>,
}

/// A request that passed every check of RFC 6455 §4.2.1 and is not yet
/// answered: [`accept`](Upgrade::accept) it or [`respond`](Upgrade::respond)
/// with a refusal. [`map_io`](Upgrade::map_io) wraps the transport first.
#[derive(Debug)]
pub struct Upgrade<S> {
    io: S,
    request: UpgradeRequest,
    early: Vec<u8>,
}

/// Reads one request head from `io` within [`WebSocketConfig::handshake_timeout`]
/// (at most [`DEFAULT_MAX_HEAD_LEN`] bytes), for the caller to route.
///
/// A request that cannot be served is answered here, then the connection
/// lingers (see [`Handshake::respond`]) and the error is returned.
///
/// # Errors
/// - [`Error::Handshake`] with [`HandshakeError::HeadTooLarge`] (answered
///   431), [`HandshakeError::TooManyHeaders`] (431) or
///   [`HandshakeError::MalformedHttp`] (400).
/// - [`Error::HandshakeTimeout`] when the head did not arrive in time
///   (answered 408).
/// - [`Error::Io`] if the transport fails or closes before the head ends
///   (nothing answered).
pub async fn read_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    config: &WebSocketConfig,
) -> Result<Handshake<S>, Error> {
    let read = read_request_within(&mut io, DEFAULT_MAX_HEAD_LEN, config.handshake_timeout);
    match read.await {
        Ok((request, early)) => Ok(Handshake { io, request, early }),
        Err(Error::Handshake(e)) => {
            let answer = Response::refusal(e.status(), format!("{e}\n"));
            let _ = answer_and_close(&mut io, &answer).await;
            Err(Error::Handshake(e))
        }
        Err(Error::HandshakeTimeout) => {
            let answer = Response::refusal(408, "request head not received in time\n");
            let _ = answer_and_close(&mut io, &answer).await;
            Err(Error::HandshakeTimeout)
        }
        Err(e) => Err(e),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Handshake<S> {
    /// The request: method, target, headers.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Answers with `response` and ends the connection.
    ///
    /// After writing, our side is shut down and what the client still sends
    /// is read and discarded, for at most 1 s or 64 KiB, until it closes:
    /// closing a socket with unread bytes sends a TCP reset, which can
    /// destroy the answer before the client has read it.
    ///
    /// # Errors
    /// [`Error::Io`] if the transport fails; [`Error::Handshake`] if a header
    /// holds CR, LF or NUL (nothing is sent then).
    pub async fn respond(mut self, response: &Response) -> Result<(), Error> {
        answer_and_close(&mut self.io, response).await
    }

    /// Reads the request's body for a plain HTTP route (a `POST` to an API,
    /// say): exactly `Content-Length` bytes (RFC 9112 §6.3), of which some
    /// may have come with the head. A request with `Expect: 100-continue`
    /// (curl sends it for bodies over 1 KiB) is answered `100 Continue`
    /// first. The connection is still to be answered with
    /// [`Handshake::respond`] afterwards.
    ///
    /// `limit` is the largest body taken, in bytes; `timeout` bounds the
    /// whole read.
    ///
    /// # Errors
    /// A [`BodyError`], whose [`BodyError::status`] is the answer to give
    /// (nothing has been answered yet).
    pub async fn read_body(&mut self, limit: usize, timeout: Duration) -> Result<Bytes, BodyError> {
        if self.request.header("transfer-encoding").is_some() {
            return Err(BodyError::LengthRequired);
        }
        let len = match self.request.header("content-length") {
            None => return Err(BodyError::LengthRequired),
            Some(value) => value
                .trim()
                .parse::<u64>()
                .map_err(|_| BodyError::BadLength)?,
        };
        if len > limit as u64 {
            return Err(BodyError::TooLarge { limit });
        }
        let len = len as usize;
        let mut body = std::mem::take(&mut self.early);
        if body.len() > len {
            // Bytes past the body (a pipelined request) are not read.
            body.truncate(len);
        }
        if body.len() == len {
            return Ok(Bytes::from(body));
        }
        let expects_continue = self
            .request
            .header("expect")
            .is_some_and(|e| e.trim().eq_ignore_ascii_case("100-continue"));
        let io = &mut self.io;
        let read = async {
            if expects_continue {
                io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
                io.flush().await?;
            }
            body.reserve_exact(len - body.len());
            let mut chunk = vec![0u8; (len - body.len()).min(16 << 10)];
            while body.len() < len {
                let want = (len - body.len()).min(chunk.len());
                let n = io.read(&mut chunk[..want]).await?;
                if n == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                }
                body.extend_from_slice(&chunk[..n]);
            }
            Ok(body)
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(Ok(body)) => Ok(Bytes::from(body)),
            Ok(Err(e)) => Err(BodyError::Io(e)),
            Err(_) => Err(BodyError::Timeout),
        }
    }

    /// Checks the request against RFC 6455 §4.2.1.
    ///
    /// # Errors
    /// [`Error::Handshake`] with the first rule broken (see
    /// [`validate_request`]); it was answered with [`HandshakeError::status`]
    /// (426 with a one-line explanation for a plain HTTP request) and the
    /// connection lingered, as after [`Handshake::respond`].
    pub async fn into_upgrade(self) -> Result<Upgrade<S>, Error> {
        let Self {
            mut io,
            request,
            early,
        } = self;
        match validate_request(request) {
            Ok(request) => Ok(Upgrade { io, request, early }),
            Err(e) => {
                let body = match e {
                    HandshakeError::NotUpgrade => NOT_AN_UPGRADE.to_owned(),
                    ref other => format!("{other}\n"),
                };
                let _ = answer_and_close(&mut io, &Response::refusal(e.status(), body)).await;
                Err(Error::Handshake(e))
            }
        }
    }
}

impl<S> Upgrade<S> {
    /// The validated request: path, `Origin`, subprotocols, extensions.
    pub fn request(&self) -> &UpgradeRequest {
        &self.request
    }

    /// The same upgrade over `f(io)`: e.g. `map_io(TcpTransport::new)`, so
    /// the WebSocket runs on a wrapper of the stream the request came on.
    pub fn map_io<T>(self, f: impl FnOnce(S) -> T) -> Upgrade<T> {
        Upgrade {
            io: f(self.io),
            request: self.request,
            early: self.early,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Upgrade<S> {
    /// Answers `101 Switching Protocols` and returns the open WebSocket.
    ///
    /// With [`WebSocketConfig::compression`] set, the first acceptable
    /// permessage-deflate offer is accepted (RFC 7692 §5); an offer that is
    /// not acceptable is declined and the connection opens uncompressed.
    ///
    /// # Errors
    /// [`Error::Io`] if the transport fails; [`Error::Handshake`] if an
    /// [`Accept`] header holds CR, LF or NUL.
    pub async fn accept(
        self,
        accept: Accept,
        config: WebSocketConfig,
    ) -> Result<WebSocket<S>, Error> {
        upgrade(self.io, &self.request, &self.early, accept, config).await
    }

    /// Refuses the upgrade with `response` (e.g. 403 for an `Origin` not
    /// allowed) and ends the connection, lingering as [`Handshake::respond`].
    ///
    /// # Errors
    /// As [`Handshake::respond`].
    pub async fn respond(mut self, response: &Response) -> Result<(), Error> {
        answer_and_close(&mut self.io, response).await
    }
}

/// Why [`Handshake::read_body`] could not read a request's body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// No `Content-Length`, or a `Transfer-Encoding` (chunked bodies are
    /// not read): 411.
    #[error("a body needs Content-Length (chunked bodies are not read)")]
    LengthRequired,
    /// `Content-Length` is not a whole number: 400.
    #[error("Content-Length is not a whole number")]
    BadLength,
    /// `Content-Length` is over the limit: 413. Nothing of it was read.
    #[error("the body is over {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body did not arrive within the timeout: 408.
    #[error("the body was not received in time")]
    Timeout,
    /// The transport failed or closed before the body ended: nothing can be
    /// answered.
    #[error("reading the body: {0}")]
    Io(#[source] std::io::Error),
}

impl BodyError {
    /// The HTTP status to answer with, `None` for [`BodyError::Io`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::LengthRequired => Some(411),
            Self::BadLength => Some(400),
            Self::TooLarge { .. } => Some(413),
            Self::Timeout => Some(408),
            Self::Io(_) => None,
        }
    }
}

/// Writes `response`, shuts our side down, and lingers: see [`Handshake::respond`].
async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    response: &Response,
) -> Result<(), Error> {
    let wire = http_response(
        response.status,
        &response.headers,
        &response.content_type,
        &response.body,
    )?;
    io.write_all(&wire).await?;
    io.flush().await?;
    drop(wire);
    let _ = io.shutdown().await;
    // On the heap, like `read_head`'s buffer: only a connection being turned
    // away pays for it, and it is not part of the accept future's size.
    let mut sink = vec![0u8; 4096];
    let mut budget = LINGER_BYTES;
    let drain = async {
        while budget > 0 {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
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
pub(crate) async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    request: &UpgradeRequest,
    early: &[u8],
    accept: Accept,
    config: WebSocketConfig,
) -> Result<WebSocket<S>, Error> {
    let agreed = Agreed::new(request, accept, config);
    let response = accept_response(
        request,
        agreed.info.protocol.as_deref(),
        agreed.info.extensions.as_deref(),
        &agreed.headers,
    )?;
    io.write_all(&response).await?;
    io.flush().await?;
    Ok(agreed.open(io, early))
}

/// What a server agreed to for a valid upgrade request: the subprotocol
/// (one the client offered), permessage-deflate (the first acceptable offer,
/// RFC 7692 §5, if [`WebSocketConfig::compression`] is set), and the extra
/// headers: the one negotiation behind [`Upgrade::accept`] and the hyper
/// upgrade.
#[derive(Debug)]
pub(crate) struct Agreed {
    /// [`Accept::headers`].
    pub(crate) headers: Vec<(String, String)>,
    /// The settings, with the deflate agreement in.
    config: WebSocketConfig,
    /// The subprotocol and extension headers chosen, and the URL.
    pub(crate) info: HandshakeInfo,
}

impl Agreed {
    pub(crate) fn new(
        request: &UpgradeRequest,
        accept: Accept,
        #[allow(unused_mut)] mut config: WebSocketConfig,
    ) -> Self {
        let protocol = accept
            .protocol
            .filter(|p| request.protocols.iter().any(|offered| offered == p));
        #[allow(unused_mut)]
        let mut info = HandshakeInfo {
            protocol: protocol.map(String::into_boxed_str),
            extensions: None,
            url: request.request.target.as_str().into(),
        };
        #[cfg(feature = "deflate")]
        if let Some((agreement, header)) = config
            .compression
            .as_ref()
            .and_then(|settings| negotiate_offers(&request.extensions, settings))
        {
            config.protocol = std::mem::take(&mut config.protocol).deflate(Some(agreement));
            info.extensions = Some(header.into_boxed_str());
        }
        Self {
            headers: accept.headers,
            config,
            info,
        }
    }

    /// The WebSocket over `io`, once the `101` has been sent; `early` holds
    /// bytes the client sent after its request head.
    pub(crate) fn open<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        io: S,
        early: &[u8],
    ) -> WebSocket<S> {
        WebSocket::from_parts(io, Role::Server, self.config, self.info, early)
    }
}

/// Reads a handshake from `io`, lets `decide` inspect it (path, headers,
/// `Origin`, subprotocols) and accept or refuse it, and answers: the path of
/// [`read_handshake`] with one route.
///
/// # Errors
/// - [`Error::Handshake`] when the request is not HTTP or breaks RFC 6455
///   §4.2.1; it was answered with [`HandshakeError::status`] (426 with
///   `Sec-WebSocket-Version: 13` for a plain HTTP request or another version).
/// - [`Error::Rejected`] when `decide` refused; it was answered with its status.
/// - [`Error::HandshakeTimeout`] when the request head did not arrive within
///   [`WebSocketConfig::handshake_timeout`]; it was answered 408.
/// - [`Error::Io`] if the transport fails.
///
/// Every refusal is followed by the linger of [`Handshake::respond`].
pub async fn accept_with<S, F>(
    io: S,
    config: WebSocketConfig,
    decide: F,
) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&UpgradeRequest) -> Result<Accept, Reject>,
{
    let upgrade = read_handshake(io, &config).await?.into_upgrade().await?;
    match decide(upgrade.request()) {
        Ok(accept) => upgrade.accept(accept, config).await,
        Err(reject) => {
            let status = reject.status;
            let _ = upgrade.respond(&Response::from(reject)).await;
            Err(Error::Rejected { status })
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
