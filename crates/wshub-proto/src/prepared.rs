//! [`PreparedMessage`]: a message encoded once for many connections, the
//! fan-out's unit, with its permessage-deflate forms cached (RFC 7692 §7.2.1).

#[cfg(feature = "deflate")]
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
#[cfg(feature = "deflate")]
use bytes::BytesMut;

#[cfg(feature = "deflate")]
use crate::deflate::codec::{self, DeflateSettings};
use crate::frame::Opcode;
#[cfg(feature = "deflate")]
use crate::frame::{encode_frame, FrameHeader};
use crate::message::Message;

/// A message encoded once as an unmasked (server-to-client) frame, to be sent
/// to many connections without encoding it again: the fan-out's unit.
///
/// Cloning shares the bytes. With the `deflate` feature it also shares the
/// compressed forms (RFC 7692 §7.2.1), each computed at most once, on first
/// use, by whichever connection needs it first (see
/// [`PreparedMessage::deflated_frame`]).
#[derive(Debug, Clone)]
pub struct PreparedMessage {
    frame: Bytes,
    #[cfg(feature = "deflate")]
    pub(crate) opcode: Opcode,
    /// Bytes of frame header before the payload (at most 10).
    #[cfg(feature = "deflate")]
    header_len: u8,
    #[cfg(feature = "deflate")]
    deflated: Arc<DeflatedFrames>,
}

impl PartialEq for PreparedMessage {
    fn eq(&self, other: &Self) -> bool {
        self.frame == other.frame
    }
}

impl Eq for PreparedMessage {}

/// Distinct (window bits, level) pairs whose compressed frame a
/// [`PreparedMessage`] keeps; a fifth pair is compressed on every use.
#[cfg(feature = "deflate")]
const DEFLATED_SLOTS: usize = 4;

/// The compressed frames of one prepared message, filled in slot order.
#[cfg(feature = "deflate")]
#[derive(Debug, Default)]
struct DeflatedFrames {
    slots: [OnceLock<DeflatedFrame>; DEFLATED_SLOTS],
}

#[cfg(feature = "deflate")]
#[derive(Debug)]
struct DeflatedFrame {
    window_bits: u8,
    settings: DeflateSettings,
    frame: Bytes,
}

impl PreparedMessage {
    /// Encodes `message` as one unfragmented, unmasked frame.
    pub fn new(message: &Message) -> Self {
        let opcode = match message {
            Message::Text(_) => Opcode::Text,
            Message::Binary(_) => Opcode::Binary,
        };
        let payload = message.as_bytes();
        let frame = crate::frame::encode_unmasked_frame(opcode, payload);
        Self {
            #[cfg(feature = "deflate")]
            header_len: (frame.len() - payload.len()) as u8,
            frame,
            #[cfg(feature = "deflate")]
            opcode,
            #[cfg(feature = "deflate")]
            deflated: Arc::default(),
        }
    }

    /// The encoded frame, header included.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The payload, without the frame header.
    #[cfg(feature = "deflate")]
    pub(crate) fn payload(&self) -> &[u8] {
        &self.frame[usize::from(self.header_len)..]
    }

