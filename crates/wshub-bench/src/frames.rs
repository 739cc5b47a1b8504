//! Client-side framing for load generation.
//!
//! [`FrameReader`] parses server frames in place from whatever the socket
//! returned, with wshub-proto's streaming [`Decoder`], handing out payload
//! slices as they arrive: a message is never copied or buffered by the
//! reader, so one read buffer per thread serves every connection, and a
//! 1 MiB echo is checked chunk by chunk. Only a header cut by a read (at most
//! 13 bytes) and a control payload (at most 125 bytes) are kept between
//! reads. [`OutBuf`] encodes the generator's own masked frames.

use wshub_proto::frame::{
    apply_mask, Decoded, Decoder, FrameHeader, Limits, Opcode, MAX_HEADER_LEN,
};
use wshub_proto::{ProtocolError, Role};

/// Something the server sent, in wire order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Item<'a> {
    /// Payload bytes of a data message, as they arrive. `first` is set on the
    /// message's first chunk, `last` on its last (both on a message that fits
    /// one chunk, and on an empty message).
    Data {
        /// The message's type, `Text` or `Binary`, also on its continuations.
        opcode: Opcode,
        payload: &'a [u8],
        first: bool,
        last: bool,
    },
    /// A Ping and its payload, to be answered with a Pong (RFC 6455 §5.5.2).
    Ping(&'a [u8]),
    /// A Pong.
    Pong,
    /// A Close frame and its code. Nothing after it is read (§5.5.1).
    Close(Option<u16>),
}

/// Parses server-to-client frames with the protocol's own [`Decoder`]:
/// every RFC 6455 §5.1–§5.5 check is the one wshub's connections make.
/// Limits are off (the server under test is trusted to size its messages).
#[derive(Debug)]
pub(crate) struct FrameReader {
    decoder: Decoder,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new(false)
    }
}

impl FrameReader {
    /// `compression`: permessage-deflate was negotiated, so RSV1 may mark a
    /// compressed data message (RFC 7692 §6). Its payload is handed out as
    /// it is, compressed.
    pub(crate) fn new(compression: bool) -> Self {
        Self {
            decoder: Decoder::new(Role::Client, Limits::NONE, compression),
        }
    }

    /// Whether the server's Close frame has arrived.
    pub(crate) fn closed(&self) -> bool {
        self.decoder.closed()
    }

    /// Parses every complete frame part in `data` (any split of the stream)
    /// and calls `on` for each [`Item`] in wire order. Bytes after a Close
    /// frame are ignored.
    ///
    /// # Errors
    /// The [`ProtocolError`] of [`Decoder::decode`] when the server broke
    /// RFC 6455. The stream cannot be parsed further.
    pub(crate) fn feed(
        &mut self,
        mut data: &[u8],
        on: &mut impl FnMut(Item<'_>),
    ) -> Result<(), ProtocolError> {
        while !data.is_empty() {
            let (n, item) = self.decoder.decode(data)?;
            data = &data[n..];
            match item {
                // Server frames are not masked (§5.1): the payload is the
                // bytes as they arrived.
                Some(Decoded::Data(chunk)) => on(Item::Data {
                    opcode: chunk.opcode,
                    payload: chunk.payload,
                    first: chunk.first,
                    last: chunk.last,
                }),
                Some(Decoded::Ping(payload)) => on(Item::Ping(payload)),
                Some(Decoded::Pong(_)) => on(Item::Pong),
                Some(Decoded::Close(close)) => on(Item::Close(close.map(|c| c.code.as_u16()))),
                None => {}
            }
        }
        Ok(())
    }
}

pub(crate) fn push_masked(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8], key: [u8; 4]) {
    push_masked_with_rsv1(out, opcode, payload, key, false);
}

