//! permessage-deflate (RFC 7692): negotiation and the per-message codec.
//!
//! The opening handshake settles the parameters ([`params`], §7.1); the
//! [`Connection`](crate::Connection) then compresses what it sends and
//! inflates what it receives (§7.2) once given the [`DeflateAgreement`]
//! through [`Config::deflate`](crate::Config::deflate).
//!
//! Window bits 8: zlib cannot compress raw DEFLATE with a 256-byte window,
//! so when limited to 8 bits we compress with 9 and end a block with a full
//! flush every 256 bytes of input, which keeps every back-reference within
//! 256 bytes (RFC 7692 §7.1.2 is honoured; the output is about 2% larger).
//! Inflating 8-bit data needs nothing special.
//!
//! ```
//! use wshub_proto::deflate::{self, DeflateConfig};
//! use wshub_proto::{Config, Connection, Role};
//!
//! // Client: offer, then check the server's answer.
//! let client_config = DeflateConfig::client();
//! let offer = deflate::offer(&client_config);
//! assert_eq!(offer, "permessage-deflate; client_max_window_bits");
//!
//! // Server: accept the first acceptable offer.
//! let (server_side, answer) = deflate::negotiate([offer.as_str()], &DeflateConfig::server()).unwrap();
//! assert_eq!(answer, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
//!
//! let client_side = deflate::validate_response([answer.as_str()], &client_config).unwrap().unwrap();
//! let mut server = Connection::new(Role::Server, Config::default().deflate(Some(server_side)));
//! let mut client = Connection::new(Role::Client, Config::default().deflate(Some(client_side)));
//!
//! let text = "a compressible line of text. ".repeat(100);
//! client.send_text(&text).unwrap();
//! let wire = client.take_outgoing();
//! assert!(wire.len() < 200);
//! server.receive(&wire).unwrap();
//! assert_eq!(server.next_event(), Some(wshub_proto::Event::Message(wshub_proto::Message::text(text))));
//! ```

pub(crate) mod codec;
pub(crate) mod compressor;
pub mod params;

pub use params::{
    negotiate, negotiate_offers, offer, validate_response, DeflateAgreement, DeflateConfig,
    DeflateConfigError, DeflateDirection, DEFAULT_MEM_LEVEL, EXTENSION_NAME, MAX_MEM_LEVEL,
    MAX_WINDOW_BITS, MIN_MEM_LEVEL, MIN_WINDOW_BITS,
};
