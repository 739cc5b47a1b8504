//! Data chunks → whole messages: fragments reassembled (RFC 6455 §5.4), text
//! checked as UTF-8 as it arrives (§8.1), compressed messages inflated
//! (RFC 7692 §7.2.2) under the message size limit.

use bytes::{Bytes, BytesMut};

#[cfg(feature = "deflate")]
use crate::deflate::codec::{InflateError, Inflater};
#[cfg(feature = "deflate")]
use crate::deflate::DeflateDirection;
use crate::error::ProtocolError;
#[cfg(feature = "deflate")]
use crate::frame::apply_mask_offset;
use crate::frame::{apply_mask, DataChunk, Opcode};
use crate::message::{Message, Utf8Bytes};
use crate::utf8::Utf8Validator;

/// Smallest growth of the message buffer, in bytes, when it is new or was
/// given back: a connection that gets one small message (a hub's join) keeps
/// little while it waits for the idle shrink.
const MIN_MESSAGE_BLOCK: usize = 256;

/// Largest block the growth doubles up to while messages keep arriving, in
/// bytes: a busy connection's small messages then share one buffer (an
/// allocation per block, not per message).
const MAX_MESSAGE_BLOCK: usize = 4096;

/// Most bytes reserved ahead for the rest of a frame, on the say-so of its
/// length field, before those bytes arrive.
const PRESIZE_LIMIT: usize = 64 * 1024;

/// Bytes of masked compressed payload unmasked at a time on the stack
/// before inflating, so a server never copies a compressed frame whole.
#[cfg(feature = "deflate")]
const UNMASK_BLOCK: usize = 4096;

/// Builds messages from the [`DataChunk`]s of a
/// [`Decoder`](crate::frame::Decoder).
#[derive(Debug)]
pub(crate) struct Reassembler {
    /// The uncompressed message in progress, unmasked; blocks of it are
    /// split off as messages complete.
    message: BytesMut,
    /// Bytes of `message`'s allocation when it last grew (saturating). Once
    /// a message is split off, `message.capacity()` counts only what is left
    /// past it, down to 0 for a message that filled its block, while
    /// `message` keeps the whole allocation alive (to reuse it in place).
    /// Kept so that [`Reassembler::capacity`] does not under-report it, and a
    /// driver's idle shrink sees it.
    held: u32,
    /// The next growth of `message`, from [`MIN_MESSAGE_BLOCK`] doubling to
    /// [`MAX_MESSAGE_BLOCK`].
    message_block: u16,
    utf8: Utf8Validator,
    /// Present when permessage-deflate was negotiated; boxed so that a
    /// connection without it stays small.
    #[cfg(feature = "deflate")]
    inflate: Option<Box<Inbound>>,
}

/// The inbound half of permessage-deflate (RFC 7692 §7.2.2).
#[cfg(feature = "deflate")]
#[derive(Debug)]
struct Inbound {
    inflater: Inflater,
    /// The compressed message being received, inflated so far.
    inflated: Vec<u8>,
    /// Bytes; a compressed message is checked against it as it inflates.
    max_message_size: usize,
}

impl Reassembler {
    pub(crate) fn new() -> Self {
        Self {
            message: BytesMut::new(),
            held: 0,
            message_block: MIN_MESSAGE_BLOCK as u16,
            utf8: Utf8Validator::default(),
            #[cfg(feature = "deflate")]
            inflate: None,
        }
    }

    /// Inflates the messages that arrive compressed, as `direction` says
    /// the peer compresses them, up to `max_message_size` bytes each.
    #[cfg(feature = "deflate")]
    pub(crate) fn with_inflate(
        mut self,
        direction: DeflateDirection,
        max_message_size: usize,
    ) -> Self {
        self.inflate = Some(Box::new(Inbound {
            inflater: Inflater::new(direction),
            inflated: Vec::new(),
            max_message_size,
        }));
        self
    }

