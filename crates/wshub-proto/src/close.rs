//! Close codes and Close frame payloads (RFC 6455 §5.5.1, §7.4).

use std::fmt;

use crate::error::ProtocolError;
use crate::utf8;

/// The longest close reason, in bytes: a control frame carries at most 125
/// bytes of payload and the code takes two (RFC 6455 §5.5).
pub const MAX_REASON_LEN: usize = 123;

/// A close status code (RFC 6455 §7.4), named as in the IANA registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    NormalClosure,
    /// 1001: an endpoint is going away (server shutdown, page navigation).
    GoingAway,
    /// 1002: the peer broke the protocol.
    ProtocolError,
    /// 1003: a data type the endpoint cannot accept (text-only endpoint got binary).
    UnsupportedData,
    /// 1005: reserved; reports that a Close frame carried no code. Never on the wire.
    NoStatusReceived,
    /// 1006: reserved; reports that the connection closed without a Close frame.
    /// Never on the wire.
    AbnormalClosure,
    /// 1007: a message's data was inconsistent with its type (invalid UTF-8 text).
    InvalidPayloadData,
    /// 1008: a message violated the endpoint's policy.
    PolicyViolation,
    /// 1009: a message was too big to process.
    MessageTooBig,
    /// 1010: the client needed an extension the server did not negotiate.
    MandatoryExtension,
    /// 1011: the server met an unexpected condition.
    InternalError,
    /// 1012: the service is restarting.
    ServiceRestart,
    /// 1013: try again later (temporary overload).
    TryAgainLater,
    /// 1014: a gateway or proxy got an invalid response upstream.
    BadGateway,
    /// 1015: reserved; reports a TLS handshake failure. Never on the wire.
    TlsHandshake,
    /// Any other code: 3000–3999 registered by libraries and frameworks,
    /// 4000–4999 private to applications, and the reserved or unassigned rest.
    Other(u16),
}

impl CloseCode {
    /// The numeric code.
    pub fn as_u16(self) -> u16 {
        match self {
            Self::NormalClosure => 1000,
            Self::GoingAway => 1001,
            Self::ProtocolError => 1002,
            Self::UnsupportedData => 1003,
            Self::NoStatusReceived => 1005,
            Self::AbnormalClosure => 1006,
            Self::InvalidPayloadData => 1007,
            Self::PolicyViolation => 1008,
            Self::MessageTooBig => 1009,
            Self::MandatoryExtension => 1010,
            Self::InternalError => 1011,
            Self::ServiceRestart => 1012,
            Self::TryAgainLater => 1013,
            Self::BadGateway => 1014,
            Self::TlsHandshake => 1015,
            Self::Other(code) => code,
        }
    }

    /// Whether this code may appear in a Close frame on the wire, sent or
    /// received: 1000–1003, 1007–1014 and 3000–4999 (RFC 6455 §7.4.1, §7.4.2).
    /// 1004–1006 and 1015 are reserved for reporting and "MUST NOT be set as a
    /// status code in a Close control frame by an endpoint" (§7.4.1).
    pub fn is_allowed_on_wire(self) -> bool {
        matches!(self.as_u16(), 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        match code {
            1000 => Self::NormalClosure,
            1001 => Self::GoingAway,
            1002 => Self::ProtocolError,
            1003 => Self::UnsupportedData,
            1005 => Self::NoStatusReceived,
            1006 => Self::AbnormalClosure,
            1007 => Self::InvalidPayloadData,
            1008 => Self::PolicyViolation,
            1009 => Self::MessageTooBig,
            1010 => Self::MandatoryExtension,
            1011 => Self::InternalError,
            1012 => Self::ServiceRestart,
            1013 => Self::TryAgainLater,
            1014 => Self::BadGateway,
            1015 => Self::TlsHandshake,
            other => Self::Other(other),
        }
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.as_u16()
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u16())
    }
}

/// The code and reason of a Close frame (RFC 6455 §5.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// Why the endpoint closes.
    pub code: CloseCode,
    /// Human-readable UTF-8, at most [`MAX_REASON_LEN`] (123) bytes; may be empty.
    pub reason: String,
}

