//! Drivers shared by the fuzz targets in `fuzz_targets/`.
//!
//! A target fails on a panic, or on any outcome the documentation of
//! `wshub-proto` rules out; the assertions here state those rules.

pub mod hub;

use wshub_proto::close::MAX_REASON_LEN;
use wshub_proto::frame::{Decoded, Decoder, FrameHeader, Limits, Opcode};
use wshub_proto::{CloseCode, Config, Connection, Event, Message, Role, SendError, State};

/// Small limits, so that short inputs reach them.
const MAX_FRAME_SIZE: usize = 1024;
const MAX_MESSAGE_SIZE: usize = 4096;
const MAX_FRAGMENTS: usize = 8;

/// Longest piece handed to `Connection::receive`, chosen by the input's first byte.
const MAX_CHUNK: [u64; 8] = [1, 2, 3, 7, 16, 64, 1024, u64::MAX];

/// xorshift64: chunk lengths and application actions, derived from the input.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Feeds a [`Connection`] in `role` the bytes of `data` after its first three,
/// which choose how the stream is cut into pieces and what the application
/// does between them: take events, write some or all of the output, send.
///
/// Checks that:
/// - after an `Err`, the state is `Closed`, and once the events parsed before
///   the error are taken, the output ends with a Close frame carrying the
///   error's code (unless a Close of ours went out first: one sent before the
///   error, or the application's answer to one of those events);
/// - what the connection writes is whole, valid frames, masked exactly when
///   the role is `Client`, with nothing after a Close;
/// - events respect the limits, text is UTF-8, and a peer's close code is one
///   allowed on the wire;
/// - sending fails only with `SendError::NotOpen`, and only after a Close.
pub fn drive_connection(role: Role, data: &[u8]) {
    let [class, a, b, stream @ ..] = data else {
        return;
    };
    let max_chunk = MAX_CHUNK[usize::from(class & 7)];
    let mut rng = Rng(u64::from(u16::from_le_bytes([*a, *b])) << 1 | 1);
    let config = Config::default()
        .max_frame_size(MAX_FRAME_SIZE)
        .max_message_size(MAX_MESSAGE_SIZE)
        .max_fragments(MAX_FRAGMENTS);
    let mut conn = match role {
        Role::Client => Connection::with_masking_keys(config, || [0x37, 0xfa, 0x21, 0x3d]),
        Role::Server => Connection::new(Role::Server, config),
    };

    let mut written = Vec::new();
    let mut failure: Option<Option<CloseCode>> = None;
    let mut rest = stream;
    while !rest.is_empty() {
        let n = (1 + rng.below(max_chunk)).min(rest.len() as u64) as usize;
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let close_sent_before = conn.close_sent();
        if let Err(err) = conn.receive(chunk) {
            assert!(failure.is_none(), "a second error after failing: {err}");
            assert_eq!(conn.state(), State::Closed, "{err}");
            failure = Some((!close_sent_before).then(|| err.close_code()));
        }
        if act(&mut conn, &mut rng, &mut written) {
            if let Some(expected) = &mut failure {
                // The application answered an event parsed before the error
                // with its own Close, which then went out in place of the
                // failing one.
                *expected = None;
            }
        }
    }
    check_events(&mut conn);
    written.extend_from_slice(&conn.take_outgoing());
    let last_close = check_written(role, &written);
    if let Some(expected) = failure {
        assert_eq!(conn.state(), State::Closed);
        let code = last_close.expect("a failed connection's output ends with a Close");
        if let Some(expected) = expected {
            assert_eq!(code, Some(expected.as_u16()));
        }
    }
}

