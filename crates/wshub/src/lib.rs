//! Async WebSocket library on tokio: accept and connect, a [`WebSocket`]
//! that is a `Stream` and a `Sink` of messages, keepalive and reconnect.
//!
//! The protocol itself lives in the sans-IO [`wshub_proto`] crate; this crate
//! moves its bytes over any `AsyncRead + AsyncWrite + Unpin` transport and
//! owns the timers. Over TCP on a multi-threaded runtime, wrapping the stream
//! in a [`TcpTransport`] (`wshub::accept(TcpTransport::new(tcp))`) makes each
//! read and write a direct system call, as `wshub serve` does.
//!
//! [`connect`] speaks `ws://` and, with the `rustls` feature (on by
//! default), `wss://`: rustls with the ring provider, the server verified
//! against the system's roots or the `rustls::ClientConfig` given to
//! [`ClientBuilder::tls_config`]. A server terminates TLS itself with
//! [`tls::server_config`] and a `tokio_rustls::TlsAcceptor` in front of
//! [`read_handshake`], or leaves it to a proxy.
//!
//! On an HTTP server users already run: `wshub::upgrade` (feature
//! `hyper`) answers the handshake from an `http::Request` on a hyper 1
//! service, and `wshub::axum::WebSocketUpgrade` (feature `axum`) is an
//! extractor in the shape of axum's own.
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `deflate` | on | permessage-deflate (RFC 7692): [`WebSocketConfig::compression`] |
//! | `rustls-native-roots` | on | `wss://` and [`tls`], trusting the system's roots |
//! | `rustls-webpki-roots` | | `wss://` and [`tls`], trusting Mozilla's roots compiled in |
//! | `rustls` | (with either above) | `wss://` and [`tls`] with no roots built in: give [`ClientBuilder::tls_config`] |
//! | `hyper` | | `wshub::upgrade` for hyper 1 servers |
//! | `axum` | | `wshub::axum::WebSocketUpgrade` |
//!
//! An echo server and a client talking to it:
//!
//! ```
//! use futures_util::{SinkExt, StreamExt};
//! use wshub::Message;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), wshub::Error> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     let (tcp, _) = listener.accept().await.unwrap();
//!     let mut ws = wshub::accept(tcp).await.unwrap();
//!     while let Some(Ok(message)) = ws.next().await {
//!         ws.send(message).await.unwrap();          // echo
//!     }
//! });
//!
//! let mut ws = wshub::connect(&format!("ws://{addr}/echo")).await?;
//! ws.send(Message::text("hello")).await?;
//! assert_eq!(ws.next().await.unwrap()?, Message::text("hello"));
//! let closed = ws.close(wshub::CloseCode::NormalClosure, "bye").await?;
//! assert!(closed.was_clean);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
// docs.rs (nightly, `--cfg docsrs`) shows which feature each item needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod client;
mod config;
mod error;
mod keepalive;
#[cfg(unix)]
mod park;
pub mod reconnect;
pub mod server;
mod stream;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod tls;
#[cfg(unix)]
mod transport;
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub mod upgrade;
mod websocket;

pub use client::{connect, ClientBuilder, WsUrl};
pub use config::WebSocketConfig;
pub use error::{Error, HttpResponse};
#[cfg(unix)]
pub use park::{Parked, Tended};
/// The TLS library of the `rustls` feature, for building a
/// [`ClientBuilder::tls_config`] or a server's configuration.
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub use rustls;
pub use server::{
    accept, accept_with, read_handshake, Accept, OriginPolicy, OriginRefused, Reject, Response,
};
pub use stream::ClientStream;
/// The tokio adapter of [`rustls`] (`TlsAcceptor`, `TlsConnector`).
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub use tokio_rustls;
#[cfg(unix)]
pub use transport::TcpTransport;
pub use websocket::{
    Incoming, NextOrIdle, ReuniteError, WebSocket, WebSocketReader, WebSocketWriter,
};
// What this crate's public API names from the protocol core, so a dependent
// crate needs no `wshub-proto` dependency to name it.
/// The longest close reason [`WebSocket::close`] sends, in bytes (UTF-8):
/// 123, so code and reason fit a control frame (RFC 6455 §5.5).
pub use wshub_proto::close::MAX_REASON_LEN as MAX_CLOSE_REASON_LEN;
#[cfg(feature = "deflate")]
#[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
pub use wshub_proto::deflate::{DeflateAgreement, DeflateConfig, DeflateConfigError};
pub use wshub_proto::handshake::HandshakeError;
/// The protocol core's frame and message limits, [`WebSocketConfig::protocol`].
pub use wshub_proto::Config as ProtocolConfig;
pub use wshub_proto::{
    CloseCode, CloseEvent, CloseFrame, Message, PreparedMessage, ProtocolError, Role, SendError,
    State, Utf8Bytes,
};
