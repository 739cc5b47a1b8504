//! The connection state machine: bytes in → events + bytes out.

use std::collections::VecDeque;
use std::fmt;
use std::io::IoSlice;
#[cfg(feature = "deflate")]
use std::sync::{Arc, OnceLock};

use bytes::{Buf, Bytes, BytesMut};
use rand::{rngs::StdRng, RngCore, SeedableRng};

use crate::close::{CloseCode, CloseFrame, MAX_REASON_LEN};
#[cfg(feature = "deflate")]
use crate::deflate::codec::{self, DeflateSettings, Deflater, InflateError, Inflater};
#[cfg(feature = "deflate")]
use crate::deflate::DeflateAgreement;
use crate::error::{ProtocolError, SendError};
use crate::frame::{
    apply_mask, apply_mask_offset, encode_frame, encode_header, FrameHeader, Opcode, MAX_HEADER_LEN,
};
use crate::message::{Message, Utf8Bytes};
use crate::utf8::Utf8Validator;

/// Which end of the connection this is; decides masking (RFC 6455 §5.1).
///
/// `Client` masks every frame it sends and rejects masked input; `Server` does
/// the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The endpoint that sent the opening handshake request.
    Client,
    /// The endpoint that answered it.
    Server,
}

/// The connection's ready state, numbered as the browser's `readyState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// 0: the opening handshake has not completed.
    Connecting = 0,
    /// 1: messages flow both ways.
    Open = 1,
    /// 2: this endpoint sent a Close frame and waits for the peer's (§7.1.2).
    Closing = 2,
    /// 3: Close frames went both ways, or the connection failed (§7.1.4, §7.1.7).
    Closed = 3,
}

/// Limits and behaviour of a [`Connection`]. Every limit counts bytes of
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
}