    /// Adds a chunk; hands the message it completes, if it is the last, to
    /// `deliver`.
    ///
    /// # Errors
    /// [`ProtocolError::InvalidUtf8`] for text that is not UTF-8 (found as
    /// early as the bytes show it), [`ProtocolError::InvalidCompressedData`]
    /// and [`ProtocolError::MessageTooBig`] for a compressed message that
    /// does not inflate, or inflates past the limit. Call
    /// [`Reassembler::reset`] after one.
    #[inline]
    pub(crate) fn push(
        &mut self,
        chunk: &DataChunk<'_>,
        deliver: impl FnOnce(Message),
    ) -> Result<(), ProtocolError> {
        if chunk.first && chunk.last && !chunk.compressed {
            // Most messages are one frame that arrives whole: no state
            // between chunks.
            return self.whole(chunk.opcode, chunk.payload, chunk.masking_key, deliver);
        }
        if let Some(message) = self.push_part(chunk)? {
            deliver(message);
        }
        Ok(())
    }

    /// A whole uncompressed message: `payload` as on the wire, masked with
    /// `masking_key` if any, from key offset 0. Hands it to `deliver`.
    ///
    /// # Errors
    /// [`ProtocolError::InvalidUtf8`] for text that is not UTF-8.
    #[inline(always)]
    pub(crate) fn whole(
        &mut self,
        opcode: Opcode,
        payload: &[u8],
        masking_key: Option<[u8; 4]>,
        deliver: impl FnOnce(Message),
    ) -> Result<(), ProtocolError> {
        if self.message.capacity() < payload.len() {
            self.grow(payload.len());
        }
        self.message.extend_from_slice(payload);
        if let Some(key) = masking_key {
            apply_mask(&mut self.message, key);
        }
        let payload = self.message.split().freeze();
        if opcode == Opcode::Text {
            crate::utf8::check_message(&payload)
                .map_err(|at| ProtocolError::InvalidUtf8 { offset: at as u64 })?;
        }
        deliver(message(opcode, payload));
        Ok(())
    }

    fn push_part(&mut self, chunk: &DataChunk<'_>) -> Result<Option<Message>, ProtocolError> {
        #[cfg(feature = "deflate")]
        if chunk.compressed {
            return self.push_compressed(chunk);
        }
        // Grows with the bytes that arrive and, for the rest of the frame, by
        // at most PRESIZE_LIMIT on the say-so of its length field; by a block
        // at least, so small messages share one buffer (an allocation per
        // block, not two per message), and a block whose messages were all
        // dropped is reused in place.
        let ahead = usize::try_from(chunk.frame_remaining)
            .unwrap_or(usize::MAX)
            .min(PRESIZE_LIMIT);
        let want = chunk.payload.len() + ahead;
        if self.message.capacity() - self.message.len() < want {
            self.grow(want);
        }
        chunk.unmask_into(&mut self.message);
        if chunk.opcode == Opcode::Text {
            self.utf8
                .feed(&self.message)
                .map_err(|at| ProtocolError::InvalidUtf8 { offset: at as u64 })?;
        }
        if !chunk.last {
            return Ok(None);
        }
        let payload = self.message.split().freeze();
        if chunk.opcode == Opcode::Text {
            self.utf8
                .finish(&payload)
                .map_err(|at| ProtocolError::InvalidUtf8 { offset: at as u64 })?;
        }
        Ok(Some(message(chunk.opcode, payload)))
    }

    /// A chunk of a compressed message: unmasked in blocks on the stack and
    /// inflated, the limit counted on inflated bytes.
    #[cfg(feature = "deflate")]
    fn push_compressed(&mut self, chunk: &DataChunk<'_>) -> Result<Option<Message>, ProtocolError> {
        let Some(inbound) = self.inflate.as_deref_mut() else {
            unreachable!("the decoder accepts RSV1 only with permessage-deflate negotiated");
        };
        let Inbound {
            inflater,
            inflated,
            max_message_size: limit,
        } = inbound;
        let limit = *limit;
        let result = match chunk.masking_key {
            None => inflater.inflate(chunk.payload, inflated, limit),
            Some(key) => {
                let mut block = [0u8; UNMASK_BLOCK];
                chunk
                    .payload
                    .chunks(UNMASK_BLOCK)
                    .enumerate()
                    .try_for_each(|(i, piece)| {
                        let block = &mut block[..piece.len()];
                        block.copy_from_slice(piece);
                        apply_mask_offset(block, key, chunk.offset + i * UNMASK_BLOCK);
                        inflater.inflate(block, inflated, limit)
                    })
            }
        };
        result.map_err(|err| inflate_error(err, limit))?;
        if chunk.opcode == Opcode::Text {
            self.utf8
                .feed(inflated)
                .map_err(|at| ProtocolError::InvalidUtf8 { offset: at as u64 })?;
        }
        if !chunk.last {
            return Ok(None);
        }
        inflater
            .finish(inflated, limit)
            .map_err(|err| inflate_error(err, limit))?;
        let payload = Bytes::from(std::mem::take(inflated));
        if chunk.opcode == Opcode::Text {
            self.utf8
                .finish(&payload)
                .map_err(|at| ProtocolError::InvalidUtf8 { offset: at as u64 })?;
        }
        Ok(Some(message(chunk.opcode, payload)))
    }

