//! The output queue: frames encoded for the wire, in the order they must go
//! out, with long payloads shared rather than copied, Pongs owed for Pings
//! received, and the one Close that ends what we send (RFC 6455 §5.5.1).

use std::collections::VecDeque;
use std::fmt;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use rand::{rngs::StdRng, RngCore, SeedableRng};

use crate::close::CloseFrame;
use crate::frame::{encode_frame, encode_header, FrameHeader, Opcode};
use crate::role::Role;

/// Bytes. An unmasked data frame (server to client, RFC 6455 §5.1) with a
/// payload at least this long is queued with its payload shared, not
/// copied: the output then holds a reference to the message's `Bytes`, and
/// [`Connection::outgoing_vectored`](crate::Connection::outgoing_vectored)
/// hands it to a vectored write. Below it, copying into the output buffer
/// costs less than another slice.
pub const SHARED_PAYLOAD_MIN: usize = 2048;

/// Most Pongs waiting to be written before older ones are dropped. RFC 6455
/// §5.5.3 lets an endpoint answer "only the most recently processed Ping", so a
/// peer that floods Pings without reading cannot grow our output.
const MAX_PENDING_PONGS: usize = 16;

/// A source of masking keys for a client connection.
pub(crate) type MaskKeySource = Box<dyn FnMut() -> [u8; 4] + Send + Sync>;

/// What waits to be written, as [`Connection::backlog`](crate::Connection::backlog)
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Bytes queued and not yet written or taken, like the browser's
    /// `bufferedAmount` (owed Pongs not counted): what backpressure is
    /// measured in.
    pub bytes: usize,
    /// A frame the protocol requires waits: a Pong owed, or a Close or Ping
    /// queued. An async driver writes it without waiting for the
    /// application to flush.
    pub control: bool,
}

impl Backlog {
    /// Whether nothing at all waits to be written.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.bytes == 0 && !self.control
    }
}

/// Frames queued for the wire, oldest first.
pub(crate) struct Outgoing {
    /// Output written before `out`, oldest first: frames whose payload is
    /// shared with the caller's `Bytes` rather than copied (see
    /// [`SHARED_PAYLOAD_MIN`]), and the bytes `out` held when each was queued.
    shared: VecDeque<Bytes>,
    /// Bytes in `shared`.
    shared_len: usize,
    out: BytesMut,
    /// The largest `out.capacity()` seen before a partial write moved its
    /// start, in bytes (saturating): after such a write `out.capacity()`
    /// counts only what lies past the new start, while the whole allocation
    /// stays held until [`Outgoing::shrink`]. Kept so that [`Outgoing::capacity`]
    /// does not under-report it, and a driver's idle shrink sees it.
    held: u32,
    /// A control frame sits in `out`, so `out` should be written promptly.
    control_queued: bool,
    /// Payloads of the Pongs owed, written once the output has drained.
    pending_pongs: VecDeque<Bytes>,
    /// Our Close is queued: nothing more may be (§5.5.1).
    close_sent: bool,
    /// `Some` for a client, which masks every frame (§5.3).
    mask_keys: Option<MaskKeySource>,
}

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outgoing")
            .field("bytes", &self.len())
            .field("pending_pongs", &self.pending_pongs.len())
            .field("close_sent", &self.close_sent)
            .finish_non_exhaustive()
    }
}

impl Outgoing {
    /// An empty queue. A client draws its masking keys from a ChaCha CSPRNG
    /// seeded by the operating system, as §5.3 asks ("derived from a strong
    /// source of entropy").
    pub(crate) fn new(role: Role) -> Self {
        let mask_keys: Option<MaskKeySource> = match role {
            Role::Client => {
                let mut rng = StdRng::from_entropy();
                Some(Box::new(move || {
                    let mut key = [0u8; 4];
                    rng.fill_bytes(&mut key);
                    key
                }))
            }
            Role::Server => None,
        };
        Self {
            shared: VecDeque::new(),
            shared_len: 0,
            out: BytesMut::new(),
            held: 0,
            control_queued: false,
            pending_pongs: VecDeque::new(),
            close_sent: false,
            mask_keys,
        }
    }