/// What the peer sent, in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete data message, reassembled from its fragments (§5.4).
    Message(Message),
    /// A Ping and its payload (at most 125 bytes). With
    /// [`Config::auto_pong`] the Pong is already queued.
    Ping(Bytes),
    /// A Pong and its payload (at most 125 bytes).
    Pong(Bytes),
    /// The peer's Close frame; `None` when it carried no status code (reported
    /// as 1005 by browsers). Taking this event from
    /// [`Connection::next_event`] queues our answering Close (§5.5.1).
    Close(Option<CloseFrame>),
}

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
    opcode: Opcode,
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

    #[cfg(feature = "deflate")]
    fn payload(&self) -> &[u8] {
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

/// Smallest growth of the message buffer, in bytes, when it is new or was
/// given back: a connection that gets one small message (a hub's join) keeps
/// little while it waits for the idle shrink.
const MIN_MESSAGE_BLOCK: usize = 256;

/// Largest block the growth doubles up to while messages keep arriving, in
/// bytes: a busy connection's small messages then share one buffer (an
/// allocation per block, not per message).
const MAX_MESSAGE_BLOCK: usize = 4096;

/// Most bytes reserved for a frame when its header arrives, before its
/// payload does.
const PRESIZE_LIMIT: usize = 64 * 1024;

/// Bytes. An unmasked data frame (server to client, RFC 6455 §5.1) with a
/// payload at least this long is queued with its payload shared, not
/// copied: the output then holds a reference to the message's `Bytes`, and
/// [`Connection::outgoing_vectored`] hands it to a vectored write. Below it,
/// copying into the output buffer costs less than another slice.
pub const SHARED_PAYLOAD_MIN: usize = 2048;

/// Most Pongs waiting to be written before older ones are dropped. RFC 6455
/// §5.5.3 lets an endpoint answer "only the most recently processed Ping", so a
/// peer that floods Pings without reading cannot grow our output.
const MAX_PENDING_PONGS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct FrameInProgress {
    header: FrameHeader,
    /// Payload bytes of this frame not yet received.
    remaining: u64,
    /// Payload bytes of this frame already received (the masking key offset).
    received: usize,
}

/// A source of masking keys for a client connection.
type MaskKeySource = Box<dyn FnMut() -> [u8; 4] + Send + Sync>;

/// Bytes of masked compressed payload unmasked at a time on the stack
/// before inflating, so a server never copies a compressed frame whole.
#[cfg(feature = "deflate")]
const UNMASK_BLOCK: usize = 4096;

/// Largest compression scratch buffer kept between messages, in bytes.
#[cfg(feature = "deflate")]
const SCRATCH_KEEP: usize = 64 * 1024;

/// A connection's permessage-deflate state (RFC 7692 §7.2).
#[cfg(feature = "deflate")]
#[derive(Debug)]
struct DeflateCodec {
    inbound: Inflater,
    outbound: Deflater,
    threshold: usize,
    /// The message being received had RSV1 set on its first frame (§6).
    compressed: bool,
    /// The compressed message being received, inflated so far.
    inflated: Vec<u8>,
    /// Compressed output before it is framed.
    scratch: Vec<u8>,
}

#[cfg(feature = "deflate")]
impl DeflateCodec {
    fn new(agreement: &DeflateAgreement, role: Role) -> Self {
        Self {
            inbound: Inflater::new(agreement.inbound(role)),
            outbound: Deflater::new(
                agreement.outbound(role),
                DeflateSettings::new(agreement.level, agreement.mem_level),
            ),
            threshold: agreement.threshold,
            compressed: false,
            inflated: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Inflates one piece of a compressed frame's payload, unmasking it
    /// first in blocks on the stack.
    fn inflate(
        &mut self,
        chunk: &[u8],
        key: Option<[u8; 4]>,
        offset: usize,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        let result = match key {
            None => self.inbound.inflate(chunk, &mut self.inflated, limit),
            Some(key) => {
                let mut block = [0u8; UNMASK_BLOCK];
                chunk
                    .chunks(UNMASK_BLOCK)
                    .enumerate()
                    .try_for_each(|(i, piece)| {
                        let block = &mut block[..piece.len()];
                        block.copy_from_slice(piece);
                        apply_mask_offset(block, key, offset + i * UNMASK_BLOCK);
                        self.inbound.inflate(block, &mut self.inflated, limit)
                    })
            }
        };
        result.map_err(|err| inflate_error(err, limit))
    }

    /// Ends a compressed message (§7.2.2) and hands over its bytes.
    fn finish(&mut self, limit: usize) -> Result<Bytes, ProtocolError> {
        self.compressed = false;
        self.inbound
            .finish(&mut self.inflated, limit)
            .map_err(|err| inflate_error(err, limit))?;
        Ok(Bytes::from(std::mem::take(&mut self.inflated)))
    }

    fn reset_inbound(&mut self) {
        self.compressed = false;
        self.inflated = Vec::new();
        self.inbound.reset();
    }

    fn memory(&self) -> usize {
        self.inbound.memory()
            + self.outbound.memory()
            + self.inflated.capacity()
            + self.scratch.capacity()
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

/// One WebSocket connection after the opening handshake, without I/O.
///
/// Feed it the bytes you read with [`Connection::receive`], collect what the peer
/// sent from [`Connection::next_event`], and write out
/// [`Connection::outgoing`] (then [`Connection::advance_outgoing`]) — that
/// includes the Pongs, the Close echo and the failing Close that the RFC
/// requires, which the connection queues by itself.
pub struct Connection {
    role: Role,
    config: Config,
    // Read side.
    header_buf: [u8; MAX_HEADER_LEN],
    header_len: usize,
    frame: Option<FrameInProgress>,
    message: BytesMut,
    /// The next growth of `message`, from [`MIN_MESSAGE_BLOCK`] doubling to
    /// [`MAX_MESSAGE_BLOCK`].
    message_block: u16,
    message_opcode: Option<Opcode>,
    fragments: usize,
    utf8: Utf8Validator,
    control: Vec<u8>,
    events: VecDeque<Event>,
    close_received: bool,
    failed: bool,
    /// The Close that fails the connection, until the events before the
    /// error have been taken.
    failing_close: Option<CloseFrame>,
    // Write side.
    close_sent: bool,
    /// Output written before `out`, oldest first: frames whose payload is
    /// shared with the caller's `Bytes` rather than copied (see
    /// [`SHARED_PAYLOAD_MIN`]), and the bytes `out` held when each was queued.
    out_shared: VecDeque<Bytes>,
    /// Bytes in `out_shared`.
    out_shared_len: usize,
    out: BytesMut,
    /// A control frame sits in `out`, so `out` should be written promptly.
    control_queued: bool,
    pending_pongs: VecDeque<Bytes>,
    mask_keys: Option<MaskKeySource>,
    /// Present when permessage-deflate was negotiated; boxed so that a
    /// connection without it stays as small as before.
    #[cfg(feature = "deflate")]
    deflate: Option<Box<DeflateCodec>>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state())
            .field("buffered_message", &self.message.len())
            .field("outgoing", &self.buffered_amount())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection in [`State::Open`], as after a successful opening handshake.
    ///
    /// A client draws its masking keys from a ChaCha CSPRNG seeded by the
    /// operating system, as §5.3 asks ("derived from a strong source of entropy").
    pub fn new(role: Role, config: Config) -> Self {
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
        #[cfg(feature = "deflate")]
        let deflate = config
            .deflate
            .as_ref()
            .map(|agreement| Box::new(DeflateCodec::new(agreement, role)));
        Self {
            role,
            config,
            header_buf: [0; MAX_HEADER_LEN],
            header_len: 0,
            frame: None,
            message: BytesMut::new(),
            message_block: MIN_MESSAGE_BLOCK as u16,
            message_opcode: None,
            fragments: 0,
            utf8: Utf8Validator::default(),
            control: Vec::new(),
            events: VecDeque::new(),
            close_received: false,
            failed: false,
            failing_close: None,
            close_sent: false,
            out_shared: VecDeque::new(),
            out_shared_len: 0,
            out: BytesMut::new(),
            control_queued: false,
            pending_pongs: VecDeque::new(),
            mask_keys,
            #[cfg(feature = "deflate")]
            deflate,
        }
    }

    /// A client connection whose masking keys come from `keys`, for tests that
    /// need deterministic output. Production code uses [`Connection::new`].
    pub fn with_masking_keys(
        config: Config,
        keys: impl FnMut() -> [u8; 4] + Send + Sync + 'static,
    ) -> Self {
        let mut conn = Self::new(Role::Client, config);
        conn.mask_keys = Some(Box::new(keys));
        conn
    }

    /// This endpoint's role.
    #[inline]
    pub fn role(&self) -> Role {
        self.role
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The ready state (0–3).
    #[inline]
    pub fn state(&self) -> State {
        if self.failed {
            return State::Closed;
        }
        match (self.close_sent, self.close_received) {
            (false, false) => State::Open,
            (true, true) => State::Closed,
            // One side's Close is out, the other's not yet.
            _ => State::Closing,
        }
    }

    /// Whether the peer's Close has arrived (so nothing more will be read).
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    /// Whether a Close frame has been queued to the peer.
    #[inline]
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Parses every complete frame in `data`, which may be any split of the
    /// stream: one byte, a frame and a half, or many frames.
    ///
    /// Events land in the queue read by [`Connection::next_event`]; replies
    /// the RFC requires land in [`Connection::outgoing`] (Pongs at once, the
    /// Close echo when the Close event is taken). Bytes after the peer's
    /// Close frame, or after a failure, are ignored.
    ///
    /// # Errors
    /// A [`ProtocolError`] when the peer broke RFC 6455 (§7.1.7). The
    /// connection is [`State::Closed`] for reading. Events parsed before the
    /// error stay queued; once they are taken (when
    /// [`Connection::next_event`] returns `None`, at once if there were none)
    /// a Close with [`ProtocolError::close_code`] is queued: write out what is
    /// queued, then close the transport.
    pub fn receive(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        if self.close_received || self.failed {
            return Ok(());
        }
        self.receive_frames(data).inspect_err(|err| self.fail(err))
    }

    fn receive_frames(&mut self, mut data: &[u8]) -> Result<(), ProtocolError> {
        while !data.is_empty() && !self.close_received {
            let Some(frame) = self.frame else {
                data = self.receive_header(data)?;
                continue;
            };
            let take = frame.remaining.min(data.len() as u64) as usize;
            self.receive_payload(&data[..take])?;
            data = &data[take..];
        }
        Ok(())
    }

    /// Consumes header bytes from `data`; returns what is left.
    fn receive_header<'a>(&mut self, data: &'a [u8]) -> Result<&'a [u8], ProtocolError> {
        if self.header_len == 0 {
            // Fast path: the whole header is in this chunk.
            if let Some((header, n)) = FrameHeader::parse(data)? {
                let rest = &data[n..];
                if self.is_whole_message(&header, rest.len()) {
                    return self.receive_whole_message(header, rest);
                }
                self.start_frame(header)?;
                return Ok(rest);
            }
        }
        let need = if self.header_len < 2 {
            2
        } else {
            FrameHeader::len_from_prefix(self.header_buf[1])
        };
        let take = (need - self.header_len).min(data.len());
        self.header_buf[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
        self.header_len += take;
        if let Some((header, _)) = FrameHeader::parse(&self.header_buf[..self.header_len])? {
            self.header_len = 0;
            self.start_frame(header)?;
        }
        Ok(&data[take..])
    }

    /// Whether this frame is a whole message that [`Connection::receive_whole_message`]
    /// may take in one step: an unfragmented, uncompressed Text or Binary
    /// frame, masked as the role requires, within the size limits, whose
    /// payload is all in the `available` bytes, with no message in progress.
    /// Every other frame, valid or not, goes through `start_frame`, which
    /// gives the errors.
    fn is_whole_message(&self, header: &FrameHeader, available: usize) -> bool {
        header.fin
            && !(header.rsv1 || header.rsv2 || header.rsv3)
            && matches!(header.opcode, Opcode::Text | Opcode::Binary)
            && header.masking_key.is_some() == (self.role == Role::Server)
            && header.payload_len <= available as u64
            && header.payload_len <= self.config.max_frame_size as u64
            && header.payload_len <= self.config.max_message_size as u64
            && self.config.max_fragments >= 1
            && self.message_opcode.is_none()
            && self.message.is_empty()
    }

    /// Takes a whole message (see [`Connection::is_whole_message`]) from
    /// `rest`, which starts with its payload; returns what follows it. The
    /// same steps as `start_frame`, `receive_payload` and `finish_frame`,
    /// without the state between them: most messages are one frame that
    /// arrives whole.
    fn receive_whole_message<'a>(
        &mut self,
        header: FrameHeader,
        rest: &'a [u8],
    ) -> Result<&'a [u8], ProtocolError> {
        let len = header.payload_len as usize;
        #[cfg(feature = "deflate")]
        if let Some(codec) = &mut self.deflate {
            codec.compressed = false;
        }
        if self.message.capacity() < len {
            self.grow_message(len);
        }
        self.message.extend_from_slice(&rest[..len]);
        if let Some(key) = header.masking_key {
            apply_mask(&mut self.message, key);
        }
        let payload = self.message.split().freeze();
        if header.opcode == Opcode::Text {
            crate::utf8::check_message(&payload)
                .map_err(|at| ProtocolError::InvalidUtf8 { offset: at as u64 })?;
        }
        self.push_message(header.opcode, payload);
        Ok(&rest[len..])
    }

    /// Queues a received message whose payload is complete and, for Text,
    /// already checked to be whole UTF-8 (RFC 6455 §8.1).
    #[inline]
    fn push_message(&mut self, opcode: Opcode, payload: Bytes) {
        let message = if opcode == Opcode::Text {
            Message::Text(Utf8Bytes::from_validated(payload))
        } else {
            Message::Binary(payload)
        };
        self.events.push_back(Event::Message(message));
    }

    fn start_frame(&mut self, header: FrameHeader) -> Result<(), ProtocolError> {
        let rsv = (header.rsv1 as u8) << 2 | (header.rsv2 as u8) << 1 | header.rsv3 as u8;
        if rsv != 0 && !self.rsv1_marks_compression(&header, rsv) {
            return Err(ProtocolError::ReservedBitsSet { bits: rsv });
        }
        match (self.role, header.masking_key.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let len = header.payload_len;
        if header.opcode.is_control() {
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if len > 125 {
                return Err(ProtocolError::ControlFrameTooLong { len });
            }
            self.control.clear();
        } else {
            match (header.opcode, self.message_opcode) {
                (Opcode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
                (Opcode::Continuation, Some(_)) => {}
                (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
                (opcode, None) => {
                    self.message_opcode = Some(opcode);
                    self.fragments = 0;
                    #[cfg(feature = "deflate")]
                    if let Some(codec) = &mut self.deflate {
                        codec.compressed = header.rsv1;
                    }
                }
            }
            self.fragments += 1;
            if self.fragments > self.config.max_fragments {
                return Err(ProtocolError::TooManyFragments {
                    limit: self.config.max_fragments,
                });
            }
            if len > self.config.max_frame_size as u64 {
                return Err(ProtocolError::FrameTooBig {
                    size: len,
                    limit: self.config.max_frame_size as u64,
                });
            }
            // A compressed message is measured after inflation, as it
            // inflates; its wire length says nothing of that.
            if !self.receiving_compressed() {
                let size = self.message.len() as u64 + len;
                if size > self.config.max_message_size as u64 {
                    return Err(ProtocolError::MessageTooBig {
                        size,
                        limit: self.config.max_message_size as u64,
                    });
                }
                // Room for the frame in one allocation rather than a regrowth
                // per read, but never more than PRESIZE_LIMIT on the say-so of
                // a length field: past it the buffer grows as bytes arrive.
                let want = (len as usize).min(PRESIZE_LIMIT);
                if self.message.capacity() - self.message.len() < want {
                    self.grow_message(want);
                }
            }
        }
        self.frame = Some(FrameInProgress {
            header,
            remaining: len,
            received: 0,
        });
        if len == 0 {
            self.finish_frame()?;
        }
        Ok(())
    }

    /// Whether RSV1 (and only it) may be set on this frame: "the RSV1 bit
    /// [...] set on the first frame of a message" marks it compressed when
    /// permessage-deflate was negotiated (RFC 7692 §6), and nowhere else:
    /// "An endpoint MUST NOT set the Per-Message Compressed bit of control
    /// frames and non-first fragments of a data message" (§6.1).
    fn rsv1_marks_compression(&self, header: &FrameHeader, rsv: u8) -> bool {
        #[cfg(feature = "deflate")]
        {
            rsv == 0b100
                && self.deflate.is_some()
                && matches!(header.opcode, Opcode::Text | Opcode::Binary)
        }
        #[cfg(not(feature = "deflate"))]
        {
            let _ = (header, rsv);
            false
        }
    }

    /// Whether the data message being received is compressed.
    fn receiving_compressed(&self) -> bool {
        #[cfg(feature = "deflate")]
        {
            self.deflate.as_ref().is_some_and(|c| c.compressed)
        }
        #[cfg(not(feature = "deflate"))]
        {
            false
        }
    }

    /// Makes room for `additional` bytes of message, by a block at least.
    fn grow_message(&mut self, additional: usize) {
        let block = usize::from(self.message_block);
        self.message.reserve(additional.max(block));
        self.message_block = (block * 2).min(MAX_MESSAGE_BLOCK) as u16;
    }

    fn receive_payload(&mut self, chunk: &[u8]) -> Result<(), ProtocolError> {
        let frame = self
            .frame
            .as_mut()
            .expect("receive_payload runs only inside a frame");
        let key = frame.header.masking_key;
        let offset = frame.received;
        frame.received += chunk.len();
        frame.remaining -= chunk.len() as u64;
        let done = frame.remaining == 0;
        let opcode = frame.header.opcode;

        #[cfg(feature = "deflate")]
        if !opcode.is_control() {
            if let Some(codec) = self.deflate.as_mut().filter(|c| c.compressed) {
                codec.inflate(chunk, key, offset, self.config.max_message_size)?;
                if self.message_opcode == Some(Opcode::Text) {
                    self.utf8
                        .feed(&codec.inflated)
                        .map_err(|at| ProtocolError::InvalidUtf8 { offset: at as u64 })?;
                }
                if done {
                    self.finish_frame()?;
                }
                return Ok(());
            }
        }

        let buf = if opcode.is_control() {
            &mut self.control
        } else {
            // Grows with the bytes that actually arrive, never from the
            // untrusted length field alone, and by a block at least: small
            // messages then share one buffer (an allocation per block, not two
            // per message), and a block whose messages were all dropped is
            // reused in place.
            if self.message.capacity() - self.message.len() < chunk.len() {
                self.grow_message(chunk.len());
            }
            let start = self.message.len();
            self.message.extend_from_slice(chunk);
            if let Some(key) = key {
                apply_mask_offset(&mut self.message[start..], key, offset);
            }
            if self.message_opcode == Some(Opcode::Text) {
                self.utf8
                    .feed(&self.message)
                    .map_err(|at| ProtocolError::InvalidUtf8 { offset: at as u64 })?;
            }
            if done {
                self.finish_frame()?;
            }
            return Ok(());
        };
        let start = buf.len();
        buf.extend_from_slice(chunk);
        if let Some(key) = key {
            apply_mask_offset(&mut buf[start..], key, offset);
        }
        if done {
            self.finish_frame()?;
        }
        Ok(())
    }

    fn finish_frame(&mut self) -> Result<(), ProtocolError> {
        let frame = self
            .frame
            .take()
            .expect("finish_frame runs only inside a frame");
        match frame.header.opcode {
            Opcode::Ping => {
                let payload = Bytes::copy_from_slice(&self.control);
                if self.config.auto_pong && !self.close_sent {
                    if self.pending_pongs.len() == MAX_PENDING_PONGS {
                        self.pending_pongs.pop_front();
                    }
                    self.pending_pongs.push_back(payload.clone());
                }
                self.events.push_back(Event::Ping(payload));
            }
            Opcode::Pong => {
                let payload = Bytes::copy_from_slice(&self.control);
                self.events.push_back(Event::Pong(payload));
            }
            Opcode::Close => {
                let close = CloseFrame::parse(&self.control)?;
                self.close_received = true;
                // The answering Close is queued when this event is taken, so
                // the application can still answer the messages before it:
                // an endpoint "MAY delay sending a Close frame until its
                // current message is sent" (§5.5.1).
                self.events.push_back(Event::Close(close));
            }
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                if frame.header.fin {
                    let opcode = self
                        .message_opcode
                        .take()
                        .expect("a data frame belongs to a message");
                    let payload = match self.finish_compressed()? {
                        Some(inflated) => inflated,
                        None => self.message.split().freeze(),
                    };
                    if opcode == Opcode::Text {
                        self.utf8
                            .finish(&payload)
                            .map_err(|at| ProtocolError::InvalidUtf8 { offset: at as u64 })?;
                    }
                    self.push_message(opcode, payload);
                }
            }
        }
        Ok(())
    }

    /// The whole inflated payload if the message that just ended was
    /// compressed.
    fn finish_compressed(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        #[cfg(feature = "deflate")]
        if let Some(codec) = self.deflate.as_mut().filter(|c| c.compressed) {
            return codec.finish(self.config.max_message_size).map(Some);
        }
        Ok(None)
    }

    /// Fails the connection (§7.1.7): queue a Close with the error's code unless
    /// one was already sent, and stop reading.
    fn fail(&mut self, err: &ProtocolError) {
        self.failed = true;
        self.frame = None;
        self.message = BytesMut::new();
        self.message_opcode = None;
        self.utf8.reset();
        #[cfg(feature = "deflate")]
        if let Some(codec) = &mut self.deflate {
            codec.reset_inbound();
        }
        if !self.close_sent {
            let mut reason = err.to_string();
            truncate_at_char_boundary(&mut reason, MAX_REASON_LEN);
            self.failing_close = Some(CloseFrame::new(err.close_code(), reason));
            if self.events.is_empty() {
                self.queue_failing_close();
            }
        }
    }

    /// Queues the Close that fails the connection, once the events parsed
    /// before the error have been taken, so the application could still
    /// answer them (an echo server echoes the message before the bad frame).
    fn queue_failing_close(&mut self) {
        if let Some(close) = self.failing_close.take() {
            if !self.close_sent {
                self.queue_close(Some(&close));
            }
        }
    }

    /// Whether [`Connection::next_event`] has anything to do: an event is
    /// queued, or the Close failing the connection waits to be queued. A
    /// cheap check for callers that look often and mostly find nothing.
    #[inline]
    pub fn has_events(&self) -> bool {
        !self.events.is_empty() || self.failing_close.is_some()
    }

    /// The next event the peer caused, in wire order.
    ///
    /// Taking [`Event::Close`] queues our answering Close (echoing the peer's
    /// code, §5.5.1) unless we already sent one, and the state becomes
    /// [`State::Closed`].
    #[inline]
    pub fn next_event(&mut self) -> Option<Event> {
        let Some(event) = self.events.pop_front() else {
            if self.failing_close.is_some() {
                self.queue_failing_close();
            }
            return None;
        };
        if let Event::Close(close) = &event {
            if !self.close_sent {
                // "It SHOULD do so as soon as practical ... typically echoing
                // the status code it received" (§5.5.1).
                let echo = close.as_ref().map(|c| CloseFrame::new(c.code, ""));
                self.queue_close(echo.as_ref());
            }
        }
        Some(event)
    }

    /// Drains every queued event, in wire order (see [`Connection::next_event`]).
    pub fn events(&mut self) -> impl Iterator<Item = Event> + '_ {
        std::iter::from_fn(move || self.next_event())
    }

    /// Queues a text message as one frame.
    ///
    /// With permessage-deflate negotiated and `text` at least the agreed
    /// threshold long, the frame is compressed (RSV1 set, RFC 7692 §7.2.1),
    /// even if that does not make it smaller: the rule is the threshold's
    /// alone, so a peer sees every message above it compressed.
    ///
    /// # Errors
    /// [`SendError::NotOpen`] after a Close was sent (ours, our echo, or the one failing the connection).
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_data(Opcode::Text, text.as_bytes())
    }

    /// Queues a binary message as one frame, compressed as
    /// [`Connection::send_text`] says.
    ///
    /// # Errors
    /// [`SendError::NotOpen`] after a Close was sent (ours, our echo, or the one failing the connection).
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_data(Opcode::Binary, data)
    }

    /// Queues a message as one frame, compressed as
    /// [`Connection::send_text`] says.
    ///
    /// # Errors
    /// [`SendError::NotOpen`] after a Close was sent (ours, our echo, or the one failing the connection).
    pub fn send_message(&mut self, message: &Message) -> Result<(), SendError> {
        let (opcode, payload) = match message {
            Message::Text(t) => (Opcode::Text, t.as_bytes()),
            Message::Binary(b) => (Opcode::Binary, b),
        };
        if payload.len() >= SHARED_PAYLOAD_MIN
            && self.mask_keys.is_none()
            && !self.compresses(payload)
        {
            // An unmasked frame carries the payload as it is: queue the
            // header, then the payload by reference.
            self.before_queueing()?;
            let header = self.header(opcode, true);
            encode_header(&mut self.out, header, payload.len());
            self.queue_shared(payload.clone());
            return Ok(());
        }
        self.send_data(opcode, payload)
    }

    /// Before a frame is queued: none may follow our Close
    /// ([`SendError::NotOpen`], RFC 6455 §5.5.1), and the Pongs owed for
    /// Pings received earlier go first, in wire order.
    #[inline]
    fn before_queueing(&mut self) -> Result<(), SendError> {
        if self.close_sent {
            return Err(SendError::NotOpen);
        }
        self.flush_pongs();
        Ok(())
    }

    /// Whether a data message of this payload goes out compressed.
    fn compresses(&self, payload: &[u8]) -> bool {
        #[cfg(feature = "deflate")]
        if let Some(codec) = &self.deflate {
            return payload.len() >= codec.threshold;
        }
        let _ = payload;
        false
    }

    /// Queues `bytes` to be written after everything queued so far, without
    /// copying them.
    fn queue_shared(&mut self, bytes: Bytes) {
        if !self.out.is_empty() {
            let head = self.out.split().freeze();
            self.out_shared_len += head.len();
            self.out_shared.push_back(head);
        }
        self.out_shared_len += bytes.len();
        self.out_shared.push_back(bytes);
    }

    /// Queues an encoded frame: by reference when it is long, else copied.
    fn queue_encoded(&mut self, frame: &Bytes) {
        if frame.len() >= SHARED_PAYLOAD_MIN {
            self.queue_shared(frame.clone());
        } else {
            self.out.extend_from_slice(frame);
        }
    }

    /// Queues a whole data message, compressed if permessage-deflate is on
    /// and it is long enough.
    fn send_data(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), SendError> {
        #[cfg(feature = "deflate")]
        if self.compresses(payload) {
            return self.send_compressed(opcode, payload);
        }
        self.send_frame(opcode, payload)
    }

    /// Compresses `payload` with this connection's deflater and queues it as
    /// one frame with RSV1 set (RFC 7692 §7.2.1), whatever its size.
    /// Sending an incompressible payload uncompressed would save a few bytes
    /// but is not done: some peers mishandle uncompressed messages on a
    /// compressed connection (kosoku 0.1.0, the Autobahn runner we use, fails
    /// those cases), and with context takeover the peer's window must see
    /// every byte our deflater saw.
    #[cfg(feature = "deflate")]
    fn send_compressed(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), SendError> {
        self.before_queueing()?;
        let codec = self
            .deflate
            .as_mut()
            .expect("send_compressed runs only with deflate negotiated");
        let mut scratch = std::mem::take(&mut codec.scratch);
        scratch.clear();
        codec.outbound.compress(payload, &mut scratch);
        let mut header = self.header(opcode, true);
        header.rsv1 = true;
        encode_frame(&mut self.out, header, &scratch);
        if scratch.capacity() <= SCRATCH_KEEP {
            if let Some(codec) = &mut self.deflate {
                codec.scratch = scratch;
            }
        }
        Ok(())
    }

    /// Queues one fragment of a message (§5.4): `opcode` is `Text` or `Binary`
    /// for the first fragment and `Continuation` for the rest; `fin` marks the
    /// last. The caller keeps fragments of one message in order.
    ///
    /// Fragments are never compressed, even with permessage-deflate: a
    /// message whose first frame has RSV1 clear is a valid uncompressed
    /// message (RFC 7692 §6), and the deflater's context is left untouched.
    ///
    /// # Errors
    /// - [`SendError::ControlOpcode`] for `Close`, `Ping` or `Pong`: control
    ///   frames are never fragmented (§5.5); use the `send_close`, `send_ping`
    ///   and `send_pong` methods.
    /// - [`SendError::NotOpen`] after a Close was sent.
    pub fn send_fragment(
        &mut self,
        opcode: Opcode,
        payload: &[u8],
        fin: bool,
    ) -> Result<(), SendError> {
        if opcode.is_control() {
            return Err(SendError::ControlOpcode {
                opcode: opcode.as_u8(),
            });
        }
        self.queue_frame(opcode, payload, fin)
    }

    fn queue_frame(&mut self, opcode: Opcode, payload: &[u8], fin: bool) -> Result<(), SendError> {
        self.before_queueing()?;
        self.control_queued |= opcode.is_control();
        let header = self.header(opcode, fin);
        encode_frame(&mut self.out, header, payload);
        Ok(())
    }

    /// Queues a message encoded once for many connections.
    ///
    /// With permessage-deflate negotiated and the payload at least the
    /// threshold long:
    /// - without context takeover on our outbound side (the server default),
    ///   the compressed frame from [`PreparedMessage::deflated_frame`] is
    ///   queued, computed once per (window bits, level) and shared by every
    ///   connection that sends the message;
    /// - with context takeover, the payload goes through this connection's
    ///   own deflater, as [`Connection::send_message`] does.
    ///
    /// # Errors
    /// - [`SendError::NotOpen`] after a Close was sent (ours, our echo, or the one failing the connection).
    /// - [`SendError::MaskRequired`] on a client connection, which must mask
    ///   every frame with a fresh key (§5.3) and so cannot share frame bytes.
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), SendError> {
        if self.role == Role::Client {
            return Err(SendError::MaskRequired);
        }
        self.before_queueing()?;
        #[cfg(feature = "deflate")]
        if let Some(codec) = &self.deflate {
            let payload = message.payload();
            if payload.len() >= codec.threshold {
                let outbound = codec.outbound.direction();
                if !outbound.no_context_takeover {
                    return self.send_compressed(message.opcode, payload);
                }
                let settings = codec.outbound.settings();
                let frame = message.deflated_frame(
                    outbound.max_window_bits,
                    settings.level,
                    settings.mem_level,
                );
                self.queue_encoded(&frame);
                return Ok(());
            }
        }
        self.queue_encoded(&message.frame);
        Ok(())
    }

    /// Queues a Ping (§5.5.2).
    ///
    /// # Errors
    /// - [`SendError::ControlFrameTooLong`] if `payload` is over 125 bytes.
    /// - [`SendError::NotOpen`] after a Close was sent.
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        if payload.len() > 125 {
            return Err(SendError::ControlFrameTooLong { len: payload.len() });
        }
        self.send_frame(Opcode::Ping, payload)
    }

    /// Queues an unsolicited Pong, a unidirectional heartbeat (§5.5.3).
    ///
    /// # Errors
    /// - [`SendError::ControlFrameTooLong`] if `payload` is over 125 bytes.
    /// - [`SendError::NotOpen`] after a Close was sent.
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        if payload.len() > 125 {
            return Err(SendError::ControlFrameTooLong { len: payload.len() });
        }
        self.send_frame(Opcode::Pong, payload)
    }

    /// Queues a Close frame and moves to [`State::Closing`] (RFC 6455 §5.5.1, §7.1.2).
    ///
    /// `reason` is UTF-8 of at most 123 bytes, so code and reason fit in a
    /// control frame (§5.5). The peer's answer arrives as [`Event::Close`].
    ///
    /// # Errors
    /// - [`SendError::InvalidCloseCode`] if `code` is reserved or unassigned
    ///   (1004–1006, 1015, 1016–2999, <1000, >4999; §7.4).
    /// - [`SendError::ReasonTooLong`] if `reason` is over 123 bytes.
    /// - [`SendError::NotOpen`] if a Close frame was already sent.
    pub fn send_close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        if !code.is_allowed_on_wire() {
            return Err(SendError::InvalidCloseCode {
                code: code.as_u16(),
            });
        }
        if reason.len() > MAX_REASON_LEN {
            return Err(SendError::ReasonTooLong { len: reason.len() });
        }
        if self.close_sent {
            return Err(SendError::NotOpen);
        }
        if self.failing_close.is_some() {
            // The peer broke the protocol: the Close says so, whatever the
            // application meant to close with.
            self.queue_failing_close();
        } else {
            self.queue_close(Some(&CloseFrame::new(code, reason)));
        }
        Ok(())
    }

    /// Queues a Close frame with no status code (what a browser's `close()`
    /// with no arguments sends; the peer reports 1005).
    ///
    /// # Errors
    /// [`SendError::NotOpen`] if a Close frame was already sent.
    pub fn send_close_without_code(&mut self) -> Result<(), SendError> {
        if self.close_sent {
            return Err(SendError::NotOpen);
        }
        if self.failing_close.is_some() {
            self.queue_failing_close();
            return Ok(());
        }
        self.queue_close(None);
        Ok(())
    }

    fn queue_close(&mut self, close: Option<&CloseFrame>) {
        // Pongs already owed go out before the Close; nothing goes after it.
        self.flush_pongs();
        let mut payload = Vec::with_capacity(2 + close.map_or(0, |c| c.reason.len()));
        if let Some(close) = close {
            close.encode_payload(&mut payload);
        }
        let header = self.header(Opcode::Close, true);
        encode_frame(&mut self.out, header, &payload);
        self.close_sent = true;
        self.control_queued = true;
    }

    fn send_frame(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), SendError> {
        self.queue_frame(opcode, payload, true)
    }

    fn header(&mut self, opcode: Opcode, fin: bool) -> FrameHeader {
        FrameHeader {
            fin,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            masking_key: self.mask_keys.as_mut().map(|next| next()),
            payload_len: 0,
        }
    }

    #[inline]
    fn flush_pongs(&mut self) {
        if self.pending_pongs.is_empty() {
            return;
        }
        self.write_pongs();
    }

    fn write_pongs(&mut self) {
        while let Some(payload) = self.pending_pongs.pop_front() {
            let header = self.header(Opcode::Pong, true);
            encode_frame(&mut self.out, header, &payload);
            self.control_queued = true;
        }
    }

    /// The next bytes to write, oldest first: all of them, or, when long
    /// payloads are queued by reference, the part before the next such
    /// boundary. Write some or all, then call
    /// [`Connection::advance_outgoing`] with the count written; repeat until
    /// this is empty. [`Connection::outgoing_vectored`] gives every part at
    /// once, for a vectored write.
    ///
    /// Owed Pongs join the output only when it has drained, so a peer that
    /// sends Pings without reading cannot grow it (§5.5.3 lets us answer only
    /// the latest Ping).
    #[inline]
    pub fn outgoing(&mut self) -> &[u8] {
        if self.out_shared.is_empty() {
            if self.out.is_empty() && !self.close_sent {
                self.flush_pongs();
            }
            return &self.out;
        }
        &self.out_shared[0]
    }

    /// How many parts the output is in: more than 1 when long payloads are
    /// queued by reference, and [`Connection::outgoing`] is then only the
    /// first part. (Owed Pongs not counted.)
    #[inline]
    pub fn outgoing_parts(&self) -> usize {
        self.out_shared.len() + usize::from(!self.out.is_empty())
    }

    /// Every part of the output, in order, in up to `dst.len()` slices (the
    /// payloads of unmasked data frames of [`SHARED_PAYLOAD_MIN`] bytes or
    /// more are queued by reference, not copied). Returns how many slices
    /// were filled; 0 when nothing waits. Write them with one vectored
    /// write, then call [`Connection::advance_outgoing`] with the count
    /// written.
    pub fn outgoing_vectored<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        if self.out_shared.is_empty() && self.out.is_empty() && !self.close_sent {
            self.flush_pongs();
        }
        let this: &'a Self = self;
        let parts = this
            .out_shared
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

    /// Marks the first `n` bytes of the output as written.
    ///
    /// # Panics
    /// If `n` is more than [`Connection::buffered_amount`].
    #[inline]
    pub fn advance_outgoing(&mut self, mut n: usize) {
        while let Some(front) = self.out_shared.front_mut() {
            if n < front.len() {
                front.advance(n);
                self.out_shared_len -= n;
                return;
            }
            n -= front.len();
            self.out_shared_len -= front.len();
            self.out_shared.pop_front();
        }
        if n == self.out.len() {
            // All written: `clear` keeps the buffer's start where it is, so
            // the next frame is encoded at the front without the reclaim
            // that `advance` would leave for the next `reserve`.
            self.out.clear();
            self.control_queued = false;
        } else {
            self.out.advance(n);
        }
    }

    /// Takes every queued byte at once, for callers that write whole buffers.
    pub fn take_outgoing(&mut self) -> Bytes {
        if !self.close_sent {
            self.flush_pongs();
        }
        self.control_queued = false;
        if self.out_shared.is_empty() {
            return self.out.split().freeze();
        }
        let mut all = BytesMut::with_capacity(self.buffered_amount());
        for part in self.out_shared.drain(..) {
            all.extend_from_slice(&part);
        }
        self.out_shared_len = 0;
        all.extend_from_slice(&self.out);
        self.out.clear();
        all.freeze()
    }

    /// Bytes queued but not yet taken, like the browser's `bufferedAmount`
    /// (owed Pongs not counted).
    #[inline]
    pub fn buffered_amount(&self) -> usize {
        self.out_shared_len + self.out.len()
    }

    /// Whether the connection owes the peer a frame the protocol requires:
    /// a Pong, or a Close (ours, an echo, or a failing one) not yet written,
    /// or a Ping. An async driver writes these out without waiting for the
    /// application to flush.
    #[inline]
    pub fn owes_control(&self) -> bool {
        (!self.pending_pongs.is_empty() && !self.close_sent) || self.control_queued
    }

    /// Frees the buffers a quiet connection does not need: the message buffer
    /// when no message is in progress, the output buffer when it is empty,
    /// and the event queues when empty. Call it when the connection goes
    /// idle; the next message allocates again.
    pub fn shrink_buffers(&mut self) {
        if self.message.is_empty() && self.message_opcode.is_none() {
            self.message = BytesMut::new();
            self.message_block = MIN_MESSAGE_BLOCK as u16;
        }
        if self.out.is_empty() {
            self.out = BytesMut::new();
        }
        if self.out_shared.is_empty() {
            self.out_shared = VecDeque::new();
        }
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
        if self.pending_pongs.is_empty() {
            self.pending_pongs = VecDeque::new();
        }
        let in_control_frame = self.frame.is_some_and(|f| f.header.opcode.is_control());
        if !in_control_frame {
            self.control = Vec::new();
        }
        #[cfg(feature = "deflate")]
        if let Some(codec) = &mut self.deflate {
            codec.scratch = Vec::new();
            if !codec.compressed {
                codec.inflated = Vec::new();
            }
        }
    }

    /// Whether part of a frame (header or payload, RFC 6455 §5.2) was
    /// received and the rest is awaited: a
    /// driver that is about to flush a batch of replies may read once more
    /// first, since the rest is often already in the transport.
    #[inline]
    pub fn mid_frame(&self) -> bool {
        self.frame.is_some() || self.header_len > 0
    }

    /// Bytes held in buffers (message, output, control, and with
    /// permessage-deflate the inflated message in progress and the
    /// compression scratch buffer), for memory accounting.
    pub fn buffer_capacity(&self) -> usize {
        let buffers = self.message.capacity()
            + self.out.capacity()
            + self.out_shared_len
            + self.control.capacity();
        #[cfg(feature = "deflate")]
        if let Some(codec) = &self.deflate {
            return buffers + codec.inflated.capacity() + codec.scratch.capacity();
        }
        buffers
    }

    /// Bytes of permessage-deflate state this connection holds now
    /// (RFC 7692 §7.2): the zlib states (371 KiB to deflate with a 15-bit
    /// window, 46 KiB to inflate, as measured for zlib-rs) plus the inflated
    /// message in progress and the compression scratch buffer.
    ///
    /// A state is allocated on the first compressed message in its direction
    /// and, in a direction without context takeover, freed at the end of each
    /// message: a server with the default
    /// [`DeflateConfig::server`](crate::deflate::DeflateConfig::server)
    /// holds 0 bytes between messages. 0 without permessage-deflate.
    pub fn deflate_memory(&self) -> usize {
        #[cfg(feature = "deflate")]
        if let Some(codec) = &self.deflate {
            return codec.memory();
        }
        0
    }

    /// Whether anything (frames or owed Pongs) waits to be written.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
            || !self.out_shared.is_empty()
            || (!self.pending_pongs.is_empty() && !self.close_sent)
    }
}

fn truncate_at_char_boundary(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "deflate")]
    use super::*;

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
        send_sync::<super::PreparedMessage>();
        send_sync::<super::Connection>();
    }
}
