//! [`FrameHeader`]: one frame header parsed from and encoded to the wire
//! (RFC 6455 §5.2), with the minimal-length and most-significant-bit rules.

use super::Opcode;
use crate::error::ProtocolError;

/// The longest possible header: 2 fixed bytes, 8 bytes of 64-bit payload
/// length and 4 bytes of masking key (RFC 6455 §5.2).
pub const MAX_HEADER_LEN: usize = 14;

/// The longest control frame payload, in bytes: "All control frames MUST
/// have a payload length of 125 bytes or less" (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD_LEN: usize = 125;

/// One frame header as it appears on the wire (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Last fragment of a message (§5.4).
    pub fin: bool,
    /// Reserved bit 1; claimed by permessage-deflate on a message's first frame.
    pub rsv1: bool,
    /// Reserved bit 2; no extension wshub implements uses it.
    pub rsv2: bool,
    /// Reserved bit 3; no extension wshub implements uses it.
    pub rsv3: bool,
    /// What the payload is (§5.2, §11.8).
    pub opcode: Opcode,
    /// `Some` on every client-to-server frame (§5.3).
    pub masking_key: Option<[u8; 4]>,
    /// Bytes of payload, after decoding the 7-, 16- or 64-bit form.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Number of header bytes this frame needs, given its first two bytes.
    pub(crate) fn len_from_prefix(second_byte: u8) -> usize {
        let ext = match second_byte & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if second_byte & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }

    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a header (nothing is
    /// consumed; call again with more bytes), or `Ok(Some((header, n)))` where
    /// `n` is the header's length in bytes.
    ///
    /// # Errors
    /// - [`ProtocolError::ReservedOpcode`] for opcodes `0x3`–`0x7`, `0xB`–`0xF` (§5.2).
    /// - [`ProtocolError::NonMinimalLength`] when a 16- or 64-bit length encodes a
    ///   value that a shorter form could hold: "the minimal number of bytes MUST be
    ///   used to encode the length" (§5.2).
    /// - [`ProtocolError::LengthMsbSet`] when the 64-bit length has its most
    ///   significant bit set: "the most significant bit MUST be 0" (§5.2).
    #[inline(always)]
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtocolError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let len = Self::len_from_prefix(buf[1]);
        if buf.len() < len {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let opcode = Opcode::from_u8(b0 & 0x0f)
            .ok_or(ProtocolError::ReservedOpcode { opcode: b0 & 0x0f })?;
        let mut pos = 2;
        let payload_len = match b1 & 0x7f {
            126 => {
                let n = u16::from_be_bytes([buf[2], buf[3]]) as u64;
                pos += 2;
                if n < 126 {
                    return Err(ProtocolError::NonMinimalLength { len: n });
                }
                n
            }
            127 => {
                let n = u64::from_be_bytes(buf[2..10].try_into().expect("length checked above"));
                pos += 8;
                if n & (1 << 63) != 0 {
                    return Err(ProtocolError::LengthMsbSet);
                }
                if n <= u16::MAX as u64 {
                    return Err(ProtocolError::NonMinimalLength { len: n });
                }
                n
            }
            n => n as u64,
        };
        let masking_key = if b1 & 0x80 != 0 {
            Some(buf[pos..pos + 4].try_into().expect("length checked above"))
        } else {
            None
        };
        Ok(Some((
            Self {
                fin: b0 & 0x80 != 0,
                rsv1: b0 & 0x40 != 0,
                rsv2: b0 & 0x20 != 0,
                rsv3: b0 & 0x10 != 0,
                opcode,
                masking_key,
                payload_len,
            },
            len,
        )))
    }

    /// Length of this header on the wire, in bytes (2 to 14).
    pub fn encoded_len(&self) -> usize {
        let ext = match self.payload_len {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        };
        2 + ext + if self.masking_key.is_some() { 4 } else { 0 }
    }

    /// The first byte of the header: FIN, RSV1–3 and the opcode (§5.2).
    #[inline]
    pub(crate) fn first_byte(&self) -> u8 {
        (self.fin as u8) << 7
            | (self.rsv1 as u8) << 6
            | (self.rsv2 as u8) << 5
            | (self.rsv3 as u8) << 4
            | self.opcode.as_u8()
    }

    /// Writes the header in its minimal form into `out` and returns the number of
    /// bytes written.
    ///
    /// # Panics
    /// If `out` is shorter than [`FrameHeader::encoded_len`] (14 always suffices).
    pub fn encode(&self, out: &mut [u8]) -> usize {
        out[0] = self.first_byte();
        let mask_bit = if self.masking_key.is_some() { 0x80 } else { 0 };
        let mut pos = 2;
        match self.payload_len {
            n @ 0..=125 => out[1] = mask_bit | n as u8,
            n @ 126..=0xffff => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                pos += 2;
            }
            n => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&n.to_be_bytes());
                pos += 8;
            }
        }
        if let Some(key) = self.masking_key {
            out[pos..pos + 4].copy_from_slice(&key);
            pos += 4;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(opcode: Opcode, len: u64, key: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            masking_key: key,
            payload_len: len,
        }
    }

    // RFC 6455 §5.7 examples.
    #[test]
    fn parses_the_unmasked_hello_header_of_section_5_7() {
        let (h, n) = FrameHeader::parse(&[0x81, 0x05, b'H']).unwrap().unwrap();
        assert_eq!((h, n), (header(Opcode::Text, 5, None), 2));
    }

    #[test]
    fn parses_the_256_byte_and_64_kib_binary_headers_of_section_5_7() {
        let (h, n) = FrameHeader::parse(&[0x82, 0x7E, 0x01, 0x00])
            .unwrap()
            .unwrap();
        assert_eq!((h, n), (header(Opcode::Binary, 256, None), 4));
        let wire = [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
        let (h, n) = FrameHeader::parse(&wire).unwrap().unwrap();
        assert_eq!((h, n), (header(Opcode::Binary, 65536, None), 10));
    }

    #[test]
    fn an_incomplete_header_asks_for_more_at_every_split() {
        let wire = [0x82, 0xFF, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 1, 2, 3, 4];
        for cut in 0..wire.len() {
            assert_eq!(
                FrameHeader::parse(&wire[..cut]).unwrap(),
                None,
                "cut at {cut}"
            );
        }
        let (h, n) = FrameHeader::parse(&wire).unwrap().unwrap();
        assert_eq!(
            (h, n),
            (header(Opcode::Binary, 65536, Some([1, 2, 3, 4])), 14)
        );
    }

    #[test]
    fn reserved_opcodes_are_rejected_section_5_2() {
        for op in [0x3u8, 0x7, 0xB, 0xF] {
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 0x00]),
                Err(ProtocolError::ReservedOpcode { opcode: op })
            );
        }
    }

    #[test]
    fn non_minimal_lengths_are_rejected_section_5_2() {
        assert_eq!(
            FrameHeader::parse(&[0x82, 126, 0x00, 125]),
            Err(ProtocolError::NonMinimalLength { len: 125 })
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff]),
            Err(ProtocolError::NonMinimalLength { len: 0xffff })
        );
    }

    #[test]
    fn a_64_bit_length_with_the_msb_set_is_rejected_section_5_2() {
        let wire = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::parse(&wire), Err(ProtocolError::LengthMsbSet));
    }

    proptest! {
        #[test]
        fn encode_then_parse_round_trips(
            fin: bool, rsv1: bool, rsv2: bool, rsv3: bool,
            op in prop::sample::select(vec![Opcode::Continuation, Opcode::Text, Opcode::Binary, Opcode::Close, Opcode::Ping, Opcode::Pong]),
            len in prop_oneof![0u64..=125, 126u64..=0xffff, 0x1_0000u64..=(u64::MAX >> 1)],
            key: Option<[u8; 4]>,
        ) {
            let h = FrameHeader { fin, rsv1, rsv2, rsv3, opcode: op, masking_key: key, payload_len: len };
            let mut buf = [0u8; MAX_HEADER_LEN];
            let n = h.encode(&mut buf);
            prop_assert_eq!(n, h.encoded_len());
            prop_assert_eq!(FrameHeader::parse(&buf[..n]).unwrap(), Some((h, n)));
        }
    }
}
