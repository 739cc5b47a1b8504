//! Errors: the peer's faults ([`ProtocolError`]) apart from the caller's
//! ([`SendError`]).

use crate::close::CloseCode;

/// Ways a peer can break RFC 6455. Each one fails the connection (§7.1.7):
/// the [`Connection`](crate::Connection) queues a Close frame with
/// [`ProtocolError::close_code`] and stops reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An opcode from the reserved ranges `0x3`–`0x7` or `0xB`–`0xF` (§5.2).
    #[error("reserved opcode {opcode:#x}")]
    ReservedOpcode {
        /// The 4-bit opcode received.
        opcode: u8,
    },
    /// RSV1, RSV2 or RSV3 was set without a negotiated extension that defines it (§5.2).
    #[error("reserved bits set ({bits:#05b}) without an extension that defines them")]
    ReservedBitsSet {
        /// RSV1..RSV3 as the low three bits.
        bits: u8,
    },
    /// A 16- or 64-bit payload length that a shorter form could hold (§5.2).
    #[error("payload length {len} is not in its minimal encoding")]
    NonMinimalLength {
        /// The decoded length.
        len: u64,
    },
    /// The most significant bit of a 64-bit payload length was set (§5.2).
    #[error("64-bit payload length has its most significant bit set")]
    LengthMsbSet,
    /// A server received an unmasked frame: "The server MUST close the
    /// connection upon receiving a frame that is not masked" (§5.1).
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// A client received a masked frame: "A client MUST close a connection if
    /// it detects a masked frame" (§5.1).
    #[error("server frame is masked")]
    MaskedFrame,
    /// A control frame's payload was longer than 125 bytes (§5.5).
    #[error("control frame payload is {len} bytes, the limit is 125")]
    ControlFrameTooLong {
        /// The control frame's payload length in bytes.
        len: u64,
    },
    /// A control frame had FIN clear: "Control frames themselves MUST NOT be
    /// fragmented" (§5.5).
    #[error("control frame is fragmented")]
    FragmentedControlFrame,
    /// A continuation frame arrived with no fragmented message in progress (§5.4).
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A Text or Binary frame arrived while a fragmented message was still
    /// in progress (§5.4).
    #[error("new data message while a fragmented message is in progress")]
    ExpectedContinuation,
    /// A text message (or a close reason) was not valid UTF-8 (§8.1).
    #[error("invalid UTF-8 in text message at byte {offset}")]
    InvalidUtf8 {
        /// Offset in bytes of the first invalid byte within the message.
        offset: u64,
    },
    /// A Close frame with a 1-byte payload (§5.5.1).
    #[error("close frame payload is 1 byte")]
    CloseTooShort,
    /// A close code that must not appear on the wire (§7.4).
    #[error("close code {code} is not allowed on the wire")]
    InvalidCloseCode {
        /// The received code.
        code: u16,
    },
    /// A frame outgrew `Config::max_frame_size` (bytes of payload).
    #[error("frame payload is {size} bytes, the limit is {limit}")]
    FrameTooBig {
        /// The frame's payload length in bytes.
        size: u64,
        /// The configured limit in bytes.
        limit: u64,
    },
    /// A message outgrew `Config::max_message_size` (bytes, summed over
    /// fragments; for a compressed message, bytes after inflation, checked
    /// while inflating, RFC 7692 §7.2.2).
    #[error("message reached {size} bytes, the limit is {limit}")]
    MessageTooBig {
        /// The message size in bytes that the frame would have reached.
        size: u64,
        /// The configured limit in bytes.
        limit: u64,
    },
    /// A compressed message (RSV1 set, RFC 7692 §6) whose payload is not
    /// valid DEFLATE data (RFC 1951), or refers back past the negotiated
    /// window. "An endpoint MUST _Fail the WebSocket Connection_" on data it
    /// cannot decompress (RFC 7692 §6.1 leaves the code open); like Node's
    /// `ws` and Python's `websockets`, we close with 1007
    /// (`InvalidPayloadData`): the data does not fit the message's type,
    /// here its compression.
    #[error("compressed message is not valid DEFLATE data")]
    InvalidCompressedData,
    /// A message had more fragments than `Config::max_fragments`.
    #[error("message has more than {limit} fragments")]
    TooManyFragments {
        /// The configured limit.
        limit: usize,
    },
}

impl ProtocolError {
    /// The close code sent when this error fails the connection (§7.4.1).
    pub fn close_code(&self) -> CloseCode {
        // Exhaustive on purpose: a new variant must choose its code.
        match self {
            Self::ReservedOpcode { .. }
            | Self::ReservedBitsSet { .. }
            | Self::NonMinimalLength { .. }
            | Self::LengthMsbSet
            | Self::UnmaskedFrame
            | Self::MaskedFrame
            | Self::ControlFrameTooLong { .. }
            | Self::FragmentedControlFrame
            | Self::UnexpectedContinuation
            | Self::ExpectedContinuation
            | Self::CloseTooShort
            | Self::InvalidCloseCode { .. } => CloseCode::ProtocolError,
            Self::InvalidUtf8 { .. } | Self::InvalidCompressedData => CloseCode::InvalidPayloadData,
            Self::FrameTooBig { .. }
            | Self::MessageTooBig { .. }
            | Self::TooManyFragments { .. } => CloseCode::MessageTooBig,
        }
    }
}

/// The caller's mistakes when sending. None of them puts anything on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A Close frame was already sent, or the connection failed; "the endpoint
    /// MUST NOT send any more data frames" after a Close (§5.5.1).
    #[error("the connection is not open")]
    NotOpen,
    /// A Ping or Pong payload over 125 bytes (§5.5).
    #[error("control frame payload is {len} bytes, the limit is 125")]
    ControlFrameTooLong {
        /// The payload length in bytes.
        len: usize,
    },
    /// A close code that must not be sent: 1004–1006, 1015, below 1000, 1016–2999
    /// or above 4999 (§7.4).
    #[error("close code {code} may not be sent")]
    InvalidCloseCode {
        /// The code the caller asked for.
        code: u16,
    },
    /// A control opcode (Close, Ping, Pong) given where only data opcodes
    /// fit: control frames are never fragmented (§5.5).
    #[error("opcode {opcode:#x} is a control opcode; fragments carry data")]
    ControlOpcode {
        /// The opcode given.
        opcode: u8,
    },
    /// A pre-encoded (unmasked) frame on a client connection, which must mask
    /// every frame with a fresh key (§5.3).
    #[error("client connections must mask every frame; prepared frames are for servers")]
    MaskRequired,
    /// A close reason over 123 bytes (§5.5).
    #[error(
        "close reason is {len} bytes, the limit is {}",
        crate::close::MAX_REASON_LEN
    )]
    ReasonTooLong {
        /// The reason's length in bytes.
        len: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_errors_close_with_1009_utf8_with_1007_the_rest_with_1002() {
        assert_eq!(
            ProtocolError::MessageTooBig { size: 2, limit: 1 }.close_code(),
            CloseCode::MessageTooBig
        );
        assert_eq!(
            ProtocolError::InvalidUtf8 { offset: 0 }.close_code(),
            CloseCode::InvalidPayloadData
        );
        assert_eq!(
            ProtocolError::UnmaskedFrame.close_code(),
            CloseCode::ProtocolError
        );
    }
}