    /// Masks with keys from `keys` (deterministic output for tests).
    pub(crate) fn set_masking_keys(&mut self, keys: MaskKeySource) {
        self.mask_keys = Some(keys);
    }

    /// Whether frames are masked (a client's, §5.3).
    #[inline]
    pub(crate) fn masks(&self) -> bool {
        self.mask_keys.is_some()
    }

    #[inline]
    pub(crate) fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// A header for a frame we send, with a fresh masking key when we mask.
    #[inline]
    fn header(&mut self, opcode: Opcode, fin: bool, rsv1: bool) -> FrameHeader {
        FrameHeader {
            fin,
            rsv1,
            rsv2: false,
            rsv3: false,
            opcode,
            masking_key: self.mask_keys.as_mut().map(|next| next()),
            payload_len: 0,
        }
    }

    /// Before a frame is queued, the Pongs owed for Pings received earlier
    /// go first, in wire order. The caller has checked that our Close is
    /// not queued yet.
    #[inline]
    fn before_frame(&mut self) {
        debug_assert!(!self.close_sent, "nothing is queued after our Close");
        if !self.pending_pongs.is_empty() {
            self.write_pongs();
        }
    }

    /// Queues a frame, its payload copied (and masked if we mask).
    #[inline]
    pub(crate) fn frame(&mut self, opcode: Opcode, fin: bool, rsv1: bool, payload: &[u8]) {
        self.before_frame();
        self.control_queued |= opcode.is_control();
        let header = self.header(opcode, fin, rsv1);
        encode_frame(&mut self.out, header, payload);
    }

    /// Queues an unmasked data frame whose payload is written from `payload`
    /// itself, not copied. Only for an endpoint that does not mask.
    pub(crate) fn frame_shared(&mut self, opcode: Opcode, payload: &Bytes) {
        debug_assert!(!self.masks());
        self.before_frame();
        let header = self.header(opcode, true, false);
        encode_header(&mut self.out, header, payload.len());
        self.push_shared(payload.clone());
    }

    /// Queues a frame encoded already (a prepared message's): by reference
    /// when it is long, else copied.
    pub(crate) fn encoded(&mut self, frame: &Bytes) {
        self.before_frame();
        if frame.len() >= SHARED_PAYLOAD_MIN {
            self.push_shared(frame.clone());
        } else {
            self.out.extend_from_slice(frame);
        }
    }

    /// Queues `bytes` to be written after everything queued so far.
    fn push_shared(&mut self, bytes: Bytes) {
        if !self.out.is_empty() {
            let head = self.out.split().freeze();
            self.shared_len += head.len();
            self.shared.push_back(head);
        }
        self.shared_len += bytes.len();
        self.shared.push_back(bytes);
    }

    /// Owes the peer a Pong with `payload`, written once the output has
    /// drained; the oldest owed is dropped past [`MAX_PENDING_PONGS`]
    /// (§5.5.3). Nothing after our Close.
    pub(crate) fn owe_pong(&mut self, payload: Bytes) {
        if self.close_sent {
            return;
        }
        if self.pending_pongs.len() == MAX_PENDING_PONGS {
            self.pending_pongs.pop_front();
        }
        self.pending_pongs.push_back(payload);
    }

    /// Queues our Close, the last frame we send (§5.5.1); Pongs owed go
    /// before it.
    pub(crate) fn close(&mut self, close: Option<&CloseFrame>) {
        self.before_frame();
        let mut payload = Vec::with_capacity(2 + close.map_or(0, |c| c.reason.len()));
        if let Some(close) = close {
            close.encode_payload(&mut payload);
        }
        let header = self.header(Opcode::Close, true, false);
        encode_frame(&mut self.out, header, &payload);
        self.close_sent = true;
        self.control_queued = true;
    }

    #[inline]
    fn flush_pongs_if_drained(&mut self) {
        if self.shared.is_empty()
            && self.out.is_empty()
            && !self.close_sent
            && !self.pending_pongs.is_empty()
        {
            self.write_pongs();
        }
    }