    /// The frame compressed for a connection whose outbound direction has no
    /// context takeover (RFC 7692 §7.1.1.1): RSV1 set, the payload deflated
    /// with a fresh state and a window of `2^window_bits` bytes (8–15,
    /// clamped) at compression `level` (0–9) and memory level `mem_level`
    /// (1–9; see [`DeflateConfig`](crate::deflate::DeflateConfig)), trailer
    /// removed (§7.2.1). Compressed even
    /// when that does not make it smaller: at or above the threshold every
    /// message is sent compressed, as Node's `ws` and python-websockets do.
    ///
    /// Computed once per distinct (`window_bits`, `level`, `mem_level`), for
    /// the first four asked for, and shared by every clone: all recipients with
    /// the same parameters get the same bytes.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn deflated_frame(&self, window_bits: u8, level: u32, mem_level: u8) -> Bytes {
        let window_bits = window_bits.clamp(
            crate::deflate::MIN_WINDOW_BITS,
            crate::deflate::MAX_WINDOW_BITS,
        );
        let settings = DeflateSettings::new(level, mem_level);
        for slot in &self.deflated.slots {
            // Slots fill in order, so an empty slot means no later one holds
            // these parameters; a racing thread that filled it first is
            // waited for.
            let entry = slot.get_or_init(|| DeflatedFrame {
                window_bits,
                settings,
                frame: self.compress(window_bits, settings),
            });
            if entry.window_bits == window_bits && entry.settings == settings {
                return entry.frame.clone();
            }
        }
        self.compress(window_bits, settings)
    }

    #[cfg(feature = "deflate")]
    fn compress(&self, window_bits: u8, settings: DeflateSettings) -> Bytes {
        #[cfg(test)]
        tests::COMPRESSIONS.with(|n| n.set(n.get() + 1));
        let payload = self.payload();
        let compressed = codec::compress_once(payload, window_bits, settings);
        let mut out = BytesMut::with_capacity(crate::frame::encoded_len(compressed.len(), false));
        let header = FrameHeader {
            fin: true,
            rsv1: true,
            rsv2: false,
            rsv3: false,
            opcode: self.opcode,
            masking_key: None,
            payload_len: 0,
        };
        encode_frame(&mut out, header, &compressed);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "deflate")]
    use super::*;
    #[cfg(feature = "deflate")]
    use crate::{Config, Connection, Role};

    #[cfg(feature = "deflate")]
    thread_local! {
        /// Compressions done by `PreparedMessage` on this thread.
        pub(super) static COMPRESSIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    #[cfg(feature = "deflate")]
    fn server_with(config: crate::deflate::DeflateConfig) -> Connection {
        let offer = crate::deflate::offer(&crate::deflate::DeflateConfig::client());
        let (agreement, _) = crate::deflate::negotiate([offer.as_str()], &config).unwrap();
        Connection::new(Role::Server, Config::default().deflate(Some(agreement)))
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn a_prepared_message_is_compressed_once_for_every_recipient_with_the_same_parameters() {
        let text = "{\"room\":\"lobby\",\"message\":\"hello everyone\"} ".repeat(100);
        let message = PreparedMessage::new(&Message::text(text));
        let before = COMPRESSIONS.with(|n| n.get());
        let mut outputs = Vec::new();
        for _ in 0..10 {
            let mut server = server_with(crate::deflate::DeflateConfig::server());
            server.send_prepared(&message.clone()).unwrap();
            outputs.push(server.take_outgoing());
        }
        assert_eq!(COMPRESSIONS.with(|n| n.get()) - before, 1);
        assert!(outputs.iter().all(|o| o == &outputs[0]));
        assert_eq!(outputs[0][0], 0xc1, "FIN, RSV1, text");
        assert!(outputs[0].len() < message.frame().len() / 10);
        let a = message.deflated_frame(15, 2, 8);
        let b = message.clone().deflated_frame(15, 2, 8);
        assert_eq!(a.as_ptr(), b.as_ptr(), "one shared buffer");
        assert_eq!(&a[..], &outputs[0][..]);

        // Other window bits: a second compression, then shared too.
        let small = crate::deflate::DeflateConfig::server().server_max_window_bits(10);
        for _ in 0..3 {
            server_with(small.clone()).send_prepared(&message).unwrap();
        }
        assert_eq!(COMPRESSIONS.with(|n| n.get()) - before, 2);
        // Five pairs: the fifth (after 15/2, 10/2, 9/2, 8/2) is not cached.
        for bits in [9, 8, 12, 12] {
            message.deflated_frame(bits, 2, 8);
        }
        assert_eq!(COMPRESSIONS.with(|n| n.get()) - before, 6);
    }

    #[test]
    fn connections_and_prepared_messages_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<crate::PreparedMessage>();
        send_sync::<crate::Connection>();
    }
}
