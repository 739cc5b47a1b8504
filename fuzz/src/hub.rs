//! The `hub_session` driver: up to four `/ws` member sessions of one hub
//! (`wshub_hub::fuzzing::member_session`, sharing one `Rooms`), each over
//! an in-memory transport, driven by a sequence of operations decoded from
//! the input, on a current-thread runtime with paused time.
//!
//! Input: a config byte, then operations, each an op byte (kind in the low
//! 4 bits, member in the next 2) and its arguments; a missing byte reads 0.
//!
//! | kind | operation | arguments |
//! |---|---|---|
//! | 0–2 | the client sends one frame | flags (opcode, FIN, RSV1, mask), payload choice |
//! | 3–4 | the client sends a text or binary message in 1–4 fragments, with Pings between | fragments, payload |
//! | 5 | the client sends 1–32 copies of a request | count, request |
//! | 6 | the client takes a chunk of what the hub wrote | size |
//! | 7 | the client stops or starts reading (reading: takes everything as it comes) | |
//! | 8 | transport knobs: most bytes per read, per write, bytes in flight (for the next 1 KiB the hub moves) | knob and value |
//! | 9 | time advances (1 ms to 30 s, in steps of at most 1 s) | duration |
//! | 10 | the hub shuts down (its `watch` is set) | |
//! | 11 | the session is dropped where it stands (cancelled) | |
//! | 12 | a new connection (session) in this slot, if it has none running | |
//! | 13 | the client shuts its write side (EOF) | |
//! | 14 | the connection is reset (reads and writes fail) | |
//! | 15 | the client writes raw bytes (no framing) | length, bytes |
//!
//! Config byte: bit 0 small limits (send queue, write buffer, message size,
//! rooms, rate, presence), bits 1–2 sessions at the start (1–4), bit 3
//! every client sends EOF before the final shutdown, bit 4 clients keep
//! their reading state through the final shutdown (otherwise all read),
//! bit 5 clients do not answer the hub's Close (otherwise they echo it).
//!
//! Checked:
//! - every byte the hub writes is a valid server frame (wshub-proto's
//!   `Decoder` in the client role: unmasked, no reserved bits, ...), nothing
//!   follows its Close, it sends text only: valid UTF-8, `pong` or a JSON
//!   object whose `type` (and an error's `code`) is a documented one, the
//!   first being the connection's `welcome` with its id; its Pings are the
//!   keepalive's;
//! - every Close the hub sends carries one of the codes of docs/protocol.md
//!   (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011), or echoes the code
//!   (or the absence of one) of the client's Close;
//! - the hub never writes to a transport it has shut down;
//! - no busy loop: a session woken 10,000 times in a row without moving a
//!   byte or ending fails;
//! - every session ends within 120 s (virtual) of the shutdown;
//! - once every session has ended or been dropped, `Rooms` has no room
//!   left, no member lagging, and nobody else holds it.
//!
//! A dropped (cancelled) session leaves its rooms on drop, so the final
//! check covers cancelled sessions as well as those that end by themselves
//! (the seed `cancel-after-join` is the case that found this).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::BytesMut;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use wshub_hub::rooms::Rooms;
use wshub_hub::HubConfig;
use wshub_proto::frame::{Decoded, Decoder, Limits, Opcode};
use wshub_proto::{Config, Connection, Event, Role};

/// The close codes docs/protocol.md says the hub sends ("Close codes the
/// hub sends"), and 1003 (unsupported data), which it does not send (it
/// answers a binary message with an `error`) but would be a fair one. The
/// hub also echoes whatever valid code a client closes with, which
/// [`Slot::check_close`] allows.
const HUB_CLOSE_CODES: [u16; 10] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 4001, 4002];

/// `type` of every message the hub sends (docs/protocol.md, "Hub → client").
const SERVER_TYPES: [&str; 8] = [
    "welcome",
    "joined",
    "left",
    "presence",
    "message",
    "error",
    "authed",
    "published",
];

/// `code` of an `error` (docs/protocol.md).
const ERROR_CODES: [&str; 11] = [
    "unauthorized",
    "forbidden",
    "auth_unavailable",
    "bad_json",
    "unknown_op",
    "bad_request",
    "not_joined",
    "binary_unsupported",
    "too_many_rooms",
    "rate_limited",
    "name_taken",
];

