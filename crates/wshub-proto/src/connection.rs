//! [`Connection`]: one WebSocket connection after its opening handshake,
//! without I/O. Bytes in → events, and bytes out.
//!
//! It composes the rooms of the crate: the frame [`Decoder`] (RFC 6455
//! §5.1–§5.5 and the limits), the [`Reassembler`] (fragments, UTF-8,
//! inflate), the [`Outgoing`] queue, and with permessage-deflate the
//! outbound compressor. What is left here is the close handshake (§5.5.1,
//! §7), failing the connection (§7.1.7), and the end of the transport.

use std::collections::VecDeque;
use std::fmt;
use std::io::IoSlice;

use bytes::Bytes;

use crate::close::CloseEvent;
use crate::close::{CloseCode, CloseFrame, MAX_REASON_LEN};
use crate::config::Config;
#[cfg(feature = "deflate")]
use crate::deflate::compressor::Compressor;
use crate::error::{ProtocolError, SendError};
use crate::frame::{Decoded, Decoder, Opcode, MAX_CONTROL_PAYLOAD_LEN};
use crate::message::Message;
use crate::outgoing::{Backlog, Outgoing, SHARED_PAYLOAD_MIN};
use crate::prepared::PreparedMessage;
use crate::reassembler::Reassembler;
use crate::role::Role;

/// The connection's ready state, numbered as the browser's `readyState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// 0: the opening handshake has not completed. A [`Connection`] starts
    /// after it, so it never reports this; it is the state of a socket whose
    /// handshake is in flight, such as a reconnecting client's between two
    /// connections.
    Connecting = 0,
    /// 1: messages flow both ways.
    Open = 1,
    /// 2: one side's Close frame went out and the other's has not
    /// (§7.1.2, §7.1.3).
    Closing = 2,
    /// 3: Close frames went both ways, or the connection failed, or the
    /// transport ended (§7.1.4, §7.1.7).
    Closed = 3,
}

/// What the peer sent, in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete data message, reassembled from its fragments (§5.4).
    Message(Message),
    /// A Ping and its payload (at most 125 bytes). With
    /// [`Config::auto_pong`] the Pong is already owed.
    Ping(Bytes),
    /// A Pong and its payload (at most 125 bytes).
    Pong(Bytes),
    /// The peer's Close frame; `None` when it carried no status code (reported
    /// as 1005 by browsers). Taking this event from
    /// [`Connection::next_event`] queues our answering Close (§5.5.1).
    Close(Option<CloseFrame>),
}

