//! The streaming frame decoder: bytes in any split → frame headers checked
//! against RFC 6455 §5.1–§5.5 and the size limits, and payload chunks.
//!
//! Every rule about a frame's header is checked here and nowhere else:
//! masking by role (§5.1), reserved bits (§5.2, RFC 7692 §6), control frames
//! (§5.5), the order of fragments (§5.4), the Close payload (§5.5.1), and the
//! limits of [`Limits`]. A data frame's payload is handed out as it arrives,
//! as a slice of the caller's bytes, still masked: the caller copies it once
//! and unmasks the copy ([`DataChunk::unmask_into`]). Only a header cut by a
//! read (at most 13 bytes) and a control frame's payload (at most 125 bytes)
//! are kept between calls.

use bytes::BytesMut;

use super::{
    apply_mask, apply_mask_offset, FrameHeader, Opcode, MAX_CONTROL_PAYLOAD_LEN, MAX_HEADER_LEN,
};
use crate::close::CloseFrame;
use crate::error::ProtocolError;
use crate::role::Role;

/// The size limits a [`Decoder`] enforces, in bytes of payload as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of one data frame (1009 beyond, [`ProtocolError::FrameTooBig`]).
    pub max_frame_size: u64,
    /// Largest data message summed over its fragments
    /// ([`ProtocolError::MessageTooBig`]). Not checked here for a compressed
    /// message, whose wire length says nothing of its size: its inflater
    /// checks the inflated bytes.
    pub max_message_size: u64,
    /// Most frames one data message may have ([`ProtocolError::TooManyFragments`]).
    pub max_fragments: usize,
}

impl Limits {
    /// No limit but the protocol's own (a 63-bit payload length), for a
    /// peer that is trusted, such as a load generator's server.
    pub const NONE: Self = Self {
        max_frame_size: u64::MAX,
        max_message_size: u64::MAX,
        max_fragments: usize::MAX,
    };
}

/// What [`Decoder::decode`] found, in wire order.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Payload bytes of a data message, as they arrived.
    Data(DataChunk<'a>),
    /// A whole Ping frame's payload, unmasked (at most 125 bytes, §5.5.2).
    Ping(&'a [u8]),
    /// A whole Pong frame's payload, unmasked (at most 125 bytes, §5.5.3).
    Pong(&'a [u8]),
    /// The peer's Close frame, its payload checked (§5.5.1): `None` when it
    /// carried no status code. Nothing after it is decoded.
    Close(Option<CloseFrame>),
}

/// Part of a data message's payload, a slice of the bytes given to
/// [`Decoder::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataChunk<'a> {
    /// The message's type, `Text` or `Binary`, on its continuations too.
    pub opcode: Opcode,
    /// RSV1 was set on the message's first frame: its payload is compressed
    /// (permessage-deflate, RFC 7692 §6).
    pub compressed: bool,
    /// The bytes as on the wire: masked when [`DataChunk::masking_key`] is set.
    pub payload: &'a [u8],
    /// The frame's masking key (§5.3); `Some` on every client-to-server frame.
    pub masking_key: Option<[u8; 4]>,
    /// Bytes of the frame's payload before this chunk: where in the masking
    /// key the chunk starts.
    pub offset: usize,
    /// Bytes of the frame's payload still to come after this chunk.
    pub frame_remaining: u64,
    /// This is the message's first chunk.
    pub first: bool,
    /// This is the message's last chunk: its final frame (FIN set) is complete.
    pub last: bool,
}

impl DataChunk<'_> {
    /// Appends the payload to `out`, unmasked (§5.3).
    #[inline]
    pub fn unmask_into(&self, out: &mut BytesMut) {
        let start = out.len();
        out.extend_from_slice(self.payload);
        if let Some(key) = self.masking_key {
            if self.offset == 0 {
                // A whole frame, or its first chunk: no key rotation.
                apply_mask(&mut out[start..], key);
            } else {
                apply_mask_offset(&mut out[start..], key, self.offset);
            }
        }
    }
}

/// A whole message's chunk (see [`Decoder::is_whole_message`]): its header
/// is the first `header_len` bytes of `data`, its payload follows. Returns
/// the bytes consumed, header and payload.
#[inline(always)]
fn whole_message(
    header: FrameHeader,
    data: &[u8],
    header_len: usize,
) -> (usize, Option<Decoded<'_>>) {
    let end = header_len + header.payload_len as usize;
    let chunk = DataChunk {
        opcode: header.opcode,
        compressed: false,
        payload: &data[header_len..end],
        masking_key: header.masking_key,
        offset: 0,
        frame_remaining: 0,
        first: true,
        last: true,
    };
    (end, Some(Decoded::Data(chunk)))
}

