//! WebSockets on a hyper 1 server (feature `hyper`): the opening handshake
//! of RFC 6455 §4.2 answered from an [`http::Request`], then a
//! [`WebSocket`] over hyper's upgraded connection, with the same checks,
//! subprotocol choice and permessage-deflate negotiation as
//! [`accept_with`](crate::accept_with).
//!
//! The server must be built with upgrades on
//! (`hyper::server::conn::http1::Builder::serve_connection(..).with_upgrades()`;
//! `axum::serve` does this).
//!
//! ```no_run
//! use http_body_util::Empty;
//! use hyper::body::{Bytes, Incoming};
//! use wshub::upgrade::{is_upgrade_request, upgrade};
//! use wshub::{Accept, WebSocketConfig};
//!
//! async fn service(
//!     mut request: http::Request<Incoming>,
//! ) -> Result<http::Response<Empty<Bytes>>, wshub::Error> {
//!     if !is_upgrade_request(&request) {
//!         return Ok(http::Response::builder().status(426).body(Empty::new()).unwrap());
//!     }
//!     let (response, websocket) = upgrade(&mut request, Accept::default(), WebSocketConfig::default())?;
//!     tokio::spawn(async move {
//!         let Ok(mut ws) = websocket.await else { return };
//!         while let Some(Ok(message)) = ws.recv().await {
//!             if ws.send(message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//!     Ok(response)
//! }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::header::{HeaderName, HeaderValue};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use wshub_proto::handshake::accept_headers;

use crate::server::{validate_request, Agreed, HandshakeError, Request, UpgradeRequest};
use crate::{Accept, Error, WebSocket, WebSocketConfig};

/// The WebSocket of an upgrade done through hyper.
pub type UpgradedWebSocket = WebSocket<TokioIo<Upgraded>>;

/// Whether `request` asks for a WebSocket (`Upgrade: websocket`); it may
/// still break another rule of RFC 6455 §4.2.1, which [`upgrade`] checks.
pub fn is_upgrade_request<B>(request: &http::Request<B>) -> bool {
    request
        .headers()
        .get_all(http::header::UPGRADE)
        .iter()
        .any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
            })
        })
}

/// The handshake's view of an HTTP request head: method, target, HTTP
/// version and headers (values that are not UTF-8 kept lossily, as when
/// read from a socket).
pub(crate) fn request_head(
    method: &http::Method,
    uri: &http::Uri,
    version: http::Version,
    headers: &http::HeaderMap,
) -> Request {
    Request {
        method: method.as_str().to_owned(),
        target: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        // HTTP/1.0 is refused (§4.1); so is HTTP/2, whose WebSockets are
        // RFC 8441's extended CONNECT, not an Upgrade.
        minor_version: u8::from(version == http::Version::HTTP_11),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
    }
}

/// A valid upgrade request taken from hyper, not yet answered: inspect it
/// ([`HttpUpgrade::request`]: path, `Origin`, subprotocols), then
/// [`HttpUpgrade::accept`] it, or answer something else and drop it.
#[derive(Debug)]
pub struct HttpUpgrade {
    request: UpgradeRequest,
    on_upgrade: OnUpgrade,
}

impl HttpUpgrade {
    /// Checks `request` against RFC 6455 §4.2.1 and takes hyper's upgrade
    /// handle out of it.
    ///
    /// # Errors
    /// [`Error::Handshake`] with the first rule broken, as
    /// [`validate_request`] orders them (answer with
    /// [`HandshakeError::status`]); [`Error::NotUpgradable`] if the request
    /// carries no upgrade handle.
    pub fn new<B>(request: &mut http::Request<B>) -> Result<Self, Error> {
        let head = request_head(
            request.method(),
            request.uri(),
            request.version(),
            request.headers(),
        );
        Self::from_head(head, request.extensions_mut())
    }

    /// [`HttpUpgrade::new`] from a request's `head` (as [`request_head`]
    /// makes it) and its `extensions`, where hyper keeps the upgrade.
    pub(crate) fn from_head(
        head: Request,
        extensions: &mut http::Extensions,
    ) -> Result<Self, Error> {
        let request = validate_request(head)?;
        let on_upgrade = extensions
            .remove::<OnUpgrade>()
            .ok_or(Error::NotUpgradable)?;
        Ok(Self {
            request,
            on_upgrade,
        })
    }

    /// The validated request: path, `Origin`, subprotocols, extensions.
    pub fn request(&self) -> &UpgradeRequest {
        &self.request
    }

    /// The `101 Switching Protocols` response to return from the service,
    /// and the WebSocket, ready once hyper has sent it. With
    /// [`WebSocketConfig::compression`] set, the first acceptable
    /// permessage-deflate offer is accepted (RFC 7692 §5); `accept`'s
    /// subprotocol is selected only if the client offered it.
    ///
    /// # Errors
    /// [`Error::Handshake`] if an [`Accept`] header is not a valid HTTP
    /// header.
    pub fn accept<B: Default>(
        self,
        accept: Accept,
        config: WebSocketConfig,
    ) -> Result<(http::Response<B>, UpgradeFut), Error> {
        let agreed = Agreed::new(&self.request, accept, config);
        let headers = accept_headers(
            &self.request,
            agreed.info.protocol.as_deref(),
            agreed.info.extensions.as_deref(),
            &agreed.headers,
        )?;
        let mut response = http::Response::new(B::default());
        *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        for (name, value) in headers {
            let invalid = || HandshakeError::InvalidHeader { name: name.clone() };
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
            let value = HeaderValue::from_str(&value).map_err(|_| invalid())?;
            response.headers_mut().append(header, value);
        }
        let future = UpgradeFut {
            on_upgrade: self.on_upgrade,
            agreed: Some(agreed),
        };
        Ok((response, future))
    }
}

/// Checks `request` (RFC 6455 §4.2.1) and accepts it: [`HttpUpgrade::new`]
/// then [`HttpUpgrade::accept`].
///
/// # Errors
/// As [`HttpUpgrade::new`] and [`HttpUpgrade::accept`].
pub fn upgrade<B: Default, R>(
    request: &mut http::Request<R>,
    accept: Accept,
    config: WebSocketConfig,
) -> Result<(http::Response<B>, UpgradeFut), Error> {
    HttpUpgrade::new(request)?.accept(accept, config)
}

/// The WebSocket of an accepted upgrade, ready once hyper has sent the
/// `101` and handed over the connection.
///
/// # Errors
/// [`Error::Io`] if the connection ended before the upgrade completed.
#[derive(Debug)]
#[must_use = "the WebSocket is ready only when this future is awaited"]
pub struct UpgradeFut {
    on_upgrade: OnUpgrade,
    agreed: Option<Agreed>,
}

impl Future for UpgradeFut {
    type Output = Result<UpgradedWebSocket, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let upgraded = ready!(Pin::new(&mut self.on_upgrade).poll(cx))
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let agreed = self
            .agreed
            .take()
            .expect("UpgradeFut polled after completion");
        // hyper's Upgraded gives back whatever it read past the head.
        Poll::Ready(Ok(agreed.open(TokioIo::new(upgraded), &[])))
    }
}
