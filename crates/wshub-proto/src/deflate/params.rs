//! Negotiating permessage-deflate in the opening handshake (RFC 7692 §5, §7.1).
//!
//! The client sends an offer ([`offer`]); the server picks the first offer it
//! can accept and answers with the parameters in force ([`negotiate`]); the
//! client checks that answer against its offer ([`validate_response`]). Both
//! ends then hold the same [`DeflateAgreement`] and give it to
//! [`Config::deflate`](crate::Config::deflate).

use std::fmt::Write as _;

use crate::handshake::{parse_extensions, DeflateResponseError, Extension, HandshakeError};
use crate::role::Role;

/// The extension token (RFC 7692 §7).
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// Smallest LZ77 window, as a base-2 logarithm (RFC 7692 §7.1.2: 8–15).
pub const MIN_WINDOW_BITS: u8 = 8;
/// Largest LZ77 window, as a base-2 logarithm: 32 KiB.
pub const MAX_WINDOW_BITS: u8 = 15;
/// The smallest zlib memory level (zlib's `memLevel`, a local setting that
/// RFC 7692 does not negotiate; see [`DeflateConfig::mem_level`]).
pub const MIN_MEM_LEVEL: u8 = 1;
/// The largest zlib memory level (see [`MIN_MEM_LEVEL`]).
pub const MAX_MEM_LEVEL: u8 = 9;
/// zlib's default memory level, [`DeflateConfig::mem_level`]'s default.
pub const DEFAULT_MEM_LEVEL: u8 = 8;

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// This endpoint's permessage-deflate settings, for either role.
///
/// The four RFC 7692 §7.1 parameters say what this end asks for (a client's
/// offer) or accepts at most (a server's answer); `level` and `threshold` are
/// local and never sent. Start from [`DeflateConfig::server`] or
/// [`DeflateConfig::client`]; [`Default`] is [`DeflateConfig::server`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Server: always answer with `server_no_context_takeover`, so the server
    /// keeps no compression state between messages (about 0 bytes per idle
    /// connection) and can compress a fan-out message once for every
    /// recipient ([`PreparedMessage`](crate::PreparedMessage)). A client's
    /// request for it is granted either way.
    /// Client: request it in the offer; a response without it is then refused
    /// (RFC 7692 §7.1.1.1).
    /// Default: `true` for [`DeflateConfig::server`], `false` for
    /// [`DeflateConfig::client`].
    pub server_no_context_takeover: bool,
    /// Server: answer with `client_no_context_takeover`, so the server frees
    /// its inflater after each message (RFC 7692 §7.1.1.2).
    /// Client: declare it in the offer; the client then resets its deflater
    /// after each message whatever the server answers.
    /// Default: `true` for [`DeflateConfig::server`], `false` for
    /// [`DeflateConfig::client`].
    pub client_no_context_takeover: bool,
    /// Base-2 logarithm of the largest LZ77 window the server compresses
    /// with, 8–15 (RFC 7692 §7.1.2.1). Server: the window it uses; a client
    /// that offers a smaller `server_max_window_bits` gets 9 bits (8 if it
    /// offered 8), so every client of a server gets one of at most three
    /// windows (see [`negotiate`]). Client: below 15, offered as
    /// `server_max_window_bits`, which bounds the inflater's window
    /// (`2^bits` bytes). Default: 15.
    pub server_max_window_bits: u8,
    /// Base-2 logarithm of the largest LZ77 window the client compresses
    /// with, 8–15 (RFC 7692 §7.1.2.2). Server: below 15, answered as
    /// `client_max_window_bits` when the client offered that parameter (a
    /// client that did not may use 15, and is accepted anyway). Client: the
    /// offer always carries `client_max_window_bits`, with this value when it
    /// is below 15. Default: 15.
    pub client_max_window_bits: u8,
    /// zlib compression level for what this end sends: 0 (stored blocks,
    /// no compression) to 9 (smallest, slowest). Default: 2. Measured on
    /// 16 KiB of JSON-like text (`benches/proto.rs`, group `deflate`):
    /// level 2 compresses about twice as fast as 6 for output about 15%
    /// larger; level 1 is twice as fast again but its output is 70% larger
    /// than 6's (zlib-rs's level 1 uses fixed Huffman codes).
    pub level: u32,
    /// zlib memory level for what this end sends, 1–9: the size of the
    /// compressor's symbol buffers, `7 × 2^(mem_level + 6)` bytes in zlib-rs
    /// (112 KiB at 8, 896 B at 1; its hash table is a fixed 128 KiB
    /// whatever this is). A compression state holds
    /// `2^(window_bits + 2) + 7 × 2^(mem_level + 6) + 134,400` bytes: 371 KiB
    /// at 15 bits and level 8, 260 KiB at 15 and 1. It matters for a
    /// connection that keeps its compression context (context takeover);
    /// without takeover the state lives only while a message is compressed.
    /// Lower levels end DEFLATE blocks more often, so output grows a little.
    /// Default: 8, zlib's own.
    pub mem_level: u8,
    /// Bytes. Messages shorter than this are sent uncompressed (RSV1 clear):
    /// deflate's per-message cost outweighs the saving on small payloads.
    /// Default: 1024.
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self::server()
    }
}