impl CloseFrame {
    /// A close frame with `code` and `reason`.
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// The Close that fails a connection for `err` (RFC 6455 §7.1.7): its
    /// close code, and its message as the reason, cut at a character
    /// boundary to fit [`MAX_REASON_LEN`].
    pub(crate) fn failing(err: &crate::ProtocolError) -> Self {
        let mut reason = err.to_string();
        if reason.len() > MAX_REASON_LEN {
            let mut end = MAX_REASON_LEN;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        Self::new(err.close_code(), reason)
    }

    /// Parses a Close frame's payload: empty (no status code, reported as
    /// `None`), or a 2-byte big-endian code followed by a UTF-8 reason.
    ///
    /// # Errors
    /// - [`ProtocolError::CloseTooShort`] for a 1-byte payload (§5.5.1).
    /// - [`ProtocolError::InvalidCloseCode`] for a code not allowed on the wire (§7.4).
    /// - [`ProtocolError::InvalidUtf8`] when the reason is not UTF-8 (§5.5.1, §8.1).
    pub fn parse(payload: &[u8]) -> Result<Option<Self>, ProtocolError> {
        match payload {
            [] => Ok(None),
            [_] => Err(ProtocolError::CloseTooShort),
            [hi, lo, reason @ ..] => {
                let code = CloseCode::from(u16::from_be_bytes([*hi, *lo]));
                if !code.is_allowed_on_wire() {
                    return Err(ProtocolError::InvalidCloseCode {
                        code: code.as_u16(),
                    });
                }
                let reason =
                    utf8::validate(reason).map_err(|offset| ProtocolError::InvalidUtf8 {
                        offset: offset as u64 + 2,
                    })?;
                Ok(Some(Self::new(code, reason)))
            }
        }
    }

    /// Appends the payload (code, then reason) to `out`.
    pub(crate) fn encode_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.code.as_u16().to_be_bytes());
        out.extend_from_slice(self.reason.as_bytes());
    }
}

/// How a connection ended, as the browser's `CloseEvent` reports it
/// (RFC 6455 §7.1.5, §7.1.6, §7.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseEvent {
    /// The peer's close code; [`CloseCode::NoStatusReceived`] (1005) if its
    /// Close carried none; the code of our failing Close if the peer broke
    /// the protocol; [`CloseCode::AbnormalClosure`] (1006) if the transport
    /// ended without a close handshake.
    pub code: CloseCode,
    /// The peer's close reason (UTF-8, at most 123 bytes); empty if none.
    pub reason: String,
    /// Whether the close handshake completed (§7.1.4).
    pub was_clean: bool,
}

impl CloseEvent {
    /// The transport ended with no close handshake: 1006, not clean (§7.1.5).
    pub fn abnormal() -> Self {
        Self {
            code: CloseCode::AbnormalClosure,
            reason: String::new(),
            was_clean: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_allowed_on_the_wire_exactly_as_section_7_4_says() {
        for code in 0u16..=u16::MAX {
            let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(
                CloseCode::from(code).is_allowed_on_wire(),
                allowed,
                "{code}"
            );
            assert_eq!(CloseCode::from(code).as_u16(), code);
        }
    }

    #[test]
    fn parses_an_empty_payload_as_no_status() {
        assert_eq!(CloseFrame::parse(&[]), Ok(None));
    }

    #[test]
    fn a_one_byte_payload_is_a_protocol_error_section_5_5_1() {
        assert_eq!(
            CloseFrame::parse(&[0x03]),
            Err(ProtocolError::CloseTooShort)
        );
    }

    #[test]
    fn parses_code_and_reason() {
        let frame = CloseFrame::parse(b"\x03\xe8bye").unwrap().unwrap();
        assert_eq!(frame, CloseFrame::new(CloseCode::NormalClosure, "bye"));
    }

    #[test]
    fn reserved_codes_are_rejected_when_received() {
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert_eq!(
                CloseFrame::parse(&code.to_be_bytes()),
                Err(ProtocolError::InvalidCloseCode { code })
            );
        }
    }

    #[test]
    fn a_reason_that_is_not_utf8_is_rejected() {
        assert_eq!(
            CloseFrame::parse(b"\x03\xe8ok\xff"),
            Err(ProtocolError::InvalidUtf8 { offset: 4 })
        );
    }
}