/// Sessions at most.
const SLOTS: usize = 4;

/// Bytes one client may send in all; more are not sent (the driver's memory,
/// not the hub's).
const MAX_SENT: usize = 1 << 20;

/// Requests and other text payloads.
const DICT: [&[u8]; 22] = [
    br#"{"op":"join","room":"r1","name":"a"}"#,
    br#"{"op":"join","room":"r1","name":"b"}"#,
    br#"{"op":"join","room":"r1"}"#,
    br#"{"op":"join","room":"r2","name":"a","id":7}"#,
    br#"{"op":"join","room":"r2","name":"anon-1"}"#,
    br#"{"op":"join","room":"r3","name":"c","id":"j"}"#,
    br#"{"op":"publish","room":"r1","message":"hi"}"#,
    br#"{"op":"publish","room":"r1","message":{"k":[1,2,3]},"id":"x"}"#,
    br#"{"op":"publish","room":"r2","message":null}"#,
    br#"{"op":"publish","room":"r3","message":"\u00e9t\u00e9"}"#,
    br#"{"op":"leave","room":"r1"}"#,
    br#"{"op":"leave","room":"r2","id":1}"#,
    br#"{"op":"leave","room":"r3"}"#,
    br#"{"op":"ping"}"#,
    b"ping",
    br#"{"op":"shout","room":"r1"}"#,
    br#"{"op":"join","room":""}"#,
    b"{",
    "caf\u{e9} \u{1f600}".as_bytes(),
    b"caf\xc3",
    br#"{"op":"auth","token":"e30.e30.c2ln","id":9}"#,
    br#"{"op":"publish","room":"r1","message":"once","key":"k1","id":2}"#,
];

/// Close codes a client sends, the invalid ones included.
const CLIENT_CLOSE_CODES: [u16; 16] = [
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1015, 2999, 3000, 4999, 5000,
];

const CHUNKS: [usize; 8] = [1, 2, 5, 13, 64, 700, 8192, usize::MAX];
const CAPACITIES: [usize; 8] = [1, 7, 64, 512, 4096, 16384, 65536, 1 << 20];
/// Bytes the hub's socket holds unread, and takes per write, by default.
const DEFAULT_CAPACITY: usize = 65536;
/// Bytes moved under the knobs set by an operation before they revert.
const TIGHT_BYTES: usize = 1024;
const ADVANCES_MS: [u64; 8] = [1, 10, 250, 1000, 2000, 5000, 10_000, 30_000];

/// `WSHUB_FUZZ_TRACE=1`: print what each client receives, to read a reproducer.
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("WSHUB_FUZZ_TRACE").is_some_and(|v| v == "1"))
}

/// The input, a byte at a time; 0 once it is used up.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// One connection's bytes, both ways, and the transport's behaviour.
struct Pipe {
    /// Sent by the client, not yet read by the hub.
    inbound: VecDeque<u8>,
    /// The client shut its write side: the hub reads EOF after `inbound`.
    client_eof: bool,
    /// Reset: the hub's reads and writes fail.
    reset: bool,
    /// Written by the hub, not yet taken by the client.
    outbound: VecDeque<u8>,
    /// Most bytes `outbound` holds: a full one makes writes wait.
    capacity: usize,
    /// Most bytes one read of the hub returns.
    read_max: usize,
    /// Most bytes one write of the hub takes.
    write_max: usize,
    /// Bytes the hub may still read or write under the last knobs set
    /// (`capacity`, `read_max`, `write_max`) before they are back to their
    /// defaults: a 1-byte socket costs a round trip per byte.
    tight: usize,
    /// The hub shut the transport down.
    shut_down: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    /// Bytes moved either way, for the busy-loop check.
    moved: u64,
}

impl Pipe {
    fn new() -> Self {
        Self {
            inbound: VecDeque::new(),
            client_eof: false,
            reset: false,
            outbound: VecDeque::new(),
            capacity: DEFAULT_CAPACITY,
            read_max: usize::MAX,
            write_max: usize::MAX,
            tight: 0,
            shut_down: false,
            read_waker: None,
            write_waker: None,
            moved: 0,
        }
    }