impl DeflateConfig {
    /// A server's settings: both `*_no_context_takeover` (no deflate state
    /// kept between messages, compress-once fan-out), windows of 15 bits,
    /// level 2, threshold 1024 bytes.
    pub fn server() -> Self {
        Self {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            level: 2,
            mem_level: DEFAULT_MEM_LEVEL,
            threshold: 1024,
        }
    }

    /// A client's settings: offers `permessage-deflate; client_max_window_bits`
    /// (no value, no takeover restriction), level 2, threshold 1024 bytes.
    pub fn client() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            ..Self::server()
        }
    }

    /// Sets [`DeflateConfig::server_no_context_takeover`].
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Sets [`DeflateConfig::client_no_context_takeover`].
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// Sets [`DeflateConfig::server_max_window_bits`] (8–15).
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits;
        self
    }

    /// Sets [`DeflateConfig::client_max_window_bits`] (8–15).
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits;
        self
    }

    /// Sets [`DeflateConfig::level`] (0–9).
    pub fn level(mut self, level: u32) -> Self {
        self.level = level;
        self
    }

    /// Sets [`DeflateConfig::mem_level`] (1–9).
    pub fn mem_level(mut self, mem_level: u8) -> Self {
        self.mem_level = mem_level;
        self
    }

    /// Sets [`DeflateConfig::threshold`] (bytes).
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Checks every value is in range.
    ///
    /// # Errors
    /// - [`DeflateConfigError::WindowBitsOutOfRange`] if a `*_max_window_bits`
    ///   is outside 8–15 (RFC 7692 §7.1.2).
    /// - [`DeflateConfigError::LevelOutOfRange`] if `level` is above 9.
    /// - [`DeflateConfigError::MemLevelOutOfRange`] if `mem_level` is outside 1–9.
    pub fn validate(&self) -> Result<(), DeflateConfigError> {
        for (parameter, bits) in [
            (SERVER_MAX_WINDOW_BITS, self.server_max_window_bits),
            (CLIENT_MAX_WINDOW_BITS, self.client_max_window_bits),
        ] {
            if !(MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&bits) {
                return Err(DeflateConfigError::WindowBitsOutOfRange { parameter, bits });
            }
        }
        if self.level > 9 {
            return Err(DeflateConfigError::LevelOutOfRange { level: self.level });
        }
        if !(MIN_MEM_LEVEL..=MAX_MEM_LEVEL).contains(&self.mem_level) {
            return Err(DeflateConfigError::MemLevelOutOfRange {
                mem_level: self.mem_level,
            });
        }
        Ok(())
    }

    fn clamped_bits(bits: u8) -> u8 {
        bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
    }
}

