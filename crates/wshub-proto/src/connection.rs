//! The connection state machine: bytes in → events + bytes out.

use std::collections::VecDeque;
use std::fmt;

use bytes::{Buf, Bytes, BytesMut};
use rand::{rngs::StdRng, RngCore, SeedableRng};

use crate::close::{CloseCode, CloseFrame, MAX_REASON_LEN};
use crate::error::{ProtocolError, SendError};
use crate::frame::{apply_mask_offset, encode_frame, FrameHeader, Opcode, MAX_HEADER_LEN};
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
/// payload, after any extension has decoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest payload of a single frame, in bytes. A larger frame fails the
    /// connection with 1009 before any of its payload is buffered.
    /// Default: 16 MiB.
    pub max_frame_size: usize,
    /// Largest message, in bytes, summed over its fragments. Checked when each
    /// frame header arrives, before its payload is buffered; exceeding it fails
    /// the connection with 1009. Default: 64 MiB.
    pub max_message_size: usize,
    /// Most fragments one message may have (1009 beyond). Default: 131,072,
    /// enough for a 4 MiB message in 64-byte fragments (Autobahn case 9.3.1).
    pub max_fragments: usize,
    /// Answer each Ping with a Pong carrying the same payload (§5.5.2).
    /// Default: true.
    pub auto_pong: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            max_fragments: 128 << 10,
            auto_pong: true,
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
/// Cloning shares the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedMessage {
    frame: Bytes,
}

impl PreparedMessage {
    /// Encodes `message` as one unfragmented, unmasked frame.
    pub fn new(message: &Message) -> Self {
        let opcode = match message {
            Message::Text(_) => Opcode::Text,
            Message::Binary(_) => Opcode::Binary,
        };
        Self {
            frame: crate::frame::encode_unmasked_frame(opcode, message.as_bytes()),
        }
    }

    /// The encoded frame, header included.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }
}

/// Smallest growth of the message buffer, in bytes.
const MESSAGE_BLOCK: usize = 4096;

