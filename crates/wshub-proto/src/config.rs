//! [`Config`]: the limits and behaviour of a connection, set once at its start.

#[cfg(feature = "deflate")]
use crate::deflate::DeflateAgreement;
use crate::frame::Limits;

/// Limits and behaviour of a [`Connection`](crate::Connection). Every limit counts bytes of
/// payload, after any extension has decoded it (for permessage-deflate,
/// inflated bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest payload of a single frame, in bytes. A larger frame fails the
    /// connection with 1009 before any of its payload is buffered.
    /// Default: 16 MiB.
    pub max_frame_size: usize,
    /// Largest message, in bytes, summed over its fragments. Checked when each
    /// frame header arrives, before its payload is buffered; exceeding it fails
    /// the connection with 1009. A compressed message (RFC 7692) is counted
    /// after inflation and checked while it inflates, so a deflate bomb fails
    /// as soon as its output passes the limit, having held at most the limit
    /// plus one byte. Default: 64 MiB.
    pub max_message_size: usize,
    /// Most fragments one message may have (1009 beyond). Default: 131,072,
    /// enough for a 4 MiB message in 64-byte fragments (Autobahn case 9.3.1).
    pub max_fragments: usize,
    /// Answer each Ping with a Pong carrying the same payload (§5.5.2).
    /// Default: true.
    pub auto_pong: bool,
    /// The negotiated permessage-deflate, if any (RFC 7692). Default: none.
    #[cfg(feature = "deflate")]
    deflate: Option<DeflateAgreement>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            max_fragments: 128 << 10,
            auto_pong: true,
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }
}

impl Config {
    /// Sets [`Config::max_frame_size`] (bytes).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets [`Config::max_message_size`] (bytes).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`Config::max_fragments`].
    pub fn max_fragments(mut self, count: usize) -> Self {
        self.max_fragments = count;
        self
    }

    /// Sets [`Config::auto_pong`].
    pub fn auto_pong(mut self, on: bool) -> Self {
        self.auto_pong = on;
        self
    }

    /// Turns permessage-deflate on with the parameters negotiated in the
    /// opening handshake (RFC 7692), or off with `None` (the default, which
    /// behaves exactly as a connection without the extension).
    ///
    /// The agreement comes from [`deflate::negotiate`](crate::deflate::negotiate)
    /// on a server, [`deflate::validate_response`](crate::deflate::validate_response)
    /// on a client.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn deflate(mut self, agreement: Option<DeflateAgreement>) -> Self {
        self.deflate = agreement;
        self
    }

    /// The permessage-deflate agreement in force, if any.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn deflate_agreement(&self) -> Option<&DeflateAgreement> {
        self.deflate.as_ref()
    }

    /// The limits a frame [`Decoder`](crate::frame::Decoder) checks.
    pub fn limits(&self) -> Limits {
        Limits {
            max_frame_size: self.max_frame_size as u64,
            max_message_size: self.max_message_size as u64,
            max_fragments: self.max_fragments,
        }
    }
}