/// A [`DeflateConfig`] value out of range, named so the caller can say
/// what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeflateConfigError {
    /// A window size outside 8–15 (RFC 7692 §7.1.2).
    #[error("{parameter} is {bits}; it must be from 8 to 15")]
    WindowBitsOutOfRange {
        /// `server_max_window_bits` or `client_max_window_bits`.
        parameter: &'static str,
        /// The value given.
        bits: u8,
    },
    /// A compression level above 9.
    #[error("deflate level is {level}; it must be from 0 to 9")]
    LevelOutOfRange {
        /// The value given.
        level: u32,
    },
    /// A memory level outside 1–9.
    #[error("deflate memory level is {mem_level}; it must be from 1 to 9")]
    MemLevelOutOfRange {
        /// The value given.
        mem_level: u8,
    },
}

/// The settings of one direction of a negotiated permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeflateDirection {
    /// The sender resets its LZ77 window after each message, so the receiver
    /// need not keep one between messages (RFC 7692 §7.1.1).
    pub no_context_takeover: bool,
    /// Base-2 logarithm of the LZ77 window the sender uses at most, 8–15
    /// (RFC 7692 §7.1.2).
    pub max_window_bits: u8,
}

/// A negotiated permessage-deflate: the RFC 7692 §7.1 parameters both ends
/// agreed on, plus this end's local `level` and `threshold`. Give it to
/// [`Config::deflate`](crate::Config::deflate).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DeflateAgreement {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window is at most `2^server_max_window_bits` bytes (8–15).
    pub server_max_window_bits: u8,
    /// The client's LZ77 window is at most `2^client_max_window_bits` bytes (8–15).
    pub client_max_window_bits: u8,
    /// Local compression level, 0–9 (see [`DeflateConfig::level`]).
    pub level: u32,
    /// Local memory level, 1–9 (see [`DeflateConfig::mem_level`]).
    pub mem_level: u8,
    /// Local threshold in bytes (see [`DeflateConfig::threshold`]).
    pub threshold: usize,
}

impl DeflateAgreement {
    /// What the `role` end sends: a server's outbound uses the `server_*`
    /// parameters, a client's the `client_*` ones.
    pub fn outbound(&self, role: Role) -> DeflateDirection {
        match role {
            Role::Server => self.server_direction(),
            Role::Client => self.client_direction(),
        }
    }

    /// What the `role` end receives: the peer's outbound.
    pub fn inbound(&self, role: Role) -> DeflateDirection {
        match role {
            Role::Server => self.client_direction(),
            Role::Client => self.server_direction(),
        }
    }

    fn server_direction(&self) -> DeflateDirection {
        DeflateDirection {
            no_context_takeover: self.server_no_context_takeover,
            max_window_bits: DeflateConfig::clamped_bits(self.server_max_window_bits),
        }
    }

    fn client_direction(&self) -> DeflateDirection {
        DeflateDirection {
            no_context_takeover: self.client_no_context_takeover,
            max_window_bits: DeflateConfig::clamped_bits(self.client_max_window_bits),
        }
    }

    /// The `Sec-WebSocket-Extensions` value a server answers with for this
    /// agreement (RFC 7692 §7.1): every parameter that differs from the
    /// RFC's default.
    pub fn response_header(&self) -> String {
        let mut out = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < MAX_WINDOW_BITS {
            let _ = write!(
                out,
                "; server_max_window_bits={}",
                self.server_max_window_bits
            );
        }
        if self.client_max_window_bits < MAX_WINDOW_BITS {
            let _ = write!(
                out,
                "; client_max_window_bits={}",
                self.client_max_window_bits
            );
        }
        out
    }
}

/// The parameters of one `permessage-deflate` element, checked against the
/// grammar of RFC 7692 §7.1 but not yet against the other side's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: the parameter without a value (an offer saying "I can
    /// limit my window").
    client_max_window_bits: Option<Option<u8>>,
}