/// Most bytes reserved for a frame when its header arrives, before its
/// payload does.
const PRESIZE_LIMIT: usize = 64 * 1024;

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
    out: BytesMut,
    /// A control frame sits in `out`, so `out` should be written promptly.
    control_queued: bool,
    pending_pongs: VecDeque<Bytes>,
    mask_keys: Option<MaskKeySource>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state())
            .field("buffered_message", &self.message.len())
            .field("outgoing", &self.out.len())
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
        Self {
            role,
            config,
            header_buf: [0; MAX_HEADER_LEN],
            header_len: 0,
            frame: None,
            message: BytesMut::new(),
            message_opcode: None,
            fragments: 0,
            utf8: Utf8Validator::default(),
            control: Vec::new(),
            events: VecDeque::new(),
            close_received: false,
            failed: false,
            failing_close: None,
            close_sent: false,
            out: BytesMut::new(),
            control_queued: false,
            pending_pongs: VecDeque::new(),
            mask_keys,
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
    pub fn role(&self) -> Role {
        self.role
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The ready state (0–3).
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
                self.start_frame(header)?;
                return Ok(&data[n..]);
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

    fn start_frame(&mut self, header: FrameHeader) -> Result<(), ProtocolError> {
        let rsv = (header.rsv1 as u8) << 2 | (header.rsv2 as u8) << 1 | header.rsv3 as u8;
        if rsv != 0 {
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
                self.message.reserve(want.max(MESSAGE_BLOCK));
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

        let buf = if opcode.is_control() {
            &mut self.control
        } else {
            // Grows with the bytes that actually arrive, never from the
            // untrusted length field alone, and by a block at least: small
            // messages then share one buffer (an allocation per block, not two
            // per message), and a block whose messages were all dropped is
            // reused in place.
            if self.message.capacity() - self.message.len() < chunk.len() {
                self.message.reserve(chunk.len().max(MESSAGE_BLOCK));
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
                    let payload = self.message.split().freeze();
                    let message = if opcode == Opcode::Text {
                        self.utf8
                            .finish(&payload)
                            .map_err(|at| ProtocolError::InvalidUtf8 { offset: at as u64 })?;
                        Message::Text(Utf8Bytes::from_validated(payload))
                    } else {
                        Message::Binary(payload)
                    };
                    self.events.push_back(Event::Message(message));
                }
            }
        }
        Ok(())
    }

    /// Fails the connection (§7.1.7): queue a Close with the error's code unless
    /// one was already sent, and stop reading.
    fn fail(&mut self, err: &ProtocolError) {
        self.failed = true;
        self.frame = None;
        self.message = BytesMut::new();
        self.message_opcode = None;
        self.utf8.reset();
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

    /// The next event the peer caused, in wire order.
    ///
    /// Taking [`Event::Close`] queues our answering Close (echoing the peer's
    /// code, §5.5.1) unless we already sent one, and the state becomes
    /// [`State::Closed`].
    pub fn next_event(&mut self) -> Option<Event> {
        let Some(event) = self.events.pop_front() else {
            self.queue_failing_close();
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
    /// # Errors
    /// [`SendError::NotOpen`] after a Close was sent (ours, our echo, or the one failing the connection).
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_frame(Opcode::Text, text.as_bytes())
    }

    /// Queues a binary message as one frame.
    ///
    /// # Errors
    /// [`SendError::NotOpen`] after a Close was sent (ours, our echo, or the one failing the connection).
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_frame(Opcode::Binary, data)
    }

    /// Queues a message as one frame.
    ///
    /// # Errors
    /// [`SendError::NotOpen`] after a Close was sent (ours, our echo, or the one failing the connection).
    pub fn send_message(&mut self, message: &Message) -> Result<(), SendError> {
        match message {
            Message::Text(t) => self.send_frame(Opcode::Text, t.as_bytes()),
            Message::Binary(b) => self.send_frame(Opcode::Binary, b),
        }
    }

    /// Queues one fragment of a message (§5.4): `opcode` is `Text` or `Binary`
    /// for the first fragment and `Continuation` for the rest; `fin` marks the
    /// last. The caller keeps fragments of one message in order.
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
        if self.close_sent {
            return Err(SendError::NotOpen);
        }
        // Pongs owed for Pings received earlier go first, in wire order.
        self.flush_pongs();
        self.control_queued |= opcode.is_control();
        let header = self.header(opcode, fin);
        encode_frame(&mut self.out, header, payload);
        Ok(())
    }

    /// Queues a message encoded once for many connections.
    ///
    /// # Errors
    /// - [`SendError::NotOpen`] after a Close was sent (ours, our echo, or the one failing the connection).
    /// - [`SendError::MaskRequired`] on a client connection, which must mask
    ///   every frame with a fresh key (§5.3) and so cannot share frame bytes.
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), SendError> {
        if self.role == Role::Client {
            return Err(SendError::MaskRequired);
        }
        if self.close_sent {
            return Err(SendError::NotOpen);
        }
        self.flush_pongs();
        self.out.extend_from_slice(&message.frame);
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

    fn flush_pongs(&mut self) {
        while let Some(payload) = self.pending_pongs.pop_front() {
            let header = self.header(Opcode::Pong, true);
            encode_frame(&mut self.out, header, &payload);
            self.control_queued = true;
        }
    }

    /// Bytes waiting to be written, oldest first. Write some or all of them,
    /// then call [`Connection::advance_outgoing`] with the count written.
    ///
    /// Owed Pongs join the output only when it has drained, so a peer that
    /// sends Pings without reading cannot grow it (§5.5.3 lets us answer only
    /// the latest Ping).
    pub fn outgoing(&mut self) -> &[u8] {
        if self.out.is_empty() && !self.close_sent {
            self.flush_pongs();
        }
        &self.out
    }

    /// Marks the first `n` bytes of [`Connection::outgoing`] as written.
    ///
    /// # Panics
    /// If `n` is more than the length of [`Connection::outgoing`].
    pub fn advance_outgoing(&mut self, n: usize) {
        self.out.advance(n);
        if self.out.is_empty() {
            self.control_queued = false;
        }
    }

    /// Takes every queued byte at once, for callers that write whole buffers.
    pub fn take_outgoing(&mut self) -> Bytes {
        if !self.close_sent {
            self.flush_pongs();
        }
        self.control_queued = false;
        self.out.split().freeze()
    }

    /// Bytes queued but not yet taken, like the browser's `bufferedAmount`
    /// (owed Pongs not counted).
    pub fn buffered_amount(&self) -> usize {
        self.out.len()
    }

    /// Whether the connection owes the peer a frame the protocol requires:
    /// a Pong, or a Close (ours, an echo, or a failing one) not yet written,
    /// or a Ping. An async driver writes these out without waiting for the
    /// application to flush.
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
        }
        if self.out.is_empty() {
            self.out = BytesMut::new();
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
    }

    /// Bytes held in buffers (message, output, control), for memory accounting.
    pub fn buffer_capacity(&self) -> usize {
        self.message.capacity() + self.out.capacity() + self.control.capacity()
    }

    /// Whether anything (frames or owed Pongs) waits to be written.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty() || (!self.pending_pongs.is_empty() && !self.close_sent)
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
