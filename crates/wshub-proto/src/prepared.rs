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

/// Distinct (window bits, level, memory level) forms whose compressed frame a
/// [`PreparedMessage`] keeps; a fifth is compressed on every use. One server
/// needs at most three: [`negotiate`](crate::deflate::negotiate) gives every
/// client one of three windows, and the levels are the server's own.
#[cfg(feature = "deflate")]
const DEFLATED_SLOTS: usize = 4;

/// The compressed frames of one prepared message. A slot is filled only
/// once every earlier one is, so the first empty slot ends a search.
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

    /// The payload, without the frame header: the message's bytes (for a
    /// text message, its UTF-8).
    pub fn payload(&self) -> &[u8] {
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
    /// Kept for the first four distinct (`window_bits`, `level`,
    /// `mem_level`) asked for and shared by every clone: all recipients with
    /// the same parameters get the same bytes. No lock is held while
    /// compressing, so a thread never waits for another's compression: two
    /// threads that ask for a new form at once both compress it, the first
    /// to finish keeps its copy, and the other uses that one and drops its
    /// own.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn deflated_frame(&self, window_bits: u8, level: u32, mem_level: u8) -> Bytes {
        let window_bits = window_bits.clamp(
            crate::deflate::MIN_WINDOW_BITS,
            crate::deflate::MAX_WINDOW_BITS,
        );
        let settings = DeflateSettings::new(level, mem_level);
        let wanted =
            |entry: &DeflatedFrame| entry.window_bits == window_bits && entry.settings == settings;
        let slots = &self.deflated.slots;
        let mut free = slots.len();
        for (i, slot) in slots.iter().enumerate() {
            match slot.get() {
                Some(entry) if wanted(entry) => return entry.frame.clone(),
                Some(_) => {}
                None => {
                    free = i;
                    break;
                }
            }
        }
        let mut entry = DeflatedFrame {
            window_bits,
            settings,
            frame: self.compress(window_bits, settings),
        };
        // Publish in the first free slot. `set` waits only for another
        // thread's `set` (a move), never for a compression.
        for slot in &slots[free..] {
            let frame = entry.frame.clone();
            match slot.set(entry) {
                Ok(()) => return frame,
                Err(ours) => match slot.get() {
                    // Another thread published the same form first.
                    Some(theirs) if wanted(theirs) => return theirs.frame.clone(),
                    _ => entry = ours,
                },
            }
        }
        entry.frame
    }

    #[cfg(feature = "deflate")]
    fn compress(&self, window_bits: u8, settings: DeflateSettings) -> Bytes {
        #[cfg(test)]
        tests::on_compress();
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
    use std::sync::mpsc;
    #[cfg(feature = "deflate")]
    use std::time::Duration;

    /// "Started" to send, "go" to wait for.
    #[cfg(feature = "deflate")]
    type Gate = (mpsc::Sender<()>, mpsc::Receiver<()>);

    #[cfg(feature = "deflate")]
    thread_local! {
        /// Compressions done by `PreparedMessage` on this thread.
        static COMPRESSIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        /// When set, this thread's next compression says it has started
        /// (first channel) and waits for a go (second) before it runs.
        static GATE: std::cell::RefCell<Option<Gate>> = const { std::cell::RefCell::new(None) };
    }

    /// Counts a compression and holds it at this thread's gate, if any.
    #[cfg(feature = "deflate")]
    pub(super) fn on_compress() {
        COMPRESSIONS.with(|n| n.set(n.get() + 1));
        if let Some((started, go)) = GATE.with(|g| g.borrow_mut().take()) {
            started.send(()).unwrap();
            go.recv_timeout(WAIT).unwrap();
        }
    }

    /// Bound on every wait in these tests.
    #[cfg(feature = "deflate")]
    const WAIT: Duration = Duration::from_secs(10);

    /// Starts a thread that asks `message` for its `window_bits` form and is
    /// held inside the compression until the returned sender says go.
    #[cfg(feature = "deflate")]
    fn compress_held(
        message: &PreparedMessage,
        window_bits: u8,
    ) -> (mpsc::Sender<()>, std::thread::JoinHandle<Bytes>) {
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel();
        let message = message.clone();
        let thread = std::thread::spawn(move || {
            GATE.with(|g| *g.borrow_mut() = Some((started_tx, go_rx)));
            message.deflated_frame(window_bits, 2, 8)
        });
        started_rx
            .recv_timeout(WAIT)
            .expect("the held thread starts compressing");
        (go_tx, thread)
    }

    /// Asks for `window_bits` on another thread; `Some` if that finished
    /// within [`WAIT`].
    #[cfg(feature = "deflate")]
    fn compress_elsewhere(
        message: &PreparedMessage,
        window_bits: u8,
    ) -> (Option<Bytes>, std::thread::JoinHandle<()>) {
        let (done_tx, done_rx) = mpsc::channel();
        let message = message.clone();
        let thread = std::thread::spawn(move || {
            let _ = done_tx.send(message.deflated_frame(window_bits, 2, 8));
        });
        (done_rx.recv_timeout(WAIT).ok(), thread)
    }

    #[cfg(feature = "deflate")]
    fn sample() -> PreparedMessage {
        PreparedMessage::new(&Message::text("a line of JSON-like text; ".repeat(200)))
    }

    /// RFC 7692 §7.2.1 without context takeover: each form is a function of
    /// the payload and the parameters alone, so one thread's compression
    /// need never wait for another's.
    #[cfg(feature = "deflate")]
    #[test]
    fn a_form_is_never_waited_for_by_a_thread_that_wants_another() {
        let message = sample();
        let (go, held) = compress_held(&message, 15);
        // The held thread is inside the first slot's compression.
        let (other, other_thread) = compress_elsewhere(&message, 9);
        go.send(()).unwrap();
        let fifteen = held.join().unwrap();
        other_thread.join().unwrap();
        let nine = other.expect("the 9-bit form did not wait for the 15-bit one");
        assert_eq!(message.deflated_frame(15, 2, 8), fifteen);
        assert_eq!(message.deflated_frame(9, 2, 8), nine);
        assert_ne!(fifteen, nine);
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn two_threads_racing_for_one_form_end_up_sharing_one_copy() {
        let message = sample();
        let (go, held) = compress_held(&message, 15);
        let (other, other_thread) = compress_elsewhere(&message, 15);
        let other = other.expect("the second thread compressed on its own");
        other_thread.join().unwrap();
        go.send(()).unwrap();
        // The held thread lost the race: it returns the copy published first.
        let held = held.join().unwrap();
        assert_eq!(held.as_ptr(), other.as_ptr(), "one shared buffer");
        let again = message.deflated_frame(15, 2, 8);
        assert_eq!(again.as_ptr(), other.as_ptr());
        // The lost copy took no slot: three more forms are still kept.
        let before = COMPRESSIONS.with(|n| n.get());
        for bits in [9, 10, 11, 9, 10, 11] {
            message.deflated_frame(bits, 2, 8);
        }
        assert_eq!(COMPRESSIONS.with(|n| n.get()) - before, 3);
    }

    /// However many window sizes the clients offer, a server's clients get
    /// at most three (RFC 7692 §7.1.2.1, see `deflate::negotiate`), so a
    /// room message is compressed at most three times.
    #[cfg(feature = "deflate")]
    #[test]
    fn clients_offering_every_window_cost_at_most_three_compressions() {
        let message = sample();
        let before = COMPRESSIONS.with(|n| n.get());
        let mut outputs = std::collections::HashSet::new();
        for bits in [15, 14, 13, 12, 11, 10, 9, 8] {
            let client = crate::deflate::DeflateConfig::client().server_max_window_bits(bits);
            let offer = crate::deflate::offer(&client);
            let (agreement, _) = crate::deflate::negotiate(
                [offer.as_str()],
                &crate::deflate::DeflateConfig::server(),
            )
            .unwrap();
            let mut server =
                Connection::new(Role::Server, Config::default().deflate(Some(agreement)));
            server.send_prepared(&message).unwrap();
            outputs.insert(server.take_outgoing());
        }
        assert_eq!(COMPRESSIONS.with(|n| n.get()) - before, 3);
        assert_eq!(outputs.len(), 3);
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