    /// Makes room for `additional` bytes of message, by a block at least.
    fn grow(&mut self, additional: usize) {
        let block = usize::from(self.message_block);
        self.message.reserve(additional.max(block));
        self.held = u32::try_from(self.message.capacity()).unwrap_or(u32::MAX);
        self.message_block = (block * 2).min(MAX_MESSAGE_BLOCK) as u16;
    }

    /// Forgets the message in progress, after an error.
    pub(crate) fn reset(&mut self) {
        self.message = BytesMut::new();
        self.held = 0;
        self.utf8.reset();
        #[cfg(feature = "deflate")]
        if let Some(inbound) = &mut self.inflate {
            inbound.inflated = Vec::new();
            inbound.inflater.reset();
        }
    }

    /// Gives back the buffers when no message is in progress
    /// (`mid_message` false).
    pub(crate) fn shrink(&mut self, mid_message: bool) {
        if mid_message {
            return;
        }
        if self.message.is_empty() {
            self.message = BytesMut::new();
            self.held = 0;
            self.message_block = MIN_MESSAGE_BLOCK as u16;
        }
        #[cfg(feature = "deflate")]
        if let Some(inbound) = &mut self.inflate {
            inbound.inflated = Vec::new();
        }
    }

    /// Bytes held in buffers: the message's allocation (see `held`) and,
    /// with permessage-deflate, the inflated message in progress.
    pub(crate) fn capacity(&self) -> usize {
        let message = self.message.capacity().max(self.held as usize);
        #[cfg(feature = "deflate")]
        if let Some(inbound) = &self.inflate {
            return message + inbound.inflated.capacity();
        }
        message
    }

    /// Bytes of inflate state (the zlib state and the message inflated so far).
    #[cfg(feature = "deflate")]
    pub(crate) fn inflate_memory(&self) -> usize {
        self.inflate
            .as_ref()
            .map_or(0, |i| i.inflater.memory() + i.inflated.capacity())
    }

    /// Bytes of the message in progress held so far.
    pub(crate) fn buffered(&self) -> usize {
        self.message.len()
    }
}

/// A message whose payload is complete and, for Text, already checked to be
/// whole UTF-8 (RFC 6455 §8.1).
#[inline]
fn message(opcode: Opcode, payload: Bytes) -> Message {
    if opcode == Opcode::Text {
        Message::Text(Utf8Bytes::from_validated(payload))
    } else {
        Message::Binary(payload)
    }
}