impl Params {
    /// Parses one element's parameters; `value_optional_for_client_bits` is
    /// true for offers (RFC 7692 §7.1.2.2: "this parameter has no value or
    /// a decimal integer value") and false for responses, which must give one.
    fn parse(ext: &Extension, is_offer: bool) -> Result<Self, DeflateResponseError> {
        let mut params = Self::default();
        let mut seen = [false; 4];
        for (name, value) in &ext.params {
            let index = match name.as_str() {
                SERVER_NO_CONTEXT_TAKEOVER => 0,
                CLIENT_NO_CONTEXT_TAKEOVER => 1,
                SERVER_MAX_WINDOW_BITS => 2,
                CLIENT_MAX_WINDOW_BITS => 3,
                _ => return Err(DeflateResponseError::UnknownParameter { name: name.clone() }),
            };
            // "A server MUST decline an extension negotiation offer [...]
            // if [it] includes multiple extension parameters with the same
            // name" (RFC 7692 §7); the client fails the connection alike.
            if std::mem::replace(&mut seen[index], true) {
                return Err(DeflateResponseError::DuplicateParameter { name: name.clone() });
            }
            let invalid = || DeflateResponseError::InvalidValue { name: name.clone() };
            match index {
                0 | 1 => {
                    // "This extension parameter has no value" (§7.1.1.1, §7.1.1.2).
                    if value.is_some() {
                        return Err(invalid());
                    }
                    if index == 0 {
                        params.server_no_context_takeover = true;
                    } else {
                        params.client_no_context_takeover = true;
                    }
                }
                2 => {
                    let bits = value.as_deref().and_then(window_bits).ok_or_else(invalid)?;
                    params.server_max_window_bits = Some(bits);
                }
                _ => {
                    let bits = match value.as_deref() {
                        None if is_offer => None,
                        None => return Err(invalid()),
                        Some(v) => Some(window_bits(v).ok_or_else(invalid)?),
                    };
                    params.client_max_window_bits = Some(bits);
                }
            }
        }
        Ok(params)
    }

    fn to_header(self) -> String {
        let mut out = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            let _ = write!(out, "; server_max_window_bits={bits}");
        }
        match self.client_max_window_bits {
            Some(Some(bits)) => {
                let _ = write!(out, "; client_max_window_bits={bits}");
            }
            Some(None) => out.push_str("; client_max_window_bits"),
            None => {}
        }
        out
    }
}