/// The frame whose payload is being received.
#[derive(Debug, Clone, Copy)]
struct FrameInProgress {
    /// `Ping`, `Pong` or `Close`, or the data message's `Text` or `Binary`
    /// (also for its continuation frames).
    opcode: Opcode,
    fin: bool,
    masking_key: Option<[u8; 4]>,
    /// Payload bytes not yet received.
    remaining: u64,
    /// Payload bytes already received (the masking key offset).
    received: usize,
}

/// The data message whose frames are being received (§5.4).
#[derive(Debug, Clone, Copy)]
struct MessageInProgress {
    opcode: Opcode,
    compressed: bool,
    frames: usize,
    /// Payload bytes of its frames so far, headers of frames not yet
    /// complete included.
    len: u64,
    /// No chunk of it has been handed out yet.
    first_due: bool,
}

/// A streaming decoder of RFC 6455 frames (§5.2) for one direction of one
/// connection.
///
/// Feed it the bytes in any split: one byte, a frame and a half, many frames.
/// Each call to [`Decoder::decode`] consumes some of them and hands out at
/// most one [`Decoded`] item; call it again with the rest.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    limits: Limits,
    /// permessage-deflate was negotiated: RSV1 may mark a data message's
    /// first frame as compressed (RFC 7692 §6).
    compression: bool,
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    closed: bool,
    frame: Option<FrameInProgress>,
    message: Option<MessageInProgress>,
    /// The control frame's payload being received, unmasked. Allocated by
    /// the first control frame, given back by [`Decoder::shrink`].
    control: Vec<u8>,
}

impl Decoder {
    /// A decoder for the frames that an endpoint of `role` receives.
    /// `compression`: permessage-deflate was negotiated (RFC 7692).
    pub fn new(role: Role, limits: Limits, compression: bool) -> Self {
        Self {
            role,
            limits,
            compression,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            closed: false,
            frame: None,
            message: None,
            control: Vec::new(),
        }
    }