/// [`push_masked`] with RSV1 set as asked: a permessage-deflate message whose
/// `payload` is already compressed (RFC 7692 §7.2.1).
pub(crate) fn push_masked_with_rsv1(
    out: &mut Vec<u8>,
    opcode: Opcode,
    payload: &[u8],
    key: [u8; 4],
    rsv1: bool,
) {
    let header = FrameHeader {
        fin: true,
        rsv1,
        rsv2: false,
        rsv3: false,
        opcode,
        masking_key: Some(key),
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut head);
    out.extend_from_slice(&head[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key);
}

/// A fresh masking key. A client "MUST pick a fresh masking key for each
/// frame" (§5.3) so that a script in a browser cannot predict the bytes on
/// the wire; a load generator has no such script, and the server cannot tell
/// a reused key from a fresh one.
pub(crate) fn masking_key() -> [u8; 4] {
    rand::random()
}

/// Bytes queued for the socket, written from the front, reused once empty:
/// no allocation at steady state.
#[derive(Debug, Default)]
pub(crate) struct OutBuf {
    bytes: Vec<u8>,
    pos: usize,
}

impl OutBuf {
    /// Bytes still to write.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.bytes[self.pos..]
    }

    /// Whether nothing is left to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.bytes.len()
    }

    /// Marks `n` bytes as written.
    pub(crate) fn advance(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.bytes.len() {
            self.bytes.clear();
            self.pos = 0;
        }
    }

    /// Frees the buffer once everything is written, where a message made it
    /// grow past what control frames need.
    pub(crate) fn release_if_large(&mut self) {
        if self.is_empty() && self.bytes.capacity() > 4096 {
            self.bytes = Vec::new();
        }
    }

    /// Queues a masked frame.
    pub(crate) fn push(&mut self, opcode: Opcode, payload: &[u8]) {
        push_masked(&mut self.bytes, opcode, payload, masking_key());
    }

    /// Queues a masked frame carrying a permessage-deflate compressed
    /// message (RSV1 set).
    pub(crate) fn push_compressed(&mut self, opcode: Opcode, compressed: &[u8]) {
        push_masked_with_rsv1(&mut self.bytes, opcode, compressed, masking_key(), true);
    }

    /// Queues a Pong answering a Ping's `payload` (§5.5.3).
    pub(crate) fn pong(&mut self, payload: &[u8]) {
        self.push(Opcode::Pong, payload);
    }

    /// Queues a Close 1000 (§5.5.1).
    pub(crate) fn close(&mut self) {
        self.push(Opcode::Close, &1000u16.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Data(Opcode, Vec<u8>, bool, bool),
        Ping(Vec<u8>),
        Pong,
        Close(Option<u16>),
    }

    fn parse_split(wire: &[u8], split: usize) -> Vec<Owned> {
        let mut reader = FrameReader::default();
        let mut items = Vec::new();
        let mut on = |item: Item<'_>| {
            items.push(match item {
                Item::Data {
                    opcode,
                    payload,
                    first,
                    last,
                } => Owned::Data(opcode, payload.to_vec(), first, last),
                Item::Ping(p) => Owned::Ping(p.to_vec()),
                Item::Pong => Owned::Pong,
                Item::Close(c) => Owned::Close(c),
            })
        };
        for chunk in wire.chunks(split.max(1)) {
            reader.feed(chunk, &mut on).unwrap();
        }
        items
    }

    /// Joins chunks into whole messages for comparison across splits.
    fn messages(items: Vec<Owned>) -> Vec<Owned> {
        let mut out: Vec<Owned> = Vec::new();
        let mut current: Option<(Opcode, Vec<u8>)> = None;
        for item in items {
            match item {
                Owned::Data(opcode, bytes, first, last) => {
                    if first {
                        current = Some((opcode, Vec::new()));
                    }
                    let (_, buf) = current.as_mut().unwrap();
                    buf.extend_from_slice(&bytes);
                    if last {
                        let (opcode, buf) = current.take().unwrap();
                        out.push(Owned::Data(opcode, buf, true, true));
                    }
                }
                other => out.push(other),
            }
        }
        out
    }

    #[test]
    fn parses_the_unmasked_frames_of_rfc_6455_section_5_7_at_every_split() {
        let mut wire = vec![0x81, 0x05, b'H', b'e', b'l', b'l', b'o'];
        // A fragmented "Hello" with a Ping in between.
        wire.extend_from_slice(&[0x01, 0x03, b'H', b'e', b'l']);
        wire.extend_from_slice(&[0x89, 0x05, b'H', b'e', b'l', b'l', b'o']);
        wire.extend_from_slice(&[0x80, 0x02, b'l', b'o']);
        // 256 bytes of binary in a 16-bit length.
        wire.extend_from_slice(&[0x82, 0x7E, 0x01, 0x00]);
        wire.extend((0..256).map(|i| i as u8));
        wire.extend_from_slice(&[0x8A, 0x00, 0x82, 0x00, 0x88, 0x02, 0x03, 0xE8]);
        let expected = vec![
            Owned::Data(Opcode::Text, b"Hello".to_vec(), true, true),
            Owned::Ping(b"Hello".to_vec()),
            Owned::Data(Opcode::Text, b"Hello".to_vec(), true, true),
            Owned::Data(
                Opcode::Binary,
                (0..256).map(|i| i as u8).collect(),
                true,
                true,
            ),
            Owned::Pong,
            Owned::Data(Opcode::Binary, Vec::new(), true, true),
            Owned::Close(Some(1000)),
        ];
        for split in 1..=wire.len() {
            assert_eq!(
                messages(parse_split(&wire, split)),
                expected,
                "split {split}"
            );
        }
    }

    #[test]
    fn masked_server_frames_and_stray_continuations_are_errors() {
        let mut reader = FrameReader::default();
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            reader.feed(&masked, &mut |_| {}),
            Err(ProtocolError::MaskedFrame)
        );
        let mut reader = FrameReader::default();
        assert_eq!(
            reader.feed(&[0x80, 0x00], &mut |_| {}),
            Err(ProtocolError::UnexpectedContinuation)
        );
    }

    #[test]
    fn nothing_is_read_after_a_close() {
        let mut reader = FrameReader::default();
        let mut count = 0;
        reader
            .feed(&[0x88, 0x00, 0x81, 0x01, b'x'], &mut |_| count += 1)
            .unwrap();
        assert!(reader.closed());
        assert_eq!(count, 1);
    }

    #[test]
    fn masked_frames_round_trip_through_the_protocol_core() {
        let mut out = Vec::new();
        push_masked(&mut out, Opcode::Text, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn out_buf_is_reused_once_written() {
        let mut out = OutBuf::default();
        out.close();
        assert_eq!(out.pending().len(), 8);
        out.advance(3);
        assert_eq!(out.pending().len(), 5);
        out.advance(5);
        assert!(out.is_empty());
        assert!(out.bytes.capacity() >= 8);
    }
}