/// A window-bits value: "a decimal integer value without leading zeros
/// between 8 to 15, inclusive" (RFC 7692 §7.1.2.1). A quoted-string value
/// arrives here already unquoted (§7.1: "the value [...] after unquoting").
fn window_bits(value: &str) -> Option<u8> {
    match value.as_bytes() {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// Compared exactly, as [`crate::handshake::validate_response`] compares
/// extension names, so both ends' checks agree.
fn is_deflate(ext: &Extension) -> bool {
    ext.name == EXTENSION_NAME
}

/// The client's offer (RFC 7692 §7.1) as a `Sec-WebSocket-Extensions`
/// value: `permessage-deflate; client_max_window_bits` by default, plus
/// `server_no_context_takeover`, `client_no_context_takeover`,
/// `server_max_window_bits=N` and a value on `client_max_window_bits` as
/// `config` asks. Values out of range are clamped to 8–15 (see
/// [`DeflateConfig::validate`]).
pub fn offer(config: &DeflateConfig) -> String {
    client_offer_params(config).to_header()
}

fn client_offer_params(config: &DeflateConfig) -> Params {
    let server_bits = DeflateConfig::clamped_bits(config.server_max_window_bits);
    let client_bits = DeflateConfig::clamped_bits(config.client_max_window_bits);
    Params {
        server_no_context_takeover: config.server_no_context_takeover,
        client_no_context_takeover: config.client_no_context_takeover,
        server_max_window_bits: (server_bits < MAX_WINDOW_BITS).then_some(server_bits),
        client_max_window_bits: Some((client_bits < MAX_WINDOW_BITS).then_some(client_bits)),
    }
}

/// Server: picks the first acceptable `permessage-deflate` offer among the
/// request's `Sec-WebSocket-Extensions` header values (RFC 7692 §5, §7.1).
///
/// `request_values` are every `Sec-WebSocket-Extensions` line of the
/// request, in order (one joined, comma-separated string works too). Returns
/// the agreement and the value to answer with in the response's
/// `Sec-WebSocket-Extensions` header, or `None` to answer without the
/// extension: no offer, a header that breaks the grammar of RFC 6455 §9.1, or
/// every offer declined. An offer with an unknown or repeated parameter, a
/// value where none is allowed, or a window size that is not 8–15 is
/// declined, and the next one is tried (RFC 7692 §7: the server "MUST
/// decline" it). Other extensions are ignored.
///
/// What the answer holds, for an offer `o` and `config` `c`:
/// - `server_no_context_takeover` if `o` or `c` has it;
/// - `client_no_context_takeover` if `o` or `c` has it (a server MAY include
///   it even if not offered, §7.1.1.2);
/// - `server_max_window_bits`: `c` if `o` allows it (no parameter, or a
///   value of at least `c`); else 9, or 8 if `o` is 8. A server answers
///   "with the same or smaller value as the offer" (§7.1.2.1), so it may
///   use less than `o`; rounding down to {`c`, 9, 8} bounds the forms a
///   [`PreparedMessage`](crate::PreparedMessage) is compressed in, whatever
///   windows the clients ask for. Sent when `o` had the parameter or the
///   value is below 15;
/// - `client_max_window_bits = min(o, c)` only if `o` had the parameter
///   (with or without a value), sent when below 15 or when `o` gave a value
///   (§7.1.2.2). A client that did not offer it uses up to 15.
///
/// `server_max_window_bits=8` is accepted: the [module docs](crate::deflate)
/// say how an 8-bit window is honoured. Values
/// of `config` out of range are clamped (check them first with
/// [`DeflateConfig::validate`]).
pub fn negotiate<'a>(
    request_values: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Option<(DeflateAgreement, String)> {
    let offers = parse_extensions(request_values).ok()?;
    negotiate_offers(&offers, config)
}

/// [`negotiate`] on extensions already parsed, such as
/// [`UpgradeRequest::extensions`](crate::handshake::UpgradeRequest::extensions).
pub fn negotiate_offers(
    offers: &[Extension],
    config: &DeflateConfig,
) -> Option<(DeflateAgreement, String)> {
    let offer = offers
        .iter()
        .filter(|e| is_deflate(e))
        .find_map(|e| Params::parse(e, true).ok())?;
    let server_limit = DeflateConfig::clamped_bits(config.server_max_window_bits);
    let client_limit = DeflateConfig::clamped_bits(config.client_max_window_bits);
    let server_bits = server_window_bits(offer.server_max_window_bits, server_limit);
    let client_bits = match offer.client_max_window_bits {
        Some(offered) => offered.unwrap_or(MAX_WINDOW_BITS).min(client_limit),
        None => MAX_WINDOW_BITS,
    };
    let agreement = DeflateAgreement {
        server_no_context_takeover: offer.server_no_context_takeover
            || config.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        level: config.level.min(9),
        mem_level: config.mem_level.clamp(MIN_MEM_LEVEL, MAX_MEM_LEVEL),
        threshold: config.threshold,
    };
    let response = Params {
        server_no_context_takeover: agreement.server_no_context_takeover,
        client_no_context_takeover: agreement.client_no_context_takeover,
        server_max_window_bits: (offer.server_max_window_bits.is_some()
            || server_bits < MAX_WINDOW_BITS)
            .then_some(server_bits),
        client_max_window_bits: offer
            .client_max_window_bits
            .filter(|offered| offered.is_some() || client_bits < MAX_WINDOW_BITS)
            .map(|_| Some(client_bits)),
    };
    Some((agreement, response.to_header()))
}

/// Below the server's own window, the one it uses when the client asks for
/// less: small enough for every offer but 8.
const SMALL_SERVER_WINDOW_BITS: u8 = 9;

/// The server's window for an offered `server_max_window_bits` and its own
/// `limit` (both 8–15): `limit` when the offer allows it, else 9, or 8 when
/// the offer is 8. One of at most three values per `limit`, so a prepared
/// message is compressed at most three ways for one server (RFC 7692
/// §7.1.2.1: the answer has "the same or smaller value as the offer").
fn server_window_bits(offered: Option<u8>, limit: u8) -> u8 {
    match offered {
        Some(offered) if offered < limit => {
            if offered >= SMALL_SERVER_WINDOW_BITS {
                SMALL_SERVER_WINDOW_BITS
            } else {
                MIN_WINDOW_BITS
            }
        }
        _ => limit,
    }
}

/// Checks a response element against one offer (RFC 7692 §7.1).
fn check_response(offer: &Params, response: &Params) -> Result<(), DeflateResponseError> {
    if offer.server_no_context_takeover && !response.server_no_context_takeover {
        return Err(DeflateResponseError::MissingParameter {
            name: SERVER_NO_CONTEXT_TAKEOVER.into(),
        });
    }
    match (
        offer.server_max_window_bits,
        response.server_max_window_bits,
    ) {
        // "the same or smaller value as the offer" (§7.1.2.1).
        (Some(_), None) => {
            return Err(DeflateResponseError::MissingParameter {
                name: SERVER_MAX_WINDOW_BITS.into(),
            })
        }
        (Some(offered), Some(answered)) if answered > offered => {
            return Err(DeflateResponseError::NotOffered {
                name: SERVER_MAX_WINDOW_BITS.into(),
            })
        }
        _ => {}
    }
    match (
        offer.client_max_window_bits,
        response.client_max_window_bits,
    ) {
        // "If a received extension negotiation offer doesn't have the
        // client_max_window_bits extension parameter, the corresponding
        // extension negotiation response to the offer MUST NOT include [it]"
        // (§7.1.2.2).
        (None, Some(_)) => Err(DeflateResponseError::NotOffered {
            name: CLIENT_MAX_WINDOW_BITS.into(),
        }),
        (Some(Some(offered)), Some(Some(answered))) if answered > offered => {
            Err(DeflateResponseError::NotOffered {
                name: CLIENT_MAX_WINDOW_BITS.into(),
            })
        }
        _ => Ok(()),
    }
}

/// The single `permessage-deflate` element of a response, parsed; `Ok(None)`
/// if there is none.
fn response_params(response: &[Extension]) -> Result<Option<Params>, DeflateResponseError> {
    let mut elements = response.iter().filter(|e| is_deflate(e));
    let Some(element) = elements.next() else {
        return Ok(None);
    };
    if elements.next().is_some() {
        return Err(DeflateResponseError::DuplicateExtension);
    }
    Params::parse(element, false).map(Some)
}

/// Client: checks the server's `Sec-WebSocket-Extensions` answer to
/// [`offer`]`(config)` (RFC 7692 §5, §7.1) and returns the agreement in
/// force, or `None` if the server did not accept the extension.
///
/// `response_values` are every `Sec-WebSocket-Extensions` line of the
/// response, in order. The client then compresses with the window and
/// context the server allowed; if it offered `client_no_context_takeover`
/// it drops its context after each message whatever the answer.
///
/// # Errors
/// The client "MUST _Fail the WebSocket Connection_" (RFC 7692 §5) on:
/// - [`HandshakeError::InvalidExtensions`]: the header breaks the grammar;
/// - [`HandshakeError::UnexpectedExtension`]: an extension other than
///   `permessage-deflate`, which was never offered;
/// - [`HandshakeError::InvalidDeflateResponse`]: two `permessage-deflate`
///   elements, an unknown, repeated or malformed parameter, or one that does
///   not fit the offer (see [`DeflateResponseError`]).
pub fn validate_response<'a>(
    response_values: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Result<Option<DeflateAgreement>, HandshakeError> {
    let response = parse_extensions(response_values)?;
    if let Some(other) = response.iter().find(|e| !is_deflate(e)) {
        return Err(HandshakeError::UnexpectedExtension {
            name: other.name.clone(),
        });
    }
    let invalid = |error| HandshakeError::InvalidDeflateResponse { error };
    let Some(answer) = response_params(&response).map_err(invalid)? else {
        return Ok(None);
    };
    let offer = client_offer_params(config);
    check_response(&offer, &answer).map_err(invalid)?;
    let offered_client_bits = offer
        .client_max_window_bits
        .flatten()
        .unwrap_or(MAX_WINDOW_BITS);
    Ok(Some(DeflateAgreement {
        server_no_context_takeover: answer.server_no_context_takeover,
        client_no_context_takeover: answer.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: answer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
        client_max_window_bits: answer
            .client_max_window_bits
            .flatten()
            .unwrap_or(MAX_WINDOW_BITS)
            .min(offered_client_bits),
        level: config.level.min(9),
        mem_level: config.mem_level.clamp(MIN_MEM_LEVEL, MAX_MEM_LEVEL),
        threshold: config.threshold,
    }))
}

/// For [`crate::handshake::validate_response`]: checks the response's
/// `permessage-deflate` element, if any, against the request's own offers.
/// The answer must fit at least one offer; otherwise the error is the one
/// against the first offer.
pub(crate) fn check_response_to_request(
    offers: &[Extension],
    response: &[Extension],
) -> Result<(), DeflateResponseError> {
    let Some(answer) = response_params(response)? else {
        return Ok(());
    };
    let mut first_error = None;
    for offer in offers.iter().filter(|e| is_deflate(e)) {
        let Ok(offer) = Params::parse(offer, true) else {
            continue;
        };
        match check_response(&offer, &answer) {
            Ok(()) => return Ok(()),
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    match first_error {
        Some(err) => Err(err),
        // The name check before this one refuses an unoffered extension.
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod section_7_1_2_1_server_max_window_bits {
        use super::*;

        /// The server's window for a client offering `offered` (`None`: no
        /// `server_max_window_bits`), checked by the client as it would be.
        fn server_window(offered: Option<u8>, limit: u8) -> u8 {
            let client = DeflateConfig::client().server_max_window_bits(offered.unwrap_or(15));
            let mut header = offer(&client);
            if offered == Some(15) {
                // `offer` leaves out the default value; say it explicitly.
                header.push_str("; server_max_window_bits=15");
            }
            let server = DeflateConfig::server().server_max_window_bits(limit);
            let (agreement, answer) = negotiate([header.as_str()], &server).unwrap();
            let checked = validate_response([answer.as_str()], &client)
                .unwrap_or_else(|e| panic!("{answer:?} refused for {header:?}: {e}"))
                .unwrap();
            assert_eq!(
                checked.server_max_window_bits,
                agreement.server_max_window_bits
            );
            agreement.server_max_window_bits
        }

        #[test]
        fn the_answer_is_the_same_or_smaller_value_as_the_offer() {
            for limit in MIN_WINDOW_BITS..=MAX_WINDOW_BITS {
                for offered in MIN_WINDOW_BITS..=MAX_WINDOW_BITS {
                    let bits = server_window(Some(offered), limit);
                    assert!(
                        bits <= offered && bits <= limit,
                        "{offered}/{limit}: {bits}"
                    );
                }
                assert_eq!(server_window(None, limit), limit);
            }
        }

        #[test]
        fn a_server_uses_at_most_three_windows_whatever_the_offers() {
            for limit in MIN_WINDOW_BITS..=MAX_WINDOW_BITS {
                let mut used: Vec<u8> = (MIN_WINDOW_BITS..=MAX_WINDOW_BITS)
                    .map(Some)
                    .chain([None])
                    .map(|offered| server_window(offered, limit))
                    .collect();
                used.sort_unstable();
                used.dedup();
                let mut allowed = vec![MIN_WINDOW_BITS, SMALL_SERVER_WINDOW_BITS, limit];
                allowed.retain(|&b| b <= limit);
                allowed.dedup();
                assert_eq!(used, allowed, "limit {limit}");
            }
        }

        #[test]
        fn an_offer_of_its_own_window_or_more_gets_the_servers_window() {
            assert_eq!(server_window(Some(12), 12), 12);
            assert_eq!(server_window(Some(15), 12), 12);
            assert_eq!(server_window(Some(14), 15), 9);
            assert_eq!(server_window(Some(10), 12), 9);
            assert_eq!(server_window(Some(9), 15), 9);
            assert_eq!(server_window(Some(8), 15), 8);
        }
    }

    #[test]
    fn window_bits_are_8_to_15_without_leading_zeros() {
        for bits in 8..=15u8 {
            assert_eq!(window_bits(&bits.to_string()), Some(bits));
        }
        for bad in [
            "7", "16", "08", "010", "", "1", "x", "+9", "9 ", "15.0", "-8",
        ] {
            assert_eq!(window_bits(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn agreement_directions_follow_the_role() {
        let agreement = DeflateAgreement {
            server_no_context_takeover: true,
            client_no_context_takeover: false,
            server_max_window_bits: 10,
            client_max_window_bits: 12,
            level: 1,
            mem_level: 8,
            threshold: 0,
        };
        let server = DeflateDirection {
            no_context_takeover: true,
            max_window_bits: 10,
        };
        let client = DeflateDirection {
            no_context_takeover: false,
            max_window_bits: 12,
        };
        assert_eq!(agreement.outbound(Role::Server), server);
        assert_eq!(agreement.inbound(Role::Client), server);
        assert_eq!(agreement.outbound(Role::Client), client);
        assert_eq!(agreement.inbound(Role::Server), client);
    }

    #[test]
    fn the_default_client_offer_is_what_browsers_send() {
        assert_eq!(
            offer(&DeflateConfig::client()),
            "permessage-deflate; client_max_window_bits"
        );
        let all = DeflateConfig::client()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true)
            .server_max_window_bits(10)
            .client_max_window_bits(9);
        assert_eq!(
            offer(&all),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9"
        );
    }

    #[test]
    fn the_default_is_the_server_config() {
        assert_eq!(DeflateConfig::default(), DeflateConfig::server());
        assert_eq!(DeflateConfig::client().level, DeflateConfig::server().level);
    }

    #[test]
    fn validate_names_the_value_to_fix() {
        assert_eq!(DeflateConfig::server().validate(), Ok(()));
        assert_eq!(
            DeflateConfig::server().client_max_window_bits(7).validate(),
            Err(DeflateConfigError::WindowBitsOutOfRange {
                parameter: "client_max_window_bits",
                bits: 7
            })
        );
        assert_eq!(
            DeflateConfig::server()
                .server_max_window_bits(16)
                .validate(),
            Err(DeflateConfigError::WindowBitsOutOfRange {
                parameter: "server_max_window_bits",
                bits: 16
            })
        );
        assert_eq!(
            DeflateConfig::server().level(10).validate(),
            Err(DeflateConfigError::LevelOutOfRange { level: 10 })
        );
        for mem_level in [0, 10] {
            assert_eq!(
                DeflateConfig::server().mem_level(mem_level).validate(),
                Err(DeflateConfigError::MemLevelOutOfRange { mem_level })
            );
        }
        for mem_level in 1..=9 {
            assert_eq!(
                DeflateConfig::server().mem_level(mem_level).validate(),
                Ok(())
            );
        }
    }
}
