//! Sans-IO WebSocket protocol core (RFC 6455, RFC 7692).
//!
//! `wshub-proto` takes bytes and hands back events and bytes: no sockets, no
//! async runtime, no clock. It implements the opening handshake (§4), framing
//! and masking (§5), UTF-8 validation of text (§8.1) and the close handshake
//! (§5.5.1, §7), with limits on frame and message size, and, with the default
//! feature `deflate`, permessage-deflate (RFC 7692, module [`deflate`]). The `wshub` crate
//! moves the bytes over tokio; any other I/O model can drive it the same way.
//!
//! The whole I/O loop, with a masked "Hello" from RFC 6455 §5.7 as input:
//!
//! ```
//! use wshub_proto::{Config, Connection, Event, Message, Role};
//!
//! let mut conn = Connection::new(Role::Server, Config::default());
//! let from_socket = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
//! let outcome = conn.receive(&from_socket);      // any split: 1 byte or 1 MiB
//! let mut replies = Vec::new();
//! for event in conn.events() {                   // Message, Ping, Pong, Close, in wire order
//!     if let Event::Message(Message::Text(text)) = event {
//!         replies.push(text);
//!     }
//! }
//! for text in replies {
//!     conn.send_text(text.as_str()).unwrap();    // echo it back
//! }
//! let to_socket = conn.take_outgoing();          // includes auto-Pongs and Close echoes
//! outcome.unwrap();                              // a ProtocolError's Close is already queued
//! assert_eq!(&to_socket[..], [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
//! // When the socket reads 0 bytes: `conn.receive_eof()`; the core decides
//! // whether that ended a close handshake or was abnormal (1006).
//! ```
//!
//! # Where things are
//!
//! | module | what |
//! |---|---|
//! | [`frame`] | the wire format (§5.2): [`FrameHeader`](frame::FrameHeader), masking (§5.3), and the streaming [`Decoder`](frame::Decoder) that makes every §5.1–§5.5 check and the size limits once, for [`Connection`] and any other driver |
//! | `reassembler` | data chunks → messages: fragments (§5.4), UTF-8 (§8.1), inflate (RFC 7692 §7.2.2) |
//! | `outgoing` | the output queue: frames, shared payloads, owed Pongs, the one Close; [`Backlog`] |
//! | [`Connection`] | their composition, the close handshake (§5.5.1, §7) and the end of the transport ([`Connection::receive_eof`], [`Connection::close_expected`], [`CloseEvent`]) |
//! | [`Config`], [`Role`], [`PreparedMessage`] | limits, which end we are, a message encoded once for many connections |
//! | [`close`] | [`CloseCode`], [`CloseFrame`], [`CloseEvent`] (§5.5.1, §7.4) |
//! | [`handshake`] | the opening handshake (§4), and the one HTTP answer writer |
//! | [`deflate`] | permessage-deflate negotiation and codec (RFC 7692) |
#![deny(unsafe_code)]
// docs.rs (nightly, `--cfg docsrs`) shows which feature each item needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod close;
mod config;
mod connection;
#[cfg(feature = "deflate")]
#[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
pub mod deflate;
mod error;
pub mod frame;
pub mod handshake;
mod message;
mod outgoing;
mod prepared;
mod reassembler;
mod role;
mod utf8;

pub use close::{CloseCode, CloseEvent, CloseFrame};
pub use config::Config;
pub use connection::{Connection, Event, State};
pub use error::{ProtocolError, SendError};
pub use message::{Message, Utf8Bytes};
pub use outgoing::{Backlog, SHARED_PAYLOAD_MIN};
pub use prepared::PreparedMessage;
pub use role::Role;