    fn write_pongs(&mut self) {
        while let Some(payload) = self.pending_pongs.pop_front() {
            let header = self.header(Opcode::Pong, true, false);
            encode_frame(&mut self.out, header, &payload);
            self.control_queued = true;
        }
    }

    /// See [`Connection::outgoing_vectored`](crate::Connection::outgoing_vectored).
    #[inline]
    pub(crate) fn vectored<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        self.flush_pongs_if_drained();
        let this: &'a Self = self;
        if this.shared.is_empty() {
            // The common case, one contiguous buffer.
            if this.out.is_empty() || dst.is_empty() {
                return 0;
            }
            dst[0] = IoSlice::new(&this.out);
            return 1;
        }
        let parts = this
            .shared
            .iter()
            .map(|b| &b[..])
            .chain((!this.out.is_empty()).then_some(&this.out[..]));
        let mut n = 0;
        for (slot, part) in dst.iter_mut().zip(parts) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        n
    }

    /// See [`Connection::advance_outgoing`](crate::Connection::advance_outgoing).
    #[inline]
    pub(crate) fn advance(&mut self, mut n: usize) {
        while let Some(front) = self.shared.front_mut() {
            if n < front.len() {
                front.advance(n);
                self.shared_len -= n;
                return;
            }
            n -= front.len();
            self.shared_len -= front.len();
            self.shared.pop_front();
        }
        if n == self.out.len() {
            // All written: `clear` keeps the buffer's start where it is, so
            // the next frame is encoded at the front without the reclaim
            // that `advance` would leave for the next `reserve`.
            self.out.clear();
            self.control_queued = false;
        } else {
            // Rare (the socket took part of the output): not on the path of
            // a write that takes everything.
            let before = u32::try_from(self.out.capacity()).unwrap_or(u32::MAX);
            self.held = self.held.max(before);
            self.out.advance(n);
        }
    }

    /// See [`Connection::take_outgoing`](crate::Connection::take_outgoing).
    pub(crate) fn take(&mut self) -> Bytes {
        if !self.close_sent && !self.pending_pongs.is_empty() {
            self.write_pongs();
        }
        self.control_queued = false;
        if self.shared.is_empty() {
            return self.out.split().freeze();
        }
        let mut all = BytesMut::with_capacity(self.len());
        for part in self.shared.drain(..) {
            all.extend_from_slice(&part);
        }
        self.shared_len = 0;
        all.extend_from_slice(&self.out);
        self.out.clear();
        all.freeze()
    }

    /// Bytes queued (owed Pongs not counted).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.shared_len + self.out.len()
    }

    /// See [`Connection::backlog`](crate::Connection::backlog).
    #[inline]
    pub(crate) fn backlog(&self) -> Backlog {
        Backlog {
            bytes: self.len(),
            control: self.control_queued || (!self.pending_pongs.is_empty() && !self.close_sent),
        }
    }

    /// Frees what an empty queue holds.
    pub(crate) fn shrink(&mut self) {
        if self.out.is_empty() {
            self.out = BytesMut::new();
            self.held = 0;
        }
        if self.shared.is_empty() {
            self.shared = VecDeque::new();
        }
        if self.pending_pongs.is_empty() {
            self.pending_pongs = VecDeque::new();
        }
    }

    /// Bytes held: the buffer's allocation (see `held`) and the shared
    /// parts' bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.out.capacity().max(self.held as usize) + self.shared_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(out: &mut Outgoing) -> Vec<u8> {
        let mut bytes = Vec::new();
        loop {
            let mut slices = [IoSlice::new(&[]); 8];
            let n = out.vectored(&mut slices);
            if n == 0 {
                return bytes;
            }
            let written: usize = slices[..n].iter().map(|s| s.len()).sum();
            for s in &slices[..n] {
                bytes.extend_from_slice(s);
            }
            out.advance(written);
        }
    }

    // RFC 6455 §5.1: a server's frames are not masked.
    #[test]
    fn a_server_queues_unmasked_frames_in_order() {
        let mut out = Outgoing::new(Role::Server);
        out.frame(Opcode::Text, true, false, b"Hello");
        out.frame(Opcode::Binary, true, false, &[1, 2]);
        assert_eq!(
            drain(&mut out),
            [0x81, 5, b'H', b'e', b'l', b'l', b'o', 0x82, 2, 1, 2]
        );
        assert!(out.backlog().is_empty());
    }

    #[test]
    fn long_payloads_are_shared_not_copied_and_come_out_in_order() {
        let mut out = Outgoing::new(Role::Server);
        let long = Bytes::from(vec![7u8; SHARED_PAYLOAD_MIN]);
        out.frame(Opcode::Text, true, false, b"a");
        out.frame_shared(Opcode::Binary, &long);
        out.frame(Opcode::Text, true, false, b"b");
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(out.vectored(&mut slices), 3, "head, shared payload, tail");
        assert_eq!(slices[1].as_ptr(), long.as_ptr(), "the payload itself");
        let bytes = drain(&mut out);
        assert_eq!(&bytes[..3], [0x81, 1, b'a']);
        assert_eq!(&bytes[3..7], [0x82, 126, 0x08, 0x00]);
        assert_eq!(&bytes[bytes.len() - 3..], [0x81, 1, b'b']);
        assert_eq!(bytes.len(), 3 + 4 + SHARED_PAYLOAD_MIN + 3);
    }

    #[test]
    fn advancing_part_way_through_a_shared_part_resumes_there() {
        let mut out = Outgoing::new(Role::Server);
        let long = Bytes::from((0..SHARED_PAYLOAD_MIN).map(|i| i as u8).collect::<Vec<_>>());
        out.frame_shared(Opcode::Binary, &long);
        let total = out.len();
        out.advance(100);
        assert_eq!(out.backlog().bytes, total - 100);
        let rest = out.take();
        assert_eq!(rest.len(), total - 100);
        assert_eq!(rest[rest.len() - 1], (SHARED_PAYLOAD_MIN - 1) as u8);
        assert_eq!(out.backlog(), Backlog::default());
    }

    // RFC 6455 §5.5.3: "A response to an unsolicited Pong frame is not
    // expected"; and only the latest Ping needs an answer.
    #[test]
    fn owed_pongs_wait_for_the_output_to_drain_and_are_bounded() {
        let mut out = Outgoing::new(Role::Server);
        out.frame(Opcode::Text, true, false, b"x");
        for i in 0..(MAX_PENDING_PONGS as u8 + 4) {
            out.owe_pong(Bytes::copy_from_slice(&[i]));
        }
        assert_eq!(out.backlog().bytes, 3, "Pongs are owed, not queued");
        assert!(out.backlog().control);
        let first = drain(&mut out);
        // The text frame, then the owed Pongs once it drained: the oldest 4
        // were dropped.
        assert_eq!(&first[..3], [0x81, 1, b'x']);
        let pongs = &first[3..];
        assert_eq!(pongs.len(), 3 * MAX_PENDING_PONGS);
        assert_eq!(&pongs[..3], [0x8a, 1, 4]);
    }

    // RFC 6455 §5.5.1: owed Pongs go before our Close, nothing after it.
    #[test]
    fn the_close_goes_after_owed_pongs_and_ends_the_queue() {
        let mut out = Outgoing::new(Role::Server);
        out.owe_pong(Bytes::from_static(b"p"));
        out.close(Some(&CloseFrame::new(crate::CloseCode::NormalClosure, "")));
        out.owe_pong(Bytes::from_static(b"q"));
        assert_eq!(out.take()[..], [0x8a, 1, b'p', 0x88, 2, 0x03, 0xe8]);
        assert!(out.close_sent());
        assert!(out.backlog().is_empty());
    }

    // RFC 6455 §5.3: every frame a client sends is masked with a fresh key.
    #[test]
    fn a_client_masks_every_frame_with_the_next_key() {
        let mut out = Outgoing::new(Role::Client);
        let mut keys = [[0x37, 0xfa, 0x21, 0x3d], [1, 2, 3, 4]].into_iter();
        out.set_masking_keys(Box::new(move || keys.next().unwrap_or([0; 4])));
        out.frame(Opcode::Text, true, false, b"Hello");
        let bytes = out.take();
        assert_eq!(
            bytes[..],
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }
}