/// One WebSocket connection after the opening handshake, without I/O.
///
/// Feed it the bytes you read with [`Connection::receive`] (and the end of
/// the stream with [`Connection::receive_eof`]), collect what the peer sent
/// from [`Connection::next_event`], and write out
/// [`Connection::outgoing_vectored`] (then [`Connection::advance_outgoing`]),
/// or [`Connection::take_outgoing`]: that includes the Pongs, the Close
/// echo and the failing Close that the RFC requires, which the connection
/// queues by itself. When [`Connection::close_expected`] turns true, bound
/// the wait for the transport's end with a timeout.
pub struct Connection {
    role: Role,
    auto_pong: bool,
    decoder: Decoder,
    reassembler: Reassembler,
    outgoing: Outgoing,
    events: VecDeque<Event>,
    failed: bool,
    /// The transport ended ([`Connection::receive_eof`]).
    eof: bool,
    /// The Close that fails the connection, until the events before the
    /// error have been taken.
    failing_close: Option<CloseFrame>,
    /// How the connection ended, once it has.
    close_event: Option<Box<CloseEvent>>,
    /// Present when permessage-deflate was negotiated; boxed so that a
    /// connection without it stays as small as before.
    #[cfg(feature = "deflate")]
    compressor: Option<Box<Compressor>>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state())
            .field("buffered_message", &self.reassembler.buffered())
            .field("outgoing", &self.outgoing.len())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection in [`State::Open`], as after a successful opening handshake.
    ///
    /// A client draws its masking keys from a ChaCha CSPRNG seeded by the
    /// operating system, as §5.3 asks ("derived from a strong source of entropy").
    pub fn new(role: Role, config: Config) -> Self {
        #[cfg(feature = "deflate")]
        let agreement = config.deflate_agreement();
        #[cfg(feature = "deflate")]
        let compression = agreement.is_some();
        #[cfg(not(feature = "deflate"))]
        let compression = false;
        #[allow(unused_mut)]
        let mut reassembler = Reassembler::new();
        #[cfg(feature = "deflate")]
        if let Some(agreement) = agreement {
            reassembler =
                reassembler.with_inflate(agreement.inbound(role), config.max_message_size);
        }
        Self {
            role,
            auto_pong: config.auto_pong,
            decoder: Decoder::new(role, config.limits(), compression),
            reassembler,
            outgoing: Outgoing::new(role),
            events: VecDeque::new(),
            failed: false,
            eof: false,
            failing_close: None,
            close_event: None,
            #[cfg(feature = "deflate")]
            compressor: agreement.map(|agreement| Box::new(Compressor::new(agreement, role))),
        }
    }

    /// A client connection whose masking keys come from `keys`, for tests that
    /// need deterministic output. Production code uses [`Connection::new`].
    pub fn with_masking_keys(
        config: Config,
        keys: impl FnMut() -> [u8; 4] + Send + Sync + 'static,
    ) -> Self {
        let mut conn = Self::new(Role::Client, config);
        conn.outgoing.set_masking_keys(Box::new(keys));
        conn
    }

    /// This endpoint's role.
    #[inline]
    pub fn role(&self) -> Role {
        self.role
    }

    /// The ready state (1–3; see [`State::Connecting`] for 0).
    #[inline]
    pub fn state(&self) -> State {
        if self.failed || self.eof {
            return State::Closed;
        }
        match (self.outgoing.close_sent(), self.decoder.closed()) {
            (false, false) => State::Open,
            (true, true) => State::Closed,
            // One side's Close is out, the other's not yet.
            _ => State::Closing,
        }
    }

    /// Whether a Close frame has been queued to the peer: nothing more can
    /// be sent.
    #[inline]
    pub fn close_sent(&self) -> bool {
        self.outgoing.close_sent()
    }

    /// Parses every complete frame in `data`, which may be any split of the
    /// stream: one byte, a frame and a half, or many frames.
    ///
    /// Events land in the queue read by [`Connection::next_event`]; replies
    /// the RFC requires land in the output (Pongs at once, the Close echo
    /// when the Close event is taken). Bytes after the peer's Close frame,
    /// or after a failure, are ignored.
    ///
    /// # Errors
    /// A [`ProtocolError`] when the peer broke RFC 6455 (§7.1.7). The
    /// connection is [`State::Closed`] for reading. Events parsed before the
    /// error stay queued; once they are taken (when
    /// [`Connection::next_event`] returns `None`, at once if there were none)
    /// a Close with [`ProtocolError::close_code`] is queued: write out what is
    /// queued, then close the transport.
    pub fn receive(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        if self.failed || self.eof {
            return Ok(());
        }
        self.receive_frames(data).inspect_err(|err| self.fail(err))
    }

    #[inline]
    fn receive_frames(&mut self, mut data: &[u8]) -> Result<(), ProtocolError> {
        while !data.is_empty() {
            if let Some((header, n)) = self.decoder.whole_message(data) {
                let end = n + header.payload_len as usize;
                let events = &mut self.events;
                self.reassembler
                    .whole(header.opcode, &data[n..end], header.masking_key, |m| {
                        events.push_back(Event::Message(m))
                    })?;
                data = &data[end..];
                continue;
            }
            let (n, item) = self.decoder.decode(data)?;
            data = &data[n..];
            match item {
                Some(Decoded::Data(chunk)) => {
                    let events = &mut self.events;
                    self.reassembler
                        .push(&chunk, |m| events.push_back(Event::Message(m)))?;
                }
                Some(Decoded::Ping(payload)) => {
                    let payload = Bytes::copy_from_slice(payload);
                    if self.auto_pong {
                        self.outgoing.owe_pong(payload.clone());
                    }
                    self.events.push_back(Event::Ping(payload));
                }
                Some(Decoded::Pong(payload)) => {
                    let payload = Bytes::copy_from_slice(payload);
                    self.events.push_back(Event::Pong(payload));
                }
                Some(Decoded::Close(close)) => {
                    // The answering Close is queued when this event is taken,
                    // so the application can still answer the messages before
                    // it: an endpoint "MAY delay sending a Close frame until
                    // its current message is sent" (§5.5.1).
                    self.events.push_back(Event::Close(close));
                    return Ok(());
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Fails the connection (§7.1.7): queue a Close with the error's code unless
    /// one was already sent, and stop reading.
    fn fail(&mut self, err: &ProtocolError) {
        self.failed = true;
        self.decoder.reset();
        self.reassembler.reset();
        self.close_event.get_or_insert_with(|| {
            Box::new(CloseEvent {
                code: err.close_code(),
                reason: String::new(),
                was_clean: false,
            })
        });
        if !self.outgoing.close_sent() {
            self.failing_close = Some(CloseFrame::failing(err));
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
            if !self.outgoing.close_sent() {
                self.outgoing.close(Some(&close));
            }
        }
    }

    /// The transport ended: the peer closed it (a read returned 0 bytes),
    /// it failed, or the driver gave up on it (a timeout). Nothing more is
    /// read, and the state is [`State::Closed`].
    ///
    /// Whether that was clean is decided here: after the peer's Close frame
    /// it is the end of a close handshake; before it, the connection was
    /// closed abnormally, 1006 (RFC 6455 §7.1.5, §7.4.1).
    /// [`Connection::close_event`] tells which.
    pub fn receive_eof(&mut self) {
        self.eof = true;
        if !self.decoder.closed() {
            self.close_event
                .get_or_insert_with(|| Box::new(CloseEvent::abnormal()));
        }
    }

    /// Whether the transport is expected to end soon: a Close went one way
    /// or the other, or the connection failed, and the transport has not
    /// ended yet. A driver then bounds the wait for the end with a close
    /// timeout (§7.1.1: the server closes TCP first; a client waits a while
    /// for it) and calls [`Connection::receive_eof`] when it comes or the
    /// timeout passes.
    #[inline]
    pub fn close_expected(&self) -> bool {
        !self.eof && (self.failed || self.outgoing.close_sent() || self.decoder.closed())
    }

    /// How the connection ended: set when the peer's Close is taken from
    /// [`Connection::next_event`] (clean), when the peer breaks the protocol
    /// (the failing Close's code, not clean), or when the transport ends
    /// before a close handshake (1006). `None` while it is open.
    pub fn close_event(&self) -> Option<&CloseEvent> {
        self.close_event.as_deref()
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
            self.on_peer_close(close.as_ref());
        }
        Some(event)
    }

    fn on_peer_close(&mut self, close: Option<&CloseFrame>) {
        if !self.outgoing.close_sent() {
            // "It SHOULD do so as soon as practical ... typically echoing
            // the status code it received" (§5.5.1).
            let echo = close.map(|c| CloseFrame::new(c.code, ""));
            self.outgoing.close(echo.as_ref());
        }
        self.close_event.get_or_insert_with(|| {
            Box::new(match close {
                Some(c) => CloseEvent {
                    code: c.code,
                    reason: c.reason.clone(),
                    was_clean: true,
                },
                None => CloseEvent {
                    code: CloseCode::NoStatusReceived,
                    reason: String::new(),
                    was_clean: true,
                },
            })
        });
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
    /// [`Connection::send_text`] says. An uncompressed, unmasked payload of
    /// [`SHARED_PAYLOAD_MIN`] bytes or more is queued by reference, not
    /// copied.
    ///
    /// # Errors
    /// [`SendError::NotOpen`] after a Close was sent (ours, our echo, or the one failing the connection).
    pub fn send_message(&mut self, message: &Message) -> Result<(), SendError> {
        let (opcode, payload) = match message {
            Message::Text(t) => (Opcode::Text, t.as_bytes()),
            Message::Binary(b) => (Opcode::Binary, b),
        };
        if payload.len() >= SHARED_PAYLOAD_MIN
            && !self.outgoing.masks()
            && !self.compresses(payload)
        {
            self.check_open()?;
            self.outgoing.frame_shared(opcode, payload);
            return Ok(());
        }
        self.send_data(opcode, payload)
    }

    /// None may follow our Close ([`SendError::NotOpen`], RFC 6455 §5.5.1).
    #[inline]
    fn check_open(&self) -> Result<(), SendError> {
        if self.outgoing.close_sent() {
            return Err(SendError::NotOpen);
        }
        Ok(())
    }

    /// Whether a data message of this payload goes out compressed.
    #[inline]
    fn compresses(&self, payload: &[u8]) -> bool {
        #[cfg(feature = "deflate")]
        if let Some(compressor) = &self.compressor {
            return compressor.compresses(payload.len());
        }
        let _ = payload;
        false
    }

    /// Queues a whole data message, compressed if permessage-deflate is on
    /// and it is long enough.
    #[inline]
    fn send_data(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        #[cfg(feature = "deflate")]
        if self.compresses(payload) {
            self.send_compressed(opcode, payload);
            return Ok(());
        }
        self.outgoing.frame(opcode, true, false, payload);
        Ok(())
    }

    /// Compresses `payload` with this connection's deflater and queues it as
    /// one frame with RSV1 set (RFC 7692 §7.2.1), whatever its size.
    /// Sending an incompressible payload uncompressed would save a few bytes
    /// but is not done: some peers mishandle uncompressed messages on a
    /// compressed connection (kosoku 0.1.0, the Autobahn runner we use, fails
    /// those cases), and with context takeover the peer's window must see
    /// every byte our deflater saw.
    #[cfg(feature = "deflate")]
    fn send_compressed(&mut self, opcode: Opcode, payload: &[u8]) {
        let Some(compressor) = self.compressor.as_deref_mut() else {
            unreachable!("send_compressed runs only with deflate negotiated");
        };
        self.outgoing
            .frame(opcode, true, true, compressor.compress(payload));
        compressor.trim();
    }

    /// Queues a Ping (§5.5.2).
    ///
    /// # Errors
    /// - [`SendError::ControlFrameTooLong`] if `payload` is over 125 bytes.
    /// - [`SendError::NotOpen`] after a Close was sent.
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(Opcode::Ping, payload)
    }

    /// Queues an unsolicited Pong, a unidirectional heartbeat (§5.5.3).
    ///
    /// # Errors
    /// - [`SendError::ControlFrameTooLong`] if `payload` is over 125 bytes.
    /// - [`SendError::NotOpen`] after a Close was sent.
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(Opcode::Pong, payload)
    }

    fn send_control(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), SendError> {
        if payload.len() > MAX_CONTROL_PAYLOAD_LEN {
            return Err(SendError::ControlFrameTooLong { len: payload.len() });
        }
        self.check_open()?;
        self.outgoing.frame(opcode, true, false, payload);
        Ok(())
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
        self.queue_close(Some(CloseFrame::new(code, reason)))
    }

    /// Queues a Close frame with no status code (what a browser's `close()`
    /// with no arguments sends; the peer reports 1005).
    ///
    /// # Errors
    /// [`SendError::NotOpen`] if a Close frame was already sent.
    pub fn send_close_without_code(&mut self) -> Result<(), SendError> {
        self.queue_close(None)
    }

    fn queue_close(&mut self, close: Option<CloseFrame>) -> Result<(), SendError> {
        self.check_open()?;
        if self.failing_close.is_some() {
            // The peer broke the protocol: the Close says so, whatever the
            // application meant to close with.
            self.queue_failing_close();
        } else {
            self.outgoing.close(close.as_ref());
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
        self.check_open()?;
        self.outgoing.frame(opcode, fin, false, payload);
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
        self.check_open()?;
        #[cfg(feature = "deflate")]
        if let Some(compressor) = &self.compressor {
            let payload = message.payload();
            if compressor.compresses(payload.len()) {
                let outbound = compressor.direction();
                if !outbound.no_context_takeover {
                    self.send_compressed(message.opcode, payload);
                    return Ok(());
                }
                let settings = compressor.settings();
                let frame = message.deflated_frame(
                    outbound.max_window_bits,
                    settings.level,
                    settings.mem_level,
                );
                self.outgoing.encoded(&frame);
                return Ok(());
            }
        }
        self.outgoing.encoded(message.frame());
        Ok(())
    }

    /// Every part of the output, oldest first, in up to `dst.len()` slices:
    /// one in the common case; more when payloads of [`SHARED_PAYLOAD_MIN`]
    /// bytes or more are queued by reference, not copied. Returns how many
    /// slices were filled (0 when nothing waits). Write them, with one
    /// vectored write or the first alone, then call
    /// [`Connection::advance_outgoing`] with the count written; repeat until
    /// this returns 0.
    ///
    /// Owed Pongs join the output only when it has drained, so a peer that
    /// sends Pings without reading cannot grow it (§5.5.3 lets us answer only
    /// the latest Ping).
    #[inline]
    pub fn outgoing_vectored<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        self.outgoing.vectored(dst)
    }

    /// Marks the first `n` bytes of the output as written.
    ///
    /// # Panics
    /// If `n` is more than [`Backlog::bytes`].
    #[inline]
    pub fn advance_outgoing(&mut self, n: usize) {
        self.outgoing.advance(n);
    }

    /// Takes every queued byte at once (owed Pongs included), for drivers
    /// that write whole buffers.
    pub fn take_outgoing(&mut self) -> Bytes {
        self.outgoing.take()
    }

    /// What waits to be written: the bytes queued (the browser's
    /// `bufferedAmount`, what backpressure counts) and whether a frame the
    /// protocol requires is among them or owed.
    #[inline]
    pub fn backlog(&self) -> Backlog {
        self.outgoing.backlog()
    }

    /// Frees the buffers a quiet connection does not need: the message buffer
    /// when no message is in progress, the output buffer when it is empty,
    /// and the event queues when empty. Call it when the connection goes
    /// idle; the next message allocates again.
    pub fn shrink_buffers(&mut self) {
        self.reassembler.shrink(self.decoder.mid_message());
        self.decoder.shrink();
        self.outgoing.shrink();
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
        #[cfg(feature = "deflate")]
        if let Some(compressor) = &mut self.compressor {
            compressor.shrink();
        }
    }

    /// Whether part of a frame (header or payload, RFC 6455 §5.2) was
    /// received and the rest is awaited: a driver that is about to flush a
    /// batch of replies may read once more first, since the rest is often
    /// already in the transport.
    #[inline]
    pub fn mid_frame(&self) -> bool {
        self.decoder.mid_frame()
    }

    /// Whether a data message has begun (its first frame's header was
    /// received) and its final frame has not ended (RFC 6455 §5.4): a
    /// driver bounds how long that may last.
    #[inline]
    pub fn mid_message(&self) -> bool {
        self.decoder.mid_message()
    }

    /// The config this connection was made with: its limits, auto-pong and
    /// permessage-deflate agreement.
    ///
    /// A connection between messages (not [`Connection::mid_frame`], not
    /// [`Connection::mid_message`], nothing queued either way, still
    /// [`State::Open`]) and without a compression context kept across
    /// messages (no permessage-deflate, or `server_no_context_takeover` and
    /// `client_no_context_takeover` both agreed, RFC 7692 §7.1.1) behaves
    /// exactly as `Connection::new(conn.role(), conn.config())`: a driver
    /// may keep the config instead of the connection while it is idle.
    pub fn config(&self) -> Config {
        let limits = self.decoder.limits();
        let config = Config::default()
            .max_frame_size(usize::try_from(limits.max_frame_size).unwrap_or(usize::MAX))
            .max_message_size(usize::try_from(limits.max_message_size).unwrap_or(usize::MAX))
            .max_fragments(limits.max_fragments)
            .auto_pong(self.auto_pong);
        #[cfg(feature = "deflate")]
        let config = config.deflate(
            self.compressor
                .as_ref()
                .map(|compressor| compressor.agreement().clone()),
        );
        config
    }

    /// Whether a buffer or the queue of events holds an allocation: false
    /// after [`Connection::shrink_buffers`] on an idle connection, true
    /// again once a frame is received or sent. A driver that shrinks the
    /// buffers now and then learns from it, at no cost per frame, whether
    /// anything happened since.
    pub fn holds_buffers(&self) -> bool {
        self.events.capacity() > 0 || self.buffer_capacity() > 0
    }

    /// Bytes held in buffers (message, output, control, and with
    /// permessage-deflate the inflated message in progress and the
    /// compression scratch buffer), for memory accounting.
    pub fn buffer_capacity(&self) -> usize {
        let buffers =
            self.reassembler.capacity() + self.outgoing.capacity() + self.decoder.capacity();
        #[cfg(feature = "deflate")]
        if let Some(compressor) = &self.compressor {
            return buffers + compressor.scratch_capacity();
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
        if let Some(compressor) = &self.compressor {
            return self.reassembler.inflate_memory() + compressor.memory();
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_gives_back_the_limits_and_auto_pong_it_was_made_with() {
        let config = Config::default()
            .max_frame_size(1000)
            .max_message_size(5000)
            .max_fragments(7)
            .auto_pong(false);
        for role in [Role::Server, Role::Client] {
            assert_eq!(Connection::new(role, config.clone()).config(), config);
        }
    }

    #[test]
    fn holds_buffers_until_shrunk_and_again_after_a_frame() {
        // "Hello" from a client, masked (RFC 6455 §5.7).
        let hello = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut conn = Connection::new(Role::Server, Config::default());
        assert!(!conn.holds_buffers());
        conn.receive(&hello).unwrap();
        assert!(conn.holds_buffers(), "the event queue");
        assert!(conn.next_event().is_some());
        conn.shrink_buffers();
        assert!(!conn.holds_buffers());
        conn.send_text("Hello").unwrap();
        assert!(conn.holds_buffers(), "the output");
        let _ = conn.take_outgoing();
        conn.shrink_buffers();
        assert!(!conn.holds_buffers());
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn config_gives_back_the_deflate_agreement_rfc_7692_section_7_1() {
        let offer = ["permessage-deflate; client_max_window_bits; server_no_context_takeover"];
        let (agreement, _) =
            crate::deflate::negotiate(offer, &crate::deflate::DeflateConfig::server())
                .expect("an acceptable offer");
        let config = Config::default().deflate(Some(agreement));
        assert_eq!(
            Connection::new(Role::Server, config.clone()).config(),
            config
        );
    }
}