/// One application step between two reads; true if it queued our Close.
fn act(conn: &mut Connection, rng: &mut Rng, written: &mut Vec<u8>) -> bool {
    match rng.below(16) {
        0..=3 => check_events(conn),
        4 | 5 => {
            if let Some(event) = conn.next_event() {
                check_event(&event);
            }
        }
        6 | 7 => {
            // A partial write of the first part, as a driver's short write.
            let mut first = [std::io::IoSlice::new(&[])];
            let parts = conn.outgoing_vectored(&mut first);
            let out: &[u8] = if parts == 0 { &[] } else { &first[0] };
            let n = rng.below(out.len() as u64 + 1) as usize;
            written.extend_from_slice(&out[..n]);
            conn.advance_outgoing(n);
        }
        8 | 9 => written.extend_from_slice(&conn.take_outgoing()),
        10 => expect_sent(conn.close_sent(), conn.send_text("echo")),
        11 => expect_sent(conn.close_sent(), conn.send_ping(b"ping")),
        12 if rng.below(8) == 0 => {
            let close_sent_before = conn.close_sent();
            expect_sent(
                close_sent_before,
                conn.send_close(CloseCode::NormalClosure, "bye"),
            );
            return !close_sent_before;
        }
        _ => {}
    }
    false
}

fn expect_sent(close_sent_before: bool, result: Result<(), SendError>) {
    if close_sent_before {
        assert_eq!(result, Err(SendError::NotOpen));
    } else {
        assert_eq!(result, Ok(()));
    }
}

fn check_events(conn: &mut Connection) {
    while let Some(event) = conn.next_event() {
        check_event(&event);
    }
}

fn check_event(event: &Event) {
    match event {
        Event::Message(message) => {
            assert!(message.len() <= MAX_MESSAGE_SIZE);
            if let Message::Text(text) = message {
                assert!(std::str::from_utf8(text.as_bytes()).is_ok());
                assert_eq!(text.as_str().len(), text.len());
            }
        }
        Event::Ping(payload) | Event::Pong(payload) => assert!(payload.len() <= 125),
        Event::Close(Some(close)) => {
            assert!(close.code.is_allowed_on_wire());
            assert!(close.reason.len() <= MAX_REASON_LEN);
        }
        Event::Close(None) => {}
    }
}

/// Walks the frames a connection wrote; returns the code of the Close that
/// ends them (`Some(None)` for a Close without one), `None` if none does.
fn check_written(role: Role, mut written: &[u8]) -> Option<Option<u16>> {
    let mut close = None;
    while !written.is_empty() {
        assert!(close.is_none(), "a frame was written after our Close");
        let (header, n) = FrameHeader::parse(written)
            .expect("we write valid headers")
            .expect("we write whole frames");
        assert_eq!(header.masking_key.is_some(), role == Role::Client);
        assert!(!header.rsv1 && !header.rsv2 && !header.rsv3);
        let len = usize::try_from(header.payload_len).expect("we wrote it");
        assert!(written.len() >= n + len, "we write whole frames");
        let mut payload = written[n..n + len].to_vec();
        if let Some(key) = header.masking_key {
            wshub_proto::frame::apply_mask(&mut payload, key);
        }
        if header.opcode.is_control() {
            assert!(header.fin && len <= 125);
        }
        if header.opcode == Opcode::Close {
            close = Some(match payload[..] {
                [] => None,
                [hi, lo, ..] => {
                    let code = u16::from_be_bytes([hi, lo]);
                    assert!(CloseCode::from(code).is_allowed_on_wire());
                    assert!(std::str::from_utf8(&payload[2..]).is_ok());
                    Some(code)
                }
                [_] => panic!("we wrote a 1-byte Close payload"),
            });
        }
        written = &written[n + len..];
    }
    close
}

/// What a [`Decoder`] hands out, owned, with a data message's chunks joined.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    Data {
        opcode: Opcode,
        compressed: bool,
        payload: Vec<u8>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