#[cfg(feature = "deflate")]
fn inflate_error(err: InflateError, limit: usize) -> ProtocolError {
    match err {
        InflateError::Corrupt => ProtocolError::InvalidCompressedData,
        InflateError::TooBig { size } => ProtocolError::MessageTooBig {
            size,
            limit: limit as u64,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Reassembler {
        /// `push`, with the message it completes returned.
        fn push_one(&mut self, chunk: &DataChunk<'_>) -> Result<Option<Message>, ProtocolError> {
            let mut out = None;
            self.push(chunk, |m| out = Some(m))?;
            Ok(out)
        }
    }

    fn chunk(opcode: Opcode, payload: &[u8], first: bool, last: bool) -> DataChunk<'_> {
        DataChunk {
            opcode,
            compressed: false,
            payload,
            masking_key: None,
            offset: 0,
            frame_remaining: 0,
            first,
            last,
        }
    }

    // RFC 6455 §5.4: fragments make one message.

    #[test]
    fn fragments_are_joined_into_one_message_section_5_4() {
        let mut r = Reassembler::new();
        assert_eq!(
            r.push_one(&chunk(Opcode::Text, b"Hel", true, false)),
            Ok(None)
        );
        assert_eq!(
            r.push_one(&chunk(Opcode::Text, b"", false, false)),
            Ok(None)
        );
        assert_eq!(
            r.push_one(&chunk(Opcode::Text, b"lo", false, true)),
            Ok(Some(Message::text("Hello")))
        );
        assert_eq!(
            r.push_one(&chunk(Opcode::Binary, &[1, 2], true, true)),
            Ok(Some(Message::binary(vec![1, 2])))
        );
    }

    #[test]
    fn a_masked_chunk_is_unmasked_from_its_offset_in_the_frame_section_5_3() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut wire = *b"Hello";
        crate::frame::apply_mask(&mut wire, key);
        let mut r = Reassembler::new();
        let first = DataChunk {
            masking_key: Some(key),
            frame_remaining: 3,
            ..chunk(Opcode::Text, &wire[..2], true, false)
        };
        let rest = DataChunk {
            masking_key: Some(key),
            offset: 2,
            ..chunk(Opcode::Text, &wire[2..], false, true)
        };
        assert_eq!(r.push_one(&first), Ok(None));
        assert_eq!(r.push_one(&rest), Ok(Some(Message::text("Hello"))));
    }

    // §8.1: text is UTF-8, checked as it arrives.

    #[test]
    fn invalid_utf8_fails_at_the_chunk_that_shows_it_section_8_1() {
        let mut r = Reassembler::new();
        assert_eq!(
            r.push_one(&chunk(Opcode::Text, b"ok", true, false)),
            Ok(None)
        );
        assert_eq!(
            r.push_one(&chunk(Opcode::Text, &[0xff], false, false)),
            Err(ProtocolError::InvalidUtf8 { offset: 2 })
        );
    }

    #[test]
    fn a_code_point_may_span_fragments_but_not_end_the_message_section_8_1() {
        let euro = "€".as_bytes();
        let mut r = Reassembler::new();
        assert_eq!(
            r.push_one(&chunk(Opcode::Text, &euro[..1], true, false)),
            Ok(None)
        );
        assert_eq!(
            r.push_one(&chunk(Opcode::Text, &euro[1..], false, true)),
            Ok(Some(Message::text("€")))
        );
        assert_eq!(
            r.push_one(&chunk(Opcode::Text, &euro[..2], true, false)),
            Ok(None)
        );
        assert_eq!(
            r.push_one(&chunk(Opcode::Text, b"", false, true)),
            Err(ProtocolError::InvalidUtf8 { offset: 0 })
        );
    }

    // RFC 7692 §7.2.2: compressed messages inflate, the limit on inflated bytes.

    #[cfg(feature = "deflate")]
    fn inflating(limit: usize) -> Reassembler {
        let direction = DeflateDirection {
            no_context_takeover: true,
            max_window_bits: 15,
        };
        Reassembler::new().with_inflate(direction, limit)
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn the_compressed_hello_of_rfc_7692_section_7_2_3_1_inflates() {
        let compressed = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut r = inflating(1024);
        let first = DataChunk {
            compressed: true,
            ..chunk(Opcode::Text, &compressed[..3], true, false)
        };
        let rest = DataChunk {
            compressed: true,
            ..chunk(Opcode::Text, &compressed[3..], false, true)
        };
        assert_eq!(r.push_one(&first), Ok(None));
        assert_eq!(r.push_one(&rest), Ok(Some(Message::text("Hello"))));
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn a_message_that_inflates_past_the_limit_fails_rfc_7692_section_7_2_2() {
        let compressed = crate::deflate::codec::compress_once(
            &[0u8; 10_000],
            15,
            crate::deflate::codec::DeflateSettings::new(6, 8),
        );
        let mut r = inflating(1000);
        let whole = DataChunk {
            compressed: true,
            ..chunk(Opcode::Binary, &compressed, true, true)
        };
        assert!(matches!(
            r.push_one(&whole),
            Err(ProtocolError::MessageTooBig { limit: 1000, .. })
        ));
    }
}
