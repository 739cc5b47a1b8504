//! An axum extractor in the shape of `axum::extract::ws` (feature `axum`):
//! moving a handler to wshub is a change of the `use` line, and it then
//! can have what axum's lacks — permessage-deflate (RFC 7692), keepalive
//! Pings, a bounded write buffer ([`WebSocketConfig`]).
//!
//! ```no_run
//! use axum::response::Response;
//! use axum::routing::get;
//! use wshub::axum::{WebSocket, WebSocketUpgrade};
//!
//! async fn handler(ws: WebSocketUpgrade) -> Response {
//!     ws.protocols(["chat"]).on_upgrade(echo)
//! }
//!
//! async fn echo(mut socket: WebSocket) {
//!     while let Some(Ok(message)) = socket.recv().await {
//!         if socket.send(message).await.is_err() {
//!             return;
//!         }
//!     }
//! }
//!
//! # async fn run() {
//! let app = axum::Router::new().route("/ws", get(handler));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```
//!
//! What differs from `axum::extract::ws`: [`Message`] has only `Text` and
//! `Binary`. Pings are answered, and the close handshake (RFC 6455 §5.5.1)
//! completed, by the connection itself; `recv` ends (`None`) when the
//! connection has closed, and [`WebSocket::close_event`] holds the code and
//! reason; close with a code by [`WebSocket::close`]. Settings go through
//! [`WebSocketUpgrade::config`] ([`WebSocketConfig`]: message and frame
//! limits, compression, keepalive) rather than one method each. An
//! [`OriginPolicy`] can refuse cross-site requests (CWE-1385) with 403.

use std::borrow::Cow;
use std::future::Future;

use axum_core::body::Body;
use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::server::{HandshakeError, UpgradeRequest, NOT_AN_UPGRADE};
use crate::upgrade::{request_head, HttpUpgrade};
use crate::{Accept, Error, OriginPolicy, WebSocketConfig};

pub use crate::{CloseCode, CloseEvent, Message, Utf8Bytes};

/// The WebSocket handed to [`WebSocketUpgrade::on_upgrade`]'s callback.
pub type WebSocket = crate::upgrade::UpgradedWebSocket;

/// Extractor of a WebSocket upgrade request (RFC 6455 §4.2.1), to be
/// answered with [`WebSocketUpgrade::on_upgrade`]. A request that is not a
/// valid upgrade is refused by the extractor with
/// [`WebSocketUpgradeRejection`].
#[derive(Debug)]
pub struct WebSocketUpgrade {
    upgrade: HttpUpgrade,
    config: WebSocketConfig,
    protocol: Option<String>,
    headers: Vec<(String, String)>,
    origin: Option<OriginPolicy>,
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let head = request_head(&parts.method, &parts.uri, parts.version, &parts.headers);
        let upgrade = HttpUpgrade::from_head(head, &mut parts.extensions)
            .map_err(WebSocketUpgradeRejection)?;
        Ok(Self {
            upgrade,
            config: WebSocketConfig::default(),
            protocol: None,
            headers: Vec::new(),
            origin: None,
        })
    }
}

impl WebSocketUpgrade {
    /// The validated request: path, `Origin`, the subprotocols and
    /// extensions offered.
    pub fn request(&self) -> &UpgradeRequest {
        self.upgrade.request()
    }

    /// Selects the first of `protocols` (in this order: the server's
    /// preference) that the client offered in `Sec-WebSocket-Protocol`;
    /// none if it offered none of them.
    pub fn protocols<I>(mut self, protocols: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Cow<'static, str>>,
    {
        let offered = &self.upgrade.request().protocols;
        self.protocol = protocols
            .into_iter()
            .map(Into::into)
            .find(|p| offered.iter().any(|o| o == p.as_ref()))
            .map(Cow::into_owned);
        self
    }

    /// The subprotocol [`WebSocketUpgrade::protocols`] selected.
    pub fn selected_protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The connection's settings. Default: [`WebSocketConfig::default`],
    /// in which permessage-deflate is off; set
    /// [`WebSocketConfig::compression`] to accept a client's offer of it.
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.config = config;
        self
    }

    /// An extra header of the `101` answer, e.g. `Set-Cookie`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Refuses, with 403, a request whose `Origin` `policy` does not allow
    /// (cross-site WebSocket hijacking, CWE-1385); requests without
    /// `Origin` (not from a browser) pass. Checked in
    /// [`WebSocketUpgrade::on_upgrade`].
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.origin = Some(policy);
        self
    }

    /// The `101` answer (or the refusal) to return from the handler;
    /// `callback` then runs on its own task with the open WebSocket. If
    /// the connection ends before the upgrade completes, `callback` does
    /// not run (logged at `debug`).
    pub fn on_upgrade<C, Fut>(self, callback: C) -> Response
    where
        C: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if let Some(policy) = &self.origin {
            if let Err(refused) = policy.check_request(&self.upgrade.request().request) {
                return (StatusCode::FORBIDDEN, format!("{refused}\n")).into_response();
            }
        }
        let accept = Accept {
            protocol: self.protocol,
            headers: self.headers,
        };
        match self.upgrade.accept::<Body>(accept, self.config) {
            Ok((response, websocket)) => {
                tokio::spawn(async move {
                    match websocket.await {
                        Ok(ws) => callback(ws).await,
                        Err(e) => tracing::debug!(error = %e, "WebSocket upgrade did not complete"),
                    }
                });
                response
            }
            Err(e) => WebSocketUpgradeRejection(e).into_response(),
        }
    }
}

/// Why a request could not be upgraded: answered with the status of the
/// rule it broke (RFC 6455 §4.2.1: 400, 405, 426 with `Upgrade: websocket`
/// and `Sec-WebSocket-Version: 13`, …), or 500 when the server cannot
/// upgrade at all ([`Error::NotUpgradable`]).
#[derive(Debug)]
pub struct WebSocketUpgradeRejection(pub Error);

impl WebSocketUpgradeRejection {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        let status = match &self.0 {
            Error::Handshake(e) => e.status(),
            _ => 500,
        };
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for WebSocketUpgradeRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Error::Handshake(HandshakeError::NotUpgrade) => f.write_str(NOT_AN_UPGRADE.trim_end()),
            Error::Handshake(e) => write!(f, "{e}"),
            e => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for WebSocketUpgradeRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, format!("{self}\n")).into_response();
        if status == StatusCode::UPGRADE_REQUIRED {
            let headers = response.headers_mut();
            headers.insert(
                http::header::UPGRADE,
                http::HeaderValue::from_static("websocket"),
            );
            headers.insert(
                http::header::SEC_WEBSOCKET_VERSION,
                http::HeaderValue::from_static("13"),
            );
        }
        response
    }
}