/// Decodes `stream` with a [`Decoder`], cut into pieces of at most
/// `max_chunk` bytes (chosen by `rng`); returns the items and the error.
fn decode_all(
    role: Role,
    limits: Limits,
    compression: bool,
    stream: &[u8],
    mut piece: impl FnMut() -> usize,
) -> (Vec<Item>, Option<wshub_proto::ProtocolError>) {
    let mut decoder = Decoder::new(role, limits, compression);
    let mut items = Vec::new();
    let mut message: Option<Item> = None;
    let mut rest = stream;
    while !rest.is_empty() {
        let take = piece().clamp(1, rest.len());
        let mut data = &rest[..take];
        rest = &rest[take..];
        while !data.is_empty() {
            let (n, item) = match decoder.decode(data) {
                Ok(ok) => ok,
                Err(e) => return (items, Some(e)),
            };
            assert!(n <= data.len() && (n > 0 || item.is_some()), "progress");
            data = &data[n..];
            match item {
                Some(Decoded::Data(chunk)) => {
                    assert!(matches!(chunk.opcode, Opcode::Text | Opcode::Binary));
                    assert_eq!(chunk.masking_key.is_some(), role == Role::Server);
                    assert_eq!(chunk.first, message.is_none(), "first marks a new message");
                    let mut bytes = bytes::BytesMut::new();
                    chunk.unmask_into(&mut bytes);
                    let Item::Data { payload, .. } = message.get_or_insert(Item::Data {
                        opcode: chunk.opcode,
                        compressed: chunk.compressed,
                        payload: Vec::new(),
                    }) else {
                        unreachable!()
                    };
                    payload.extend_from_slice(&bytes);
                    if chunk.last {
                        items.extend(message.take());
                    }
                }
                Some(Decoded::Ping(p)) => items.push(Item::Ping(p.to_vec())),
                Some(Decoded::Pong(p)) => items.push(Item::Pong(p.to_vec())),
                Some(Decoded::Close(c)) => {
                    let close = c.map(|c| (c.code.as_u16(), c.reason));
                    if let Some((code, _)) = &close {
                        assert!(CloseCode::from(*code).is_allowed_on_wire());
                    }
                    items.push(Item::Close(close));
                    assert!(decoder.closed());
                }
                None => {}
            }
        }
    }
    (items, None)
}

/// Feeds a [`Decoder`] arbitrary bytes, once in one piece and once cut into
/// pieces chosen by the input's first bytes, and checks that:
/// - the items and the error are the same however the bytes are cut;
/// - every call makes progress; data chunks mark their message's first and
///   last chunk; they are masked exactly when the role is `Server`; a
///   message's payload stays within the limits unless it is compressed;
///   control payloads are at most 125 bytes; nothing follows a Close.
pub fn drive_decoder(data: &[u8]) {
    let [class, a, b, stream @ ..] = data else {
        return;
    };
    let role = if class & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let compression = class & 2 != 0;
    let max_chunk = MAX_CHUNK[usize::from(class >> 2 & 7)];
    let limits = Limits {
        max_frame_size: MAX_FRAME_SIZE as u64,
        max_message_size: MAX_MESSAGE_SIZE as u64,
        max_fragments: MAX_FRAGMENTS,
    };
    let whole = decode_all(role, limits, compression, stream, || usize::MAX);
    let mut rng = Rng(u64::from(u16::from_le_bytes([*a, *b])) << 1 | 1);
    let cut = decode_all(role, limits, compression, stream, || {
        1 + rng.below(max_chunk.min(1 << 20)) as usize
    });
    assert_eq!(whole, cut, "the same items however the stream is cut");
    for item in &whole.0 {
        match item {
            Item::Data {
                compressed,
                payload,
                ..
            } => {
                assert!(*compressed && compression || payload.len() <= MAX_MESSAGE_SIZE);
            }
            Item::Ping(p) | Item::Pong(p) => assert!(p.len() <= 125),
            Item::Close(_) => {}
        }
    }
    if let Some(pos) = whole.0.iter().position(|i| matches!(i, Item::Close(_))) {
        assert_eq!(pos + 1, whole.0.len(), "nothing after a Close");
    }
}