    /// Decodes from the start of `data`. Returns how many bytes were consumed
    /// and what they completed, if anything:
    /// - `(n, Some(item))`: a data chunk, or a whole control frame;
    /// - `(n, None)`: the bytes were taken into a header or a control frame
    ///   still incomplete (`n` is then all of `data`), or were a data frame's
    ///   header alone.
    ///
    /// Call again with `&data[n..]` until it is empty. After a Close frame
    /// the rest is consumed and ignored (§5.5.1: nothing follows it).
    ///
    /// # Errors
    /// The [`ProtocolError`] of the first rule the peer broke: a header
    /// ([`FrameHeader::parse`]), masking (§5.1), reserved bits (§5.2), a
    /// control frame (§5.5), the order of fragments (§5.4), a Close payload
    /// (§5.5.1), or a limit. The stream cannot be decoded further: call
    /// nothing after an error but [`Decoder::reset`].
    #[inline]
    pub fn decode<'a>(
        &'a mut self,
        data: &'a [u8],
    ) -> Result<(usize, Option<Decoded<'a>>), ProtocolError> {
        if self.closed {
            return Ok((data.len(), None));
        }
        if self.frame.is_some() {
            return self.decode_payload(data);
        }
        let consumed = if self.header_len == 0 {
            // Fast path: the whole header is in `data`.
            match FrameHeader::parse(data)? {
                Some((header, n)) => {
                    if self.is_whole_message(&header, data.len() - n) {
                        return Ok(whole_message(header, data, n));
                    }
                    self.start_frame(header)?;
                    n
                }
                None => {
                    // Shorter than its header, so shorter than MAX_HEADER_LEN.
                    self.header[..data.len()].copy_from_slice(data);
                    self.header_len = data.len() as u8;
                    return Ok((data.len(), None));
                }
            }
        } else {
            match self.continue_header(data)? {
                (n, true) => n,
                (n, false) => return Ok((n, None)),
            }
        };
        let (n, item) = self.decode_payload(&data[consumed..])?;
        Ok((consumed + n, item))
    }

    /// The header of the frame at the start of `data`, and its length in
    /// bytes, when that frame is a whole message that breaks no rule (see
    /// `Decoder::is_whole_message`) and nothing is in progress: a driver
    /// may take it as it is, `data[n..n + payload_len]` being its payload,
    /// without the decoder's state. `None` for anything else, errors
    /// included: [`Decoder::decode`] then says what the bytes are.
    ///
    /// Used by [`Connection`](crate::Connection), whose most common input
    /// is a read holding whole single-frame messages: handing those out as
    /// a [`Decoded`] costs about 15% of its pipelined echo throughput, in
    /// stack copies of the item that the processor cannot forward.
    #[inline(always)]
    pub fn whole_message(&self, data: &[u8]) -> Option<(FrameHeader, usize)> {
        if self.header_len != 0 || self.frame.is_some() || self.closed {
            return None;
        }
        match FrameHeader::parse(data) {
            Ok(Some((header, n))) if self.is_whole_message(&header, data.len() - n) => {
                Some((header, n))
            }
            _ => None,
        }
    }

    /// Whether this frame is a whole message that breaks no rule, its
    /// payload all in the `available` bytes: an unfragmented, uncompressed
    /// Text or Binary frame, masked as the role requires, within the limits,
    /// with no message in progress. Such a frame needs no state between
    /// calls ([`whole_message`]); every other frame, valid or not, goes
    /// through [`Decoder::start_frame`], which says what is wrong.
    #[inline(always)]
    fn is_whole_message(&self, header: &FrameHeader, available: usize) -> bool {
        header.fin
            && !(header.rsv1 || header.rsv2 || header.rsv3)
            && matches!(header.opcode, Opcode::Text | Opcode::Binary)
            && header.masking_key.is_some() == self.role.receives_masked()
            && header.payload_len <= available as u64
            && header.payload_len <= self.limits.max_frame_size
            && header.payload_len <= self.limits.max_message_size
            && self.limits.max_fragments >= 1
            && self.message.is_none()
    }

    /// Adds bytes to a header cut by a read; `true` once it is complete and
    /// its frame started.
    fn continue_header(&mut self, data: &[u8]) -> Result<(usize, bool), ProtocolError> {
        let have = usize::from(self.header_len);
        let take = (MAX_HEADER_LEN - have).min(data.len());
        self.header[have..have + take].copy_from_slice(&data[..take]);
        match FrameHeader::parse(&self.header[..have + take])? {
            Some((header, n)) => {
                self.header_len = 0;
                self.start_frame(header)?;
                Ok((n - have, true))
            }
            None => {
                // Still short of a header, so `take` was all of `data`.
                self.header_len = (have + take) as u8;
                Ok((take, false))
            }
        }
    }

    /// Checks a frame's header against the rules and limits and makes it
    /// the frame in progress.
    fn start_frame(&mut self, header: FrameHeader) -> Result<(), ProtocolError> {
        let rsv = (header.rsv1 as u8) << 2 | (header.rsv2 as u8) << 1 | header.rsv3 as u8;
        // "the RSV1 bit [...] set on the first frame of a message" marks it
        // compressed when permessage-deflate was negotiated (RFC 7692 §6),
        // and nowhere else: "An endpoint MUST NOT set the Per-Message
        // Compressed bit of control frames and non-first fragments of a data
        // message" (§6.1).
        let compressed = rsv == 0b100
            && self.compression
            && matches!(header.opcode, Opcode::Text | Opcode::Binary);
        if rsv != 0 && !compressed {
            return Err(ProtocolError::ReservedBitsSet { bits: rsv });
        }
        if header.masking_key.is_some() != self.role.receives_masked() {
            return Err(match self.role {
                Role::Server => ProtocolError::UnmaskedFrame,
                Role::Client => ProtocolError::MaskedFrame,
            });
        }
        let len = header.payload_len;
        let opcode = if header.opcode.is_control() {
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if len > MAX_CONTROL_PAYLOAD_LEN as u64 {
                return Err(ProtocolError::ControlFrameTooLong { len });
            }
            self.control.clear();
            header.opcode
        } else {
            let message = match (header.opcode, self.message.as_mut()) {
                (Opcode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
                (Opcode::Continuation, Some(message)) => message,
                (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
                (opcode, None) => self.message.insert(MessageInProgress {
                    opcode,
                    compressed,
                    frames: 0,
                    len: 0,
                    first_due: true,
                }),
            };
            message.frames += 1;
            if message.frames > self.limits.max_fragments {
                return Err(ProtocolError::TooManyFragments {
                    limit: self.limits.max_fragments,
                });
            }
            if len > self.limits.max_frame_size {
                return Err(ProtocolError::FrameTooBig {
                    size: len,
                    limit: self.limits.max_frame_size,
                });
            }
            message.len = message.len.saturating_add(len);
            if !message.compressed && message.len > self.limits.max_message_size {
                return Err(ProtocolError::MessageTooBig {
                    size: message.len,
                    limit: self.limits.max_message_size,
                });
            }
            message.opcode
        };
        self.frame = Some(FrameInProgress {
            opcode,
            fin: header.fin,
            masking_key: header.masking_key,
            remaining: len,
            received: 0,
        });
        Ok(())
    }

    /// Takes payload bytes of the frame in progress from `data`.
    #[inline]
    fn decode_payload<'a>(
        &'a mut self,
        data: &'a [u8],
    ) -> Result<(usize, Option<Decoded<'a>>), ProtocolError> {
        let Some(frame) = self.frame.as_mut() else {
            return Ok((0, None));
        };
        let take = frame.remaining.min(data.len() as u64) as usize;
        let offset = frame.received;
        frame.received += take;
        frame.remaining -= take as u64;
        let frame = *frame;
        let chunk = &data[..take];
        if frame.opcode.is_control() {
            let start = self.control.len();
            self.control.extend_from_slice(chunk);
            if let Some(key) = frame.masking_key {
                apply_mask_offset(&mut self.control[start..], key, offset);
            }
            if frame.remaining > 0 {
                return Ok((take, None));
            }
            self.frame = None;
            return Ok((take, Some(self.finish_control(frame.opcode)?)));
        }
        let Some(message) = self.message.as_mut() else {
            unreachable!("a data frame in progress belongs to a message");
        };
        if take == 0 && frame.remaining > 0 {
            return Ok((0, None));
        }
        let first = std::mem::replace(&mut message.first_due, false);
        let last = frame.fin && frame.remaining == 0;
        let chunk = DataChunk {
            opcode: message.opcode,
            compressed: message.compressed,
            payload: chunk,
            masking_key: frame.masking_key,
            offset,
            frame_remaining: frame.remaining,
            first,
            last,
        };
        if frame.remaining == 0 {
            self.frame = None;
            if frame.fin {
                self.message = None;
            }
        }
        Ok((take, Some(Decoded::Data(chunk))))
    }

    /// The item of a control frame whose payload is complete.
    fn finish_control(&mut self, opcode: Opcode) -> Result<Decoded<'_>, ProtocolError> {
        Ok(match opcode {
            Opcode::Ping => Decoded::Ping(&self.control),
            Opcode::Pong => Decoded::Pong(&self.control),
            _ => {
                let close = CloseFrame::parse(&self.control)?;
                self.closed = true;
                Decoded::Close(close)
            }
        })
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether part of a frame (header or payload) was received and the
    /// rest is awaited.
    #[inline]
    pub fn mid_frame(&self) -> bool {
        self.frame.is_some() || self.header_len > 0
    }

    /// Whether a data message has begun and its final frame has not ended.
    #[inline]
    pub fn mid_message(&self) -> bool {
        self.message.is_some()
    }

    /// Whether the peer's Close frame was decoded.
    #[inline]
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Gives back the control frame buffer when no control frame is in
    /// progress.
    pub fn shrink(&mut self) {
        if !self.frame.is_some_and(|f| f.opcode.is_control()) {
            self.control = Vec::new();
        }
    }

    /// Bytes of buffer held (the control frame payload's).
    pub fn capacity(&self) -> usize {
        self.control.capacity()
    }

    /// Forgets any frame and message in progress, after an error.
    pub fn reset(&mut self) {
        self.frame = None;
        self.message = None;
        self.header_len = 0;
        self.control = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::close::CloseCode;

    /// What the decoder handed out, owned; a data message's chunks joined.
    #[derive(Debug, PartialEq, Eq)]
    enum Item {
        Data(Opcode, Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<CloseFrame>),
    }

    fn decode_in_pieces(
        decoder: &mut Decoder,
        wire: &[u8],
        piece: usize,
    ) -> Result<Vec<Item>, ProtocolError> {
        let mut items = Vec::new();
        let mut message = Vec::new();
        let mut in_message = false;
        for mut data in wire.chunks(piece.max(1)) {
            while !data.is_empty() {
                let (n, item) = decoder.decode(data)?;
                data = &data[n..];
                match item {
                    Some(Decoded::Data(chunk)) => {
                        assert_eq!(chunk.first, !in_message, "first marks a new message");
                        in_message = !chunk.last;
                        let mut out = BytesMut::new();
                        chunk.unmask_into(&mut out);
                        message.extend_from_slice(&out);
                        if chunk.last {
                            items.push(Item::Data(chunk.opcode, std::mem::take(&mut message)));
                        }
                    }
                    Some(Decoded::Ping(p)) => items.push(Item::Ping(p.to_vec())),
                    Some(Decoded::Pong(p)) => items.push(Item::Pong(p.to_vec())),
                    Some(Decoded::Close(c)) => items.push(Item::Close(c)),
                    None => {}
                }
            }
        }
        Ok(items)
    }

    fn server() -> Decoder {
        Decoder::new(Role::Server, Limits::NONE, false)
    }

    fn client() -> Decoder {
        Decoder::new(Role::Client, Limits::NONE, false)
    }

    /// Decodes `wire` at every piece size, checking they all agree.
    fn decode(make: impl Fn() -> Decoder, wire: &[u8]) -> Result<Vec<Item>, ProtocolError> {
        let whole = decode_in_pieces(&mut make(), wire, wire.len());
        for piece in 1..wire.len().min(40) {
            assert_eq!(
                decode_in_pieces(&mut make(), wire, piece),
                whole,
                "piece {piece}"
            );
        }
        whole
    }

    fn frame(first_byte: u8, key: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let header = FrameHeader::parse(&[first_byte, 0]).unwrap().unwrap().0;
        let header = FrameHeader {
            masking_key: key,
            payload_len: payload.len() as u64,
            ..header
        };
        let mut wire = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut wire);
        let mut wire = wire[..n].to_vec();
        let start = wire.len();
        wire.extend_from_slice(payload);
        if let Some(key) = key {
            crate::frame::apply_mask(&mut wire[start..], key);
        }
        wire
    }

    const KEY: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

    // RFC 6455 §5.7: the example frames.

    #[test]
    fn decodes_the_masked_hello_of_section_5_7_at_every_split() {
        let wire = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode(server, &wire),
            Ok(vec![Item::Data(Opcode::Text, b"Hello".to_vec())])
        );
    }

    #[test]
    fn decodes_the_fragmented_unmasked_hello_of_section_5_7() {
        let wire = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(
            decode(client, &wire),
            Ok(vec![Item::Data(Opcode::Text, b"Hello".to_vec())])
        );
    }

    #[test]
    fn decodes_the_ping_and_the_256_byte_binary_of_section_5_7() {
        let mut wire = vec![0x89, 0x05, b'H', b'e', b'l', b'l', b'o'];
        wire.extend_from_slice(&[0x82, 0x7e, 0x01, 0x00]);
        wire.extend_from_slice(&[7u8; 256]);
        assert_eq!(
            decode(client, &wire),
            Ok(vec![
                Item::Ping(b"Hello".to_vec()),
                Item::Data(Opcode::Binary, vec![7; 256])
            ])
        );
    }

    // §5.1: masking by role.

    #[test]
    fn a_server_rejects_an_unmasked_frame_and_a_client_a_masked_one_section_5_1() {
        assert_eq!(
            decode(server, &frame(0x81, None, b"x")),
            Err(ProtocolError::UnmaskedFrame)
        );
        assert_eq!(
            decode(client, &frame(0x81, KEY, b"x")),
            Err(ProtocolError::MaskedFrame)
        );
    }

    // §5.2: reserved bits; RFC 7692 §6: RSV1 on a message's first frame only.

    #[test]
    fn reserved_bits_are_rejected_without_an_extension_section_5_2() {
        for (first_byte, bits) in [(0xc1, 0b100), (0xa1, 0b010), (0x91, 0b001)] {
            assert_eq!(
                decode(client, &frame(first_byte, None, b"x")),
                Err(ProtocolError::ReservedBitsSet { bits })
            );
        }
    }

    #[test]
    fn with_permessage_deflate_rsv1_marks_only_a_first_data_frame_rfc_7692_section_6() {
        let compressing = || Decoder::new(Role::Client, Limits::NONE, true);
        let mut dec = compressing();
        let wire = frame(0xc1, None, b"z");
        let (_, item) = dec.decode(&wire).unwrap();
        assert!(matches!(
            item,
            Some(Decoded::Data(DataChunk {
                compressed: true,
                ..
            }))
        ));
        // On a continuation, or a control frame: a protocol error.
        let mut wire = frame(0x41, None, b"a");
        wire.extend(frame(0xc0, None, b"b"));
        assert_eq!(
            decode(compressing, &wire),
            Err(ProtocolError::ReservedBitsSet { bits: 0b100 })
        );
        assert_eq!(
            decode(compressing, &frame(0xc9, None, b"")),
            Err(ProtocolError::ReservedBitsSet { bits: 0b100 })
        );
    }

    // §5.4: fragments.

    #[test]
    fn control_frames_may_come_between_fragments_section_5_4() {
        let mut wire = frame(0x01, None, b"Hel");
        wire.extend(frame(0x89, None, b"p"));
        wire.extend(frame(0x80, None, b"lo"));
        assert_eq!(
            decode(client, &wire),
            Ok(vec![
                Item::Ping(b"p".to_vec()),
                Item::Data(Opcode::Text, b"Hello".to_vec())
            ])
        );
    }

    #[test]
    fn a_continuation_needs_a_message_and_a_message_must_end_first_section_5_4() {
        assert_eq!(
            decode(client, &frame(0x80, None, b"x")),
            Err(ProtocolError::UnexpectedContinuation)
        );
        let mut wire = frame(0x01, None, b"a");
        wire.extend(frame(0x81, None, b"b"));
        assert_eq!(
            decode(client, &wire),
            Err(ProtocolError::ExpectedContinuation)
        );
    }

    #[test]
    fn an_empty_fragment_still_marks_its_message_first_and_last() {
        let mut wire = frame(0x02, None, b"");
        wire.extend(frame(0x80, None, b""));
        assert_eq!(
            decode(client, &wire),
            Ok(vec![Item::Data(Opcode::Binary, vec![])])
        );
    }

    // §5.5: control frames.

    #[test]
    fn control_frames_are_short_and_whole_section_5_5() {
        assert_eq!(
            decode(client, &frame(0x09, None, b"p")),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            decode(client, &frame(0x89, None, &[0; 126])),
            Err(ProtocolError::ControlFrameTooLong { len: 126 })
        );
        assert_eq!(
            decode(server, &frame(0x8a, KEY, &[1; 125])),
            Ok(vec![Item::Pong(vec![1; 125])])
        );
    }

    // §5.5.1: the Close frame.

    #[test]
    fn a_close_payload_is_checked_and_nothing_after_it_is_decoded_section_5_5_1() {
        let mut wire = frame(0x88, None, &[0x03, 0xe8, b'b', b'y', b'e']);
        wire.extend(frame(0x81, None, b"ignored"));
        assert_eq!(
            decode(client, &wire),
            Ok(vec![Item::Close(Some(CloseFrame::new(
                CloseCode::NormalClosure,
                "bye"
            )))])
        );
        assert_eq!(
            decode(client, &frame(0x88, None, &[3])),
            Err(ProtocolError::CloseTooShort)
        );
        assert_eq!(
            decode(client, &frame(0x88, None, &[0x03, 0xed])),
            Err(ProtocolError::InvalidCloseCode { code: 1005 })
        );
    }

    // Limits.

    #[test]
    fn frame_message_and_fragment_limits_fail_at_the_header() {
        let limits = Limits {
            max_frame_size: 4,
            max_message_size: 6,
            max_fragments: 2,
        };
        let limited = || Decoder::new(Role::Client, limits, false);
        assert_eq!(
            decode(limited, &frame(0x82, None, &[0; 5])),
            Err(ProtocolError::FrameTooBig { size: 5, limit: 4 })
        );
        let mut wire = frame(0x02, None, &[0; 4]);
        wire.extend(frame(0x80, None, &[0; 3]));
        assert_eq!(
            decode(limited, &wire),
            Err(ProtocolError::MessageTooBig { size: 7, limit: 6 })
        );
        let mut wire = frame(0x02, None, b"a");
        wire.extend(frame(0x00, None, b"b"));
        wire.extend(frame(0x80, None, b"c"));
        assert_eq!(
            decode(limited, &wire),
            Err(ProtocolError::TooManyFragments { limit: 2 })
        );
    }

    #[test]
    fn a_data_chunk_is_a_slice_of_the_input_still_masked() {
        let wire = frame(0x82, KEY, b"abc");
        let mut dec = server();
        let (n, item) = dec.decode(&wire).unwrap();
        assert_eq!(n, wire.len());
        let Some(Decoded::Data(chunk)) = item else {
            panic!("{item:?}")
        };
        assert_eq!(chunk.payload, &wire[6..]);
        assert!(chunk.first && chunk.last);
        assert!(!dec.mid_frame() && !dec.mid_message());
    }
}