    /// The hub moved `n` bytes.
    fn moved(&mut self, n: usize) {
        self.moved += n as u64;
        if self.tight > 0 {
            self.tight = self.tight.saturating_sub(n);
            if self.tight == 0 {
                self.capacity = DEFAULT_CAPACITY;
                self.read_max = usize::MAX;
                self.write_max = usize::MAX;
                self.wake_writer();
            }
        }
    }

    fn wake_reader(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
    }

    fn wake_writer(&mut self) {
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

/// The hub's end of a [`Pipe`].
struct Transport(Rc<RefCell<Pipe>>);

impl wshub_hub::fuzzing::Parkable for Transport {}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut pipe = self.0.borrow_mut();
        if pipe.reset {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        if pipe.inbound.is_empty() {
            if pipe.client_eof {
                return Poll::Ready(Ok(()));
            }
            pipe.read_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = pipe.read_max.min(buf.remaining()).min(pipe.inbound.len());
        let (a, b) = pipe.inbound.as_slices();
        let from_a = n.min(a.len());
        buf.put_slice(&a[..from_a]);
        buf.put_slice(&b[..n - from_a]);
        pipe.inbound.drain(..n);
        pipe.moved(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut pipe = self.0.borrow_mut();
        assert!(
            !pipe.shut_down,
            "the hub wrote to a transport it had shut down"
        );
        if pipe.reset {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let room = pipe.capacity.saturating_sub(pipe.outbound.len());
        if room == 0 && !buf.is_empty() {
            pipe.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = pipe.write_max.min(room).min(buf.len());
        pipe.outbound.extend(&buf[..n]);
        pipe.moved(n);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let pipe = self.0.borrow();
        if pipe.reset {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.borrow_mut().shut_down = true;
        Poll::Ready(Ok(()))
    }
}

/// A session's waker: marks it to be polled.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

type Session = Pin<Box<dyn Future<Output = ()>>>;

/// The client's end of one connection, and the hub's session on the other.
struct Slot {
    conn_id: u64,
    pipe: Rc<RefCell<Pipe>>,
    session: Option<Session>,
    flag: Arc<Flag>,
    waker: Waker,
    /// Takes everything the hub writes as it comes.
    reading: bool,
    /// The hub's frames, as a client reads them.
    decoder: Decoder,
    /// The data message being received.
    message: Option<BytesMut>,
    /// Data messages received.
    messages: u64,
    /// The hub's Close arrived.
    got_close: bool,
    /// Answers the hub's Close with its own, as a browser does.
    answer_close: bool,
    /// Sent a Close frame.
    sent_close: bool,
    /// Everything the client sent, to see it as the hub did.
    sent: Vec<u8>,
    /// The hub's protocol settings for this connection.
    protocol: Config,
    mask: [u8; 4],
}

impl Slot {
    fn new(conn_id: u64, session: Session, pipe: Rc<RefCell<Pipe>>, protocol: Config) -> Self {
        let flag = Arc::new(Flag(AtomicBool::new(true)));
        Self {
            conn_id,
            pipe,
            session: Some(session),
            waker: Waker::from(flag.clone()),
            flag,
            reading: true,
            decoder: Decoder::new(Role::Client, Limits::NONE, false),
            message: None,
            messages: 0,
            got_close: false,
            answer_close: true,
            sent_close: false,
            sent: Vec::new(),
            protocol,
            mask: [0x37, 0xfa, 0x21, (conn_id as u8) | 1],
        }
    }

    /// The client can still send: the session runs and its write side is open.
    fn can_send(&self) -> bool {
        let pipe = self.pipe.borrow();
        self.session.is_some() && !pipe.client_eof && !pipe.reset && self.sent.len() < MAX_SENT
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        if !self.can_send() {
            return;
        }
        self.sent.extend_from_slice(bytes);
        let mut pipe = self.pipe.borrow_mut();
        pipe.inbound.extend(bytes);
        pipe.wake_reader();
    }

    fn send_frame(&mut self, fin: bool, rsv1: bool, opcode: u8, masked: bool, payload: &[u8]) {
        if trace() && self.can_send() {
            let text = String::from_utf8_lossy(payload);
            eprintln!(
                "conn {} -> opcode {opcode:#x} fin {fin}: {text:?}",
                self.conn_id
            );
        }
        self.sent_close |= opcode == 0x8;
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(u8::from(fin) << 7 | u8::from(rsv1) << 6 | opcode);
        let mask_bit = u8::from(masked) << 7;
        match payload.len() {
            n @ 0..=125 => frame.push(mask_bit | n as u8),
            n @ 126..=0xffff => {
                frame.push(mask_bit | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(mask_bit | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let start = frame.len() + if masked { 4 } else { 0 };
        if masked {
            frame.extend_from_slice(&self.mask);
        }
        frame.extend_from_slice(payload);
        if masked {
            wshub_proto::frame::apply_mask(&mut frame[start..], self.mask);
        }
        self.send_raw(&frame);
    }

    /// Takes up to `n` bytes of what the hub wrote, and checks them.
    fn take(&mut self, n: usize) {
        let bytes: Vec<u8> = {
            let mut pipe = self.pipe.borrow_mut();
            let n = n.min(pipe.outbound.len());
            if n == 0 {
                return;
            }
            pipe.moved += n as u64;
            pipe.wake_writer();
            let (a, b) = pipe.outbound.as_slices();
            let from_a = n.min(a.len());
            let bytes = [&a[..from_a], &b[..n - from_a]].concat();
            pipe.outbound.drain(..n);
            bytes
        };
        self.receive(&bytes);
    }

    fn receive(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            assert!(
                !self.got_close,
                "conn {}: the hub wrote {} bytes after its Close",
                self.conn_id,
                data.len()
            );
            let (n, item) = self.decoder.decode(data).unwrap_or_else(|e| {
                panic!("conn {}: the hub wrote a bad frame: {e}", self.conn_id)
            });
            let close = match item {
                Some(Decoded::Data(chunk)) => {
                    assert_eq!(chunk.opcode, Opcode::Text, "the hub sends text only");
                    assert!(!chunk.compressed && chunk.masking_key.is_none());
                    assert_eq!(chunk.first, self.message.is_none());
                    let message = self.message.get_or_insert_with(BytesMut::new);
                    chunk.unmask_into(message);
                    if chunk.last {
                        let message = self.message.take().unwrap_or_default();
                        self.check_text(&message);
                    }
                    None
                }
                Some(Decoded::Ping(payload)) => {
                    assert_eq!(payload, b"wshub", "the hub pings only for its keepalive");
                    None
                }
                Some(Decoded::Pong(_)) => None,
                Some(Decoded::Close(close)) => Some(close.map(|c| c.code.as_u16())),
                None => None,
            };
            data = &data[n..];
            if let Some(code) = close {
                if trace() {
                    eprintln!("conn {} <- Close {code:?}", self.conn_id);
                }
                self.got_close = true;
                self.check_close(code);
                if self.answer_close && !self.sent_close {
                    let echo = code.map(u16::to_be_bytes);
                    self.send_frame(
                        true,
                        false,
                        0x8,
                        true,
                        echo.as_ref().map_or(&[], |c| &c[..]),
                    );
                }
            }
        }
    }

    fn check_text(&mut self, bytes: &[u8]) {
        let text = std::str::from_utf8(bytes).expect("the hub's text is UTF-8");
        if trace() {
            eprintln!("conn {} <- {text}", self.conn_id);
        }
        self.messages += 1;
        if text == "pong" {
            assert!(self.messages > 1, "the welcome comes first");
            return;
        }
        let value: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("the hub sent text that is not JSON ({e}): {text:?}"));
        let kind = value["type"].as_str().unwrap_or_default();
        assert!(SERVER_TYPES.contains(&kind), "unknown type: {text}");
        if self.messages == 1 {
            assert_eq!(kind, "welcome", "the welcome comes first: {text}");
            assert_eq!(value["id"], self.conn_id, "{text}");
        } else {
            assert_ne!(kind, "welcome", "a second welcome: {text}");
        }
        if kind == "error" {
            let code = value["code"].as_str().unwrap_or_default();
            assert!(ERROR_CODES.contains(&code), "unknown error code: {text}");
        }
    }

    /// A Close of the hub's carries a documented code, or echoes the
    /// client's first Close, as the hub read it.
    fn check_close(&self, code: Option<u16>) {
        if code.is_some_and(|c| HUB_CLOSE_CODES.contains(&c)) {
            return;
        }
        let first_close = first_close_as_the_hub_read(&self.sent, &self.protocol);
        assert_eq!(
            first_close,
            Some(code),
            "conn {}: the hub closed with {code:?}, which is neither a documented code nor the client's",
            self.conn_id
        );
    }

    /// Takes and checks everything the hub wrote.
    fn take_all(&mut self) {
        self.take(usize::MAX);
    }
}

/// The client's first Close as a server-role protocol core with the hub's
/// limits reads its bytes (`Some(None)` for one without a code).
fn first_close_as_the_hub_read(sent: &[u8], protocol: &Config) -> Option<Option<u16>> {
    let mut conn = Connection::new(Role::Server, protocol.clone().auto_pong(false));
    let _ = conn.receive(sent);
    let first = conn.events().find_map(|event| match event {
        Event::Close(c) => Some(c.map(|c| c.code.as_u16())),
        _ => None,
    });
    first
}

/// The hub's settings: its defaults, or small limits that short inputs reach.
fn hub_config(small: bool) -> HubConfig {
    let mut config = HubConfig::default();
    if small {
        config.send_queue = 48;
        config.send_queue_bytes = 16 << 10;
        config.write_timeout = Duration::from_secs(3);
        config.max_rooms_per_member = 2;
        config.message_rate = 5;
        config.message_burst = 8;
        config.rate_limit_grace = Duration::from_secs(3);
        config.max_hub_message_size = 1024;
        config.presence_limit = 2;
        config.websocket.write_buffer_limit = 1024;
    }
    config
}

/// A text payload: a request of [`DICT`], a publish of a chosen size, raw
/// bytes from the input, or a Close payload.
fn payload(input: &mut Input<'_>, choice: u8) -> Vec<u8> {
    let index = usize::from(choice & 31);
    match choice >> 5 {
        0..=3 => DICT[index % DICT.len()].to_vec(),
        4 => {
            let filler = "x".repeat(index * index * 80);
            let room = ["r1", "r2", "r3"][index % 3];
            format!(r#"{{"op":"publish","room":"{room}","message":"{filler}"}}"#).into_bytes()
        }
        5 | 6 => {
            let n = usize::from(input.byte() & 63);
            input.bytes(n).to_vec()
        }
        _ => {
            let how = input.byte();
            match how & 3 {
                0 => Vec::new(),
                1 => vec![0x03],
                _ => {
                    let code = CLIENT_CLOSE_CODES[usize::from(how >> 2 & 15)];
                    let mut close = code.to_be_bytes().to_vec();
                    close.extend_from_slice(if how & 0x40 == 0 { b"bye" } else { b"\xff" });
                    close
                }
            }
        }
    }
}

struct Hub {
    rooms: Arc<Rooms>,
    config: HubConfig,
    shutdown: watch::Sender<bool>,
    shut_down: bool,
    /// [`Slot::answer_close`] of every client.
    answer_close: bool,
    slots: [Option<Slot>; SLOTS],
    next_id: u64,
}

impl Hub {
    fn connect(&mut self, k: usize) {
        if self.shut_down || self.slots[k].as_ref().is_some_and(|s| s.session.is_some()) {
            return;
        }
        if let Some(mut old) = self.slots[k].take() {
            old.take_all();
        }
        self.next_id += 1;
        let pipe = Rc::new(RefCell::new(Pipe::new()));
        let websocket = wshub_hub::fuzzing::member_websocket_config(&self.config);
        let protocol = websocket.protocol.clone();
        let ws = wshub::WebSocket::from_raw(Transport(pipe.clone()), Role::Server, websocket, &[]);
        let session = wshub_hub::fuzzing::member_session(
            ws,
            self.next_id,
            self.rooms.clone(),
            &self.config,
            self.shutdown.subscribe(),
        );
        let mut slot = Slot::new(self.next_id, Box::pin(session), pipe, protocol);
        slot.answer_close = self.answer_close;
        self.slots[k] = Some(slot);
    }

    /// Drops slot `k`'s session where it stands.
    fn cancel(&mut self, k: usize) {
        let Some(slot) = &mut self.slots[k] else {
            return;
        };
        if slot.session.take().is_none() {
            return;
        }
        slot.take_all();
    }

    /// Polls the sessions that were woken, and lets the reading clients read,
    /// until nothing happens without time passing.
    async fn settle(&mut self) {
        let mut idle_polls = 0u32;
        loop {
            let mut polled = false;
            for slot in self.slots.iter_mut().flatten() {
                if let Some(session) = &mut slot.session {
                    if slot.flag.0.swap(false, Ordering::Relaxed) {
                        polled = true;
                        let before = slot.pipe.borrow().moved;
                        let done = session
                            .as_mut()
                            .poll(&mut Context::from_waker(&slot.waker))
                            .is_ready();
                        if done {
                            if trace() {
                                eprintln!("conn {}: session ended", slot.conn_id);
                            }
                            slot.session = None;
                        }
                        if done || slot.pipe.borrow().moved != before {
                            idle_polls = 0;
                        } else {
                            idle_polls += 1;
                            assert!(
                                idle_polls < 10_000,
                                "busy loop: sessions woken 10,000 times without progress"
                            );
                        }
                    }
                }
                if slot.reading {
                    slot.take_all();
                }
            }
            if !polled {
                if tokio::task::coop::has_budget_remaining() {
                    // No wake was deferred (timers that are due fired in
                    // `advance`, which yields).
                    return;
                }
                // The sessions, all polled in this task, used up its coop
                // budget: tokio hands out the wakes it deferred when the
                // task yields.
                tokio::task::yield_now().await;
                if !self
                    .slots
                    .iter()
                    .flatten()
                    .any(|s| s.session.is_some() && s.flag.0.load(Ordering::Relaxed))
                {
                    return;
                }
            }
        }
    }

    async fn advance(&mut self, ms: u64) {
        let mut left = ms;
        while left > 0 {
            let step = left.min(1000);
            tokio::time::advance(Duration::from_millis(step)).await;
            left -= step;
            self.settle().await;
        }
    }

    fn signal_shutdown(&mut self) {
        if !self.shut_down {
            self.shut_down = true;
            let _ = self.shutdown.send(true);
        }
    }

    async fn op(&mut self, input: &mut Input<'_>) {
        let op = input.byte();
        let k = usize::from(op >> 4 & 3);
        match op & 15 {
            0..=2 => {
                let flags = input.byte();
                let choice = input.byte();
                let payload = payload(input, choice);
                if let Some(slot) = &mut self.slots[k] {
                    let opcode = [0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0x1][usize::from(flags & 7)];
                    let payload = if opcode >= 8 && payload.len() > 125 && flags & 0x40 == 0 {
                        &payload[..125]
                    } else {
                        &payload[..]
                    };
                    let fin = flags & 8 == 0;
                    let rsv1 = flags & 0x30 == 0x30;
                    let masked = flags & 0xc0 != 0xc0;
                    slot.send_frame(fin, rsv1, opcode, masked, payload);
                }
            }
            3 | 4 => {
                let how = input.byte();
                let choice = input.byte();
                let payload = payload(input, choice);
                if let Some(slot) = &mut self.slots[k] {
                    let parts = usize::from(how & 3) + 1;
                    let opcode = if how & 4 == 0 { 0x1 } else { 0x2 };
                    let size = payload.len().div_ceil(parts).max(1);
                    let mut chunks: Vec<&[u8]> = payload.chunks(size).collect();
                    if chunks.is_empty() {
                        chunks.push(&[]);
                    }
                    let last = chunks.len() - 1;
                    for (i, chunk) in chunks.into_iter().enumerate() {
                        let code = if i == 0 { opcode } else { 0x0 };
                        slot.send_frame(i == last, false, code, true, chunk);
                        if how & 8 != 0 && i != last {
                            slot.send_frame(true, false, 0x9, true, b"p");
                        }
                    }
                }
            }
            5 => {
                let count = usize::from(input.byte() & 31) + 1;
                let payload = DICT[usize::from(input.byte()) % DICT.len()];
                if let Some(slot) = &mut self.slots[k] {
                    for _ in 0..count {
                        slot.send_frame(true, false, 0x1, true, payload);
                    }
                }
            }
            6 => {
                let n = CHUNKS[usize::from(input.byte() & 7)];
                if let Some(slot) = &mut self.slots[k] {
                    slot.take(n);
                }
            }
            7 => {
                if let Some(slot) = &mut self.slots[k] {
                    slot.reading = !slot.reading;
                }
            }
            8 => {
                let knob = input.byte();
                if let Some(slot) = &mut self.slots[k] {
                    let mut pipe = slot.pipe.borrow_mut();
                    let value = usize::from(knob >> 2 & 7);
                    pipe.tight = TIGHT_BYTES;
                    match knob & 3 {
                        0 => pipe.read_max = CHUNKS[value],
                        1 => pipe.write_max = CHUNKS[value],
                        _ => {
                            pipe.capacity = CAPACITIES[value];
                            pipe.wake_writer();
                        }
                    }
                }
            }
            9 => {
                let ms = ADVANCES_MS[usize::from(input.byte() & 7)];
                self.advance(ms).await;
            }
            10 => self.signal_shutdown(),
            11 => self.cancel(k),
            12 => self.connect(k),
            13 => {
                if let Some(slot) = &mut self.slots[k] {
                    let mut pipe = slot.pipe.borrow_mut();
                    pipe.client_eof = true;
                    pipe.wake_reader();
                }
            }
            14 => {
                if let Some(slot) = &mut self.slots[k] {
                    let mut pipe = slot.pipe.borrow_mut();
                    pipe.reset = true;
                    pipe.wake_reader();
                    pipe.wake_writer();
                }
            }
            _ => {
                let n = usize::from(input.byte() & 63);
                let bytes = input.bytes(n).to_vec();
                if let Some(slot) = &mut self.slots[k] {
                    if trace() && slot.can_send() {
                        eprintln!("conn {} -> raw {bytes:?}", slot.conn_id);
                    }
                    slot.send_raw(&bytes);
                }
            }
        }
        self.settle().await;
    }
}

/// Runs the input's operations on a hub of up to four sessions, then shuts
/// it down; see the module's documentation for what is checked.
pub fn drive_hub_session(data: &[u8]) {
    thread_local! {
        // One per thread, reused: building one per input took a third of
        // the time. Every input leaves it as it found it (no task, no
        // timer), its paused clock only further on.
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
    }
    RUNTIME.with(|runtime| runtime.block_on(run(data)));
}

async fn run(data: &[u8]) {
    let mut input = Input(data);
    let setup = input.byte();
    let config = hub_config(setup & 1 != 0);
    let rooms = Arc::new(Rooms::new(config.presence_limit));
    let mut hub = Hub {
        rooms: rooms.clone(),
        config,
        shutdown: watch::channel(false).0,
        shut_down: false,
        answer_close: setup & 32 == 0,
        slots: Default::default(),
        next_id: 0,
    };
    for k in 0..=usize::from(setup >> 1 & 3) {
        hub.connect(k);
    }
    hub.settle().await;
    while !input.0.is_empty() {
        hub.op(&mut input).await;
    }

    // The end: EOF from every client (if chosen), the shutdown, and the
    // clients reading (unless chosen otherwise) while time passes.
    for slot in hub.slots.iter_mut().flatten() {
        let mut pipe = slot.pipe.borrow_mut();
        if setup & 8 != 0 {
            pipe.client_eof = true;
            pipe.wake_reader();
        }
        if setup & 16 == 0 {
            slot.reading = true;
            pipe.capacity = pipe.capacity.max(DEFAULT_CAPACITY);
            pipe.wake_writer();
        }
    }
    hub.settle().await;
    hub.signal_shutdown();
    hub.settle().await;
    for _ in 0..120 {
        if hub.slots.iter().flatten().all(|s| s.session.is_none()) {
            break;
        }
        hub.advance(1000).await;
    }
    for slot in hub.slots.iter_mut().flatten() {
        assert!(
            slot.session.is_none(),
            "conn {}: the session still runs 120 s after the shutdown",
            slot.conn_id
        );
        slot.take_all();
    }
    drop(hub);
    // Rooms may stay held for their history (docs/protocol.md, "History
    // and resume"), but no member may: sessions that ended, and dropped
    // ones, left every room.
    assert_eq!(
        rooms.stats().members,
        0,
        "memberships left once every session has ended (and dropped ones left theirs)"
    );
    assert_eq!(
        rooms.backlog().lagging(),
        0,
        "members still counted as lagging"
    );
    assert_eq!(Arc::strong_count(&rooms), 1, "the rooms are still held");
}
