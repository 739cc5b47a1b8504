//! [`Connection`] through its public API, grouped by RFC 6455 section.
//!
//! The peer's frames are built by hand ([`frame`]) and what the connection
//! writes is parsed back by hand ([`parse_frames`]), so these tests trust
//! neither the crate's encoder nor its parser. Inputs are fed at every split
//! point and one byte at a time wherever a frame could be cut in a bad place.

use bytes::Bytes;
use wshub_proto::frame::Opcode;
use wshub_proto::{
    CloseCode, CloseFrame, Config, Connection, Event, Message, PreparedMessage, ProtocolError,
    Role, SendError, State,
};

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The masking key of the examples in RFC 6455 §5.7.
const RFC_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame header with FIN, a 4-bit `opcode` (reserved ones too), `len` in its
/// minimal 7-, 16- or 64-bit form, and the masking key if any (§5.2).
fn header(opcode: u8, fin: bool, key: Option<[u8; 4]>, len: u64) -> Vec<u8> {
    let mut out = vec![(fin as u8) << 7 | opcode];
    let mask_bit = if key.is_some() { 0x80 } else { 0 };
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    if let Some(key) = key {
        out.extend_from_slice(&key);
    }
    out
}

/// A whole frame: [`header`], then `payload` masked with `key` if given (§5.3).
fn frame(opcode: u8, fin: bool, key: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = header(opcode, fin, key, payload.len() as u64);
    out.extend(payload.iter().enumerate().map(|(i, byte)| match key {
        Some(key) => byte ^ key[i % 4],
        None => *byte,
    }));
    out
}

/// A client-to-server frame, masked with the key of §5.7.
fn masked_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(opcode, fin, Some(RFC_KEY), payload)
}

/// A server-to-client frame.
fn unmasked_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(opcode, fin, None, payload)
}

/// A frame as the peer of a `role` endpoint must send it: masked towards a
/// server, unmasked towards a client (§5.1).
fn frame_to(role: Role, opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    match role {
        Role::Server => masked_frame(opcode, fin, payload),
        Role::Client => unmasked_frame(opcode, fin, payload),
    }
}

/// A connection in `role`; a client masks with the key of §5.7, so its output
/// is deterministic.
fn endpoint(role: Role, config: Config) -> Connection {
    match role {
        Role::Client => Connection::with_masking_keys(config, || RFC_KEY),
        Role::Server => Connection::new(Role::Server, config),
    }
}

fn server() -> Connection {
    endpoint(Role::Server, Config::default())
}

fn client() -> Connection {
    endpoint(Role::Client, Config::default())
}

/// One frame parsed back from what a connection wrote, payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WireFrame {
    fin: bool,
    /// RSV1..RSV3 as the low three bits.
    rsv: u8,
    opcode: u8,
    key: Option<[u8; 4]>,
    payload: Vec<u8>,
}

/// Splits bytes a connection wrote into frames. Panics unless they are whole
/// frames.
fn parse_frames(mut bytes: &[u8]) -> Vec<WireFrame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (b0, b1) = (bytes[0], bytes[1]);
        let mut pos = 2;
        let len = match b1 & 0x7f {
            126 => {
                pos += 2;
                u16::from_be_bytes([bytes[2], bytes[3]]) as usize
            }
            127 => {
                pos += 8;
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize
            }
            n => n as usize,
        };
        let key: Option<[u8; 4]> = if b1 & 0x80 != 0 {
            pos += 4;
            Some(bytes[pos - 4..pos].try_into().unwrap())
        } else {
            None
        };
        let mut payload = bytes[pos..pos + len].to_vec();
        if let Some(key) = key {
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= key[i % 4];
            }
        }
        frames.push(WireFrame {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x7,
            opcode: b0 & 0x0f,
            key,
            payload,
        });
        bytes = &bytes[pos + len..];
    }
    frames
}

/// The status code of the Close frame that ends `bytes`, `None` if its payload
/// is empty. Panics unless the last frame written is a Close.
fn close_code_in(bytes: &[u8]) -> Option<u16> {
    let frames = parse_frames(bytes);
    let last = frames.last().expect("nothing was written");
    assert_eq!(last.opcode, CLOSE, "the last frame written is not a Close");
    match last.payload[..] {
        [] => None,
        [hi, lo, ..] => Some(u16::from_be_bytes([hi, lo])),
        [_] => panic!("a Close with a 1-byte payload was written"),
    }
}

/// What a failed connection leaves: the error, and the events parsed before it.
#[derive(Debug)]
struct Failure {
    error: ProtocolError,
    events: Vec<Event>,
}

/// Asserts that `result` failed the connection with close code `code`
/// (§7.1.7): the state is Closed and, once the events parsed before the error
/// are taken, the failing Close is the last frame written.
#[track_caller]
/// The first part of the output, as a driver writing one slice at a time
/// sees it, without taking it.
fn peek_outgoing(conn: &mut Connection) -> Vec<u8> {
    let mut first = [std::io::IoSlice::new(&[])];
    let n = conn.outgoing_vectored(&mut first);
    first[..n].iter().flat_map(|s| s.iter().copied()).collect()
}

fn assert_failed_with(
    conn: &mut Connection,
    result: Result<(), ProtocolError>,
    code: u16,
) -> Failure {
    let error = result.expect_err("the connection should have failed");
    assert_eq!(error.close_code().as_u16(), code, "{error}");
    assert_eq!(conn.state(), State::Closed);
    let events = conn.events().collect();
    assert_eq!(close_code_in(&peek_outgoing(conn)), Some(code));
    Failure { error, events }
}

/// `wire` cut in two at each of `cuts`, then one byte at a time.
fn chunkings(
    wire: &[u8],
    cuts: impl IntoIterator<Item = usize>,
) -> impl Iterator<Item = Vec<&[u8]>> {
    cuts.into_iter()
        .map(|cut| {
            let (a, b) = wire.split_at(cut);
            vec![a, b]
        })
        .chain(std::iter::once(wire.chunks(1).collect()))
}

fn describe(pieces: &[&[u8]]) -> String {
    match pieces {
        [a, _] => format!("cut at {}", a.len()),
        _ => "one byte at a time".to_owned(),
    }
}

/// Feeds `pieces` in order; the first error, if any.
fn receive_all(conn: &mut Connection, pieces: &[&[u8]]) -> Result<(), ProtocolError> {
    pieces.iter().try_for_each(|piece| conn.receive(piece))
}

/// Feeds `wire` to a fresh connection from `new` at every split point and one
/// byte at a time; each time the events must be `events` and the output
/// exactly `reply`.
#[track_caller]
fn assert_receives_at_every_split(
    new: impl Fn() -> Connection,
    wire: &[u8],
    events: &[Event],
    reply: &[u8],
) {
    assert_receives_at_splits(new, wire, 0..=wire.len(), events, reply);
}

/// [`assert_receives_at_every_split`], cutting only at `cuts`.
#[track_caller]
fn assert_receives_at_splits(
    new: impl Fn() -> Connection,
    wire: &[u8],
    cuts: impl IntoIterator<Item = usize>,
    events: &[Event],
    reply: &[u8],
) {
    for pieces in chunkings(wire, cuts) {
        let mut conn = new();
        if let Err(err) = receive_all(&mut conn, &pieces) {
            panic!("{err}, {}", describe(&pieces));
        }
        let got: Vec<Event> = conn.events().collect();
        assert!(got == events, "wrong events, {}", describe(&pieces));
        let out = conn.take_outgoing();
        assert!(out == reply, "wrong output, {}", describe(&pieces));
        assert_eq!(conn.state(), State::Open);
    }
}

/// `len` bytes counting up from 0, wrapping.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

fn text_event(text: &str) -> Event {
    Event::Message(Message::text(text))
}

mod section_5_7_examples {
    use super::*;

    const UNMASKED_HELLO: [u8; 7] = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    const MASKED_HELLO: [u8; 11] = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    const FRAGMENTED_HELLO: [u8; 9] = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    const UNMASKED_PING: [u8; 7] = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    const MASKED_PONG: [u8; 11] = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];

    /// "256 bytes binary message in a single unmasked frame".
    fn binary_256() -> Vec<u8> {
        let mut wire = vec![0x82, 0x7E, 0x01, 0x00];
        wire.extend(pattern(256));
        wire
    }

    /// "64KiB binary message in a single unmasked frame".
    fn binary_64_kib() -> Vec<u8> {
        let mut wire = vec![0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00];
        wire.extend(pattern(65536));
        wire
    }

    #[test]
    fn our_own_frame_builder_reproduces_the_rfc_vectors() {
        assert_eq!(unmasked_frame(TEXT, true, b"Hello"), UNMASKED_HELLO);
        assert_eq!(masked_frame(TEXT, true, b"Hello"), MASKED_HELLO);
        let mut fragmented = unmasked_frame(TEXT, false, b"Hel");
        fragmented.extend(unmasked_frame(CONTINUATION, true, b"lo"));
        assert_eq!(fragmented, FRAGMENTED_HELLO);
        assert_eq!(unmasked_frame(PING, true, b"Hello"), UNMASKED_PING);
        assert_eq!(masked_frame(PONG, true, b"Hello"), MASKED_PONG);
        assert_eq!(unmasked_frame(BINARY, true, &pattern(256)), binary_256());
        assert_eq!(
            unmasked_frame(BINARY, true, &pattern(65536)),
            binary_64_kib()
        );
    }

    #[test]
    fn a_client_receives_the_single_frame_unmasked_text_at_every_split() {
        assert_receives_at_every_split(client, &UNMASKED_HELLO, &[text_event("Hello")], &[]);
    }

    #[test]
    fn a_server_receives_the_single_frame_masked_text_at_every_split() {
        assert_receives_at_every_split(server, &MASKED_HELLO, &[text_event("Hello")], &[]);
    }

    #[test]
    fn a_client_receives_the_fragmented_unmasked_text_at_every_split() {
        assert_receives_at_every_split(client, &FRAGMENTED_HELLO, &[text_event("Hello")], &[]);
    }

    #[test]
    fn a_server_receives_the_fragmented_text_masked_at_every_split() {
        let mut wire = masked_frame(TEXT, false, b"Hel");
        wire.extend(masked_frame(CONTINUATION, true, b"lo"));
        assert_receives_at_every_split(server, &wire, &[text_event("Hello")], &[]);
    }

    #[test]
    fn a_client_answers_the_unmasked_ping_with_the_masked_pong_of_the_rfc_at_every_split() {
        assert_receives_at_every_split(
            client,
            &UNMASKED_PING,
            &[Event::Ping(Bytes::from_static(b"Hello"))],
            &MASKED_PONG,
        );
    }

    #[test]
    fn a_server_answers_a_masked_ping_with_an_unmasked_pong_at_every_split() {
        assert_receives_at_every_split(
            server,
            &masked_frame(PING, true, b"Hello"),
            &[Event::Ping(Bytes::from_static(b"Hello"))],
            &unmasked_frame(PONG, true, b"Hello"),
        );
    }

    #[test]
    fn a_client_receives_the_256_byte_binary_at_every_split() {
        let event = Event::Message(Message::binary(pattern(256)));
        assert_receives_at_every_split(client, &binary_256(), &[event], &[]);
    }

    #[test]
    fn a_server_receives_the_256_byte_binary_masked_at_every_split() {
        let event = Event::Message(Message::binary(pattern(256)));
        let wire = masked_frame(BINARY, true, &pattern(256));
        assert_receives_at_every_split(server, &wire, &[event], &[]);
    }

    #[test]
    fn a_client_receives_the_64_kib_binary_at_every_split() {
        let event = Event::Message(Message::binary(pattern(65536)));
        assert_receives_at_every_split(client, &binary_64_kib(), &[event], &[]);
    }

    #[test]
    fn a_server_receives_the_64_kib_binary_masked_at_every_split_near_its_ends() {
        // Unmasking 64 KiB at each of 65,547 splits takes half a minute in a
        // debug build; the header, the key and every key offset are all
        // within the first KiB.
        let event = Event::Message(Message::binary(pattern(65536)));
        let wire = masked_frame(BINARY, true, &pattern(65536));
        let cuts = (0..=1024).chain(wire.len() - 1024..=wire.len());
        assert_receives_at_splits(server, &wire, cuts, &[event], &[]);
    }

    #[test]
    fn a_server_encodes_the_unmasked_text_byte_for_byte() {
        let mut conn = server();
        conn.send_text("Hello").unwrap();
        assert_eq!(&conn.take_outgoing()[..], UNMASKED_HELLO);
    }

    #[test]
    fn a_client_masking_with_the_rfc_key_encodes_the_masked_text_byte_for_byte() {
        let mut conn = client();
        conn.send_text("Hello").unwrap();
        assert_eq!(&conn.take_outgoing()[..], MASKED_HELLO);
    }

    #[test]
    fn a_server_encodes_the_fragmented_text_byte_for_byte() {
        let mut conn = server();
        conn.send_fragment(Opcode::Text, b"Hel", false).unwrap();
        conn.send_fragment(Opcode::Continuation, b"lo", true)
            .unwrap();
        assert_eq!(&conn.take_outgoing()[..], FRAGMENTED_HELLO);
    }

    #[test]
    fn a_server_encodes_the_unmasked_ping_and_a_client_the_masked_pong_byte_for_byte() {
        let mut conn = server();
        conn.send_ping(b"Hello").unwrap();
        assert_eq!(&conn.take_outgoing()[..], UNMASKED_PING);
        let mut conn = client();
        conn.send_pong(b"Hello").unwrap();
        assert_eq!(&conn.take_outgoing()[..], MASKED_PONG);
    }

    #[test]
    fn a_server_encodes_the_256_byte_and_64_kib_binary_byte_for_byte() {
        let mut conn = server();
        conn.send_binary(&pattern(256)).unwrap();
        assert_eq!(conn.take_outgoing(), binary_256());
        conn.send_message(&Message::binary(pattern(65536))).unwrap();
        assert_eq!(conn.take_outgoing(), binary_64_kib());
    }
}

mod section_5_1_to_5_3_framing_and_masking {
    use super::*;

    #[test]
    fn a_server_fails_with_1002_on_an_unmasked_frame() {
        for opcode in [TEXT, BINARY, PING, CLOSE] {
            let mut conn = server();
            let result = conn.receive(&unmasked_frame(opcode, true, b"Hello"));
            let failure = assert_failed_with(&mut conn, result, 1002);
            assert_eq!(failure.error, ProtocolError::UnmaskedFrame);
            assert!(failure.events.is_empty());
        }
    }

    #[test]
    fn a_client_fails_with_1002_on_a_masked_frame() {
        for opcode in [TEXT, BINARY, PING, CLOSE] {
            let mut conn = client();
            let result = conn.receive(&masked_frame(opcode, true, b"Hello"));
            let failure = assert_failed_with(&mut conn, result, 1002);
            assert_eq!(failure.error, ProtocolError::MaskedFrame);
            assert!(failure.events.is_empty());
        }
    }

    #[test]
    fn a_client_masks_every_frame_it_sends_with_a_fresh_key_and_a_server_none() {
        let mut keys = (0u32..).map(u32::to_be_bytes);
        let mut conn =
            Connection::with_masking_keys(Config::default(), move || keys.next().expect("endless"));
        conn.send_text("a").unwrap();
        conn.send_binary(b"b").unwrap();
        conn.send_ping(b"c").unwrap();
        conn.send_close(CloseCode::NormalClosure, "").unwrap();
        let frames = parse_frames(&conn.take_outgoing());
        let keys: Vec<_> = frames.iter().map(|f| f.key).collect();
        assert_eq!(keys, [0u32, 1, 2, 3].map(|k| Some(k.to_be_bytes())));

        let mut conn = server();
        conn.send_text("a").unwrap();
        conn.send_close(CloseCode::NormalClosure, "").unwrap();
        let frames = parse_frames(&conn.take_outgoing());
        assert!(frames.iter().all(|f| f.key.is_none()));
    }

    #[test]
    fn any_rsv_bit_without_an_extension_fails_with_1002() {
        for (bit, bits) in [(0x40, 0b100), (0x20, 0b010), (0x10, 0b001), (0x70, 0b111)] {
            for role in [Role::Server, Role::Client] {
                let mut wire = frame_to(role, TEXT, true, b"Hello");
                wire[0] |= bit;
                let mut conn = endpoint(role, Config::default());
                let result = conn.receive(&wire);
                let err = assert_failed_with(&mut conn, result, 1002).error;
                assert_eq!(err, ProtocolError::ReservedBitsSet { bits });
            }
        }
    }

    #[test]
    fn every_reserved_opcode_fails_with_1002() {
        for opcode in (0x3..=0x7).chain(0xB..=0xF) {
            for role in [Role::Server, Role::Client] {
                let mut conn = endpoint(role, Config::default());
                let result = conn.receive(&frame_to(role, opcode, true, b""));
                let err = assert_failed_with(&mut conn, result, 1002).error;
                assert_eq!(err, ProtocolError::ReservedOpcode { opcode });
            }
        }
    }

    #[test]
    fn a_64_bit_length_with_its_most_significant_bit_set_fails_with_1002() {
        let mut conn = server();
        let result = conn.receive(&header(BINARY, true, Some(RFC_KEY), 1 << 63));
        let err = assert_failed_with(&mut conn, result, 1002).error;
        assert_eq!(err, ProtocolError::LengthMsbSet);
    }

    #[test]
    fn a_huge_length_field_allocates_nothing_until_payload_arrives() {
        // Were the buffer sized from the length field, reserving 2^63 - 1 bytes
        // would abort this test process.
        let unlimited = Config::default()
            .max_frame_size(usize::MAX)
            .max_message_size(usize::MAX);
        let mut conn = endpoint(Role::Server, unlimited);
        conn.receive(&header(BINARY, true, Some(RFC_KEY), (1 << 63) - 1))
            .unwrap();
        conn.receive(&[0; 1000]).unwrap();
        assert_eq!(conn.events().count(), 0);
        assert_eq!(conn.state(), State::Open);
    }

    #[test]
    fn a_length_in_a_longer_form_than_needed_fails_with_1002() {
        let cases: [(&[u8], u64); 4] = [
            (&[0x82, 0x80 | 126, 0x00, 0x7d], 125),
            (&[0x82, 0x80 | 126, 0x00, 0x00], 0),
            (&[0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff], 0xffff),
            (&[0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0x00, 0x7e], 126),
        ];
        for (prefix, len) in cases {
            let mut wire = prefix.to_vec();
            wire.extend_from_slice(&RFC_KEY);
            let mut conn = server();
            let result = conn.receive(&wire);
            let err = assert_failed_with(&mut conn, result, 1002).error;
            assert_eq!(err, ProtocolError::NonMinimalLength { len });
        }
    }

    #[test]
    fn lengths_at_the_7_16_and_64_bit_boundaries_are_received() {
        for len in [0, 125, 126, 127, 0xffff, 0x1_0000] {
            let wire = masked_frame(BINARY, true, &pattern(len));
            let mut conn = server();
            conn.receive(&wire).unwrap();
            let events: Vec<_> = conn.events().collect();
            assert_eq!(events, [Event::Message(Message::binary(pattern(len)))]);
        }
    }
}

mod section_5_4_fragmentation {
    use super::*;

    #[test]
    fn a_continuation_without_a_message_to_continue_fails_with_1002() {
        for fin in [true, false] {
            let mut conn = server();
            let result = conn.receive(&masked_frame(CONTINUATION, fin, b"lo"));
            let err = assert_failed_with(&mut conn, result, 1002).error;
            assert_eq!(err, ProtocolError::UnexpectedContinuation);
        }
    }

    #[test]
    fn a_continuation_after_a_complete_message_fails_with_1002() {
        let mut conn = server();
        conn.receive(&masked_frame(TEXT, true, b"Hello")).unwrap();
        let result = conn.receive(&masked_frame(CONTINUATION, true, b"!"));
        let failure = assert_failed_with(&mut conn, result, 1002);
        assert_eq!(failure.events, [text_event("Hello")]);
    }

    #[test]
    fn a_new_data_frame_during_a_fragmented_message_fails_with_1002() {
        for opcode in [TEXT, BINARY] {
            let mut conn = server();
            conn.receive(&masked_frame(TEXT, false, b"Hel")).unwrap();
            let result = conn.receive(&masked_frame(opcode, true, b"lo"));
            let failure = assert_failed_with(&mut conn, result, 1002);
            assert_eq!(failure.error, ProtocolError::ExpectedContinuation);
            assert!(failure.events.is_empty());
        }
    }

    #[test]
    fn a_ping_between_fragments_is_delivered_and_answered_at_every_split() {
        let mut wire = masked_frame(TEXT, false, b"Hel");
        wire.extend(masked_frame(PING, true, b"are you there?"));
        wire.extend(masked_frame(CONTINUATION, true, b"lo"));
        assert_receives_at_every_split(
            server,
            &wire,
            &[
                Event::Ping(Bytes::from_static(b"are you there?")),
                text_event("Hello"),
            ],
            &unmasked_frame(PONG, true, b"are you there?"),
        );
    }

    #[test]
    fn pongs_and_a_close_between_fragments_are_delivered_in_wire_order() {
        let mut wire = unmasked_frame(BINARY, false, b"ab");
        wire.extend(unmasked_frame(PONG, true, b"1"));
        wire.extend(unmasked_frame(CONTINUATION, false, b"cd"));
        wire.extend(unmasked_frame(PONG, true, b"2"));
        wire.extend(unmasked_frame(CONTINUATION, true, b"ef"));
        wire.extend(unmasked_frame(CLOSE, true, &1000u16.to_be_bytes()));
        let mut conn = client();
        conn.receive(&wire).unwrap();
        assert_eq!(
            conn.events().collect::<Vec<_>>(),
            [
                Event::Pong(Bytes::from_static(b"1")),
                Event::Pong(Bytes::from_static(b"2")),
                Event::Message(Message::binary(&b"abcdef"[..])),
                Event::Close(Some(CloseFrame::new(CloseCode::NormalClosure, ""))),
            ]
        );
    }

    #[test]
    fn empty_fragments_make_up_a_message() {
        let mut wire = masked_frame(TEXT, false, b"");
        wire.extend(masked_frame(CONTINUATION, false, b"Hello"));
        wire.extend(masked_frame(CONTINUATION, false, b""));
        wire.extend(masked_frame(CONTINUATION, true, b""));
        assert_receives_at_every_split(server, &wire, &[text_event("Hello")], &[]);
    }

    #[test]
    fn a_message_after_a_fragmented_one_starts_afresh() {
        let mut wire = masked_frame(BINARY, false, b"\xff");
        wire.extend(masked_frame(CONTINUATION, true, b"\xfe"));
        wire.extend(masked_frame(TEXT, true, b"ok"));
        let mut conn = server();
        conn.receive(&wire).unwrap();
        assert_eq!(
            conn.events().collect::<Vec<_>>(),
            [
                Event::Message(Message::binary(&b"\xff\xfe"[..])),
                text_event("ok")
            ]
        );
    }
}

mod section_8_1_utf8 {
    use super::*;

    const KOSME: &str = "κόσμε";

    #[test]
    fn text_cut_inside_a_code_point_between_two_fragments_is_accepted() {
        let bytes = KOSME.as_bytes();
        for cut in 0..=bytes.len() {
            let mut wire = masked_frame(TEXT, false, &bytes[..cut]);
            wire.extend(masked_frame(CONTINUATION, true, &bytes[cut..]));
            let mut conn = server();
            conn.receive(&wire)
                .unwrap_or_else(|e| panic!("{e}, cut at {cut}"));
            assert_eq!(conn.events().collect::<Vec<_>>(), [text_event(KOSME)]);
        }
    }

    #[test]
    fn text_sent_one_byte_per_fragment_is_accepted() {
        let text = "κόσμε 🎉 €";
        let bytes = text.as_bytes();
        let mut wire = Vec::new();
        for (i, byte) in bytes.iter().enumerate() {
            let opcode = if i == 0 { TEXT } else { CONTINUATION };
            wire.extend(masked_frame(opcode, i == bytes.len() - 1, &[*byte]));
        }
        assert_receives_at_every_split(server, &wire, &[text_event(text)], &[]);
    }

    #[test]
    fn invalid_utf8_split_across_fragments_fails_with_1007_before_the_final_fragment() {
        // 0xF4 can start a code point; 0xF4 0x90 would be above U+10FFFF.
        let mut conn = server();
        conn.receive(&masked_frame(TEXT, false, b"ok\xf4")).unwrap();
        let result = conn.receive(&masked_frame(CONTINUATION, false, b"\x90\x80"));
        let err = assert_failed_with(&mut conn, result, 1007).error;
        assert_eq!(err, ProtocolError::InvalidUtf8 { offset: 2 });
        let after = conn.receive(&masked_frame(CONTINUATION, true, b"\x80"));
        assert_eq!(after, Ok(()), "input after a failure is ignored");
        assert_eq!(conn.events().count(), 0);
    }

    #[test]
    fn a_utf16_surrogate_in_a_later_fragment_fails_with_1007_at_once() {
        let mut conn = server();
        conn.receive(&masked_frame(TEXT, false, KOSME.as_bytes()))
            .unwrap();
        let result = conn.receive(&masked_frame(CONTINUATION, false, b"\xed\xa0\x80"));
        let err = assert_failed_with(&mut conn, result, 1007).error;
        assert_eq!(
            err,
            ProtocolError::InvalidUtf8 {
                offset: KOSME.len() as u64
            }
        );
    }

    #[test]
    fn invalid_utf8_fails_with_1007_before_its_frame_is_complete() {
        let payload = b"ab\xc0\xafcdefgh";
        let wire = masked_frame(TEXT, true, payload);
        let header_len = wire.len() - payload.len();
        let mut conn = server();
        let result = conn.receive(&wire[..header_len + 4]);
        let err = assert_failed_with(&mut conn, result, 1007).error;
        assert_eq!(err, ProtocolError::InvalidUtf8 { offset: 2 });
    }

    #[test]
    fn text_ending_inside_a_code_point_at_fin_fails_with_1007() {
        let mut conn = server();
        let result = conn.receive(&masked_frame(TEXT, true, b"a\xe2\x82"));
        assert_failed_with(&mut conn, result, 1007);

        let mut conn = server();
        conn.receive(&masked_frame(TEXT, false, b"a\xe2")).unwrap();
        let result = conn.receive(&masked_frame(CONTINUATION, true, b"\x82"));
        let err = assert_failed_with(&mut conn, result, 1007).error;
        assert_eq!(err, ProtocolError::InvalidUtf8 { offset: 1 });
    }

    #[test]
    fn text_ending_inside_a_code_point_at_an_empty_final_fragment_fails_with_1007() {
        let mut conn = client();
        conn.receive(&unmasked_frame(TEXT, false, b"\xf0\x9f\x8e"))
            .unwrap();
        let result = conn.receive(&unmasked_frame(CONTINUATION, true, b""));
        assert_failed_with(&mut conn, result, 1007);
    }

    #[test]
    fn binary_messages_are_not_checked_for_utf8() {
        let mut conn = server();
        conn.receive(&masked_frame(BINARY, true, b"\xff\xfe\xc0"))
            .unwrap();
        assert_eq!(
            conn.events().collect::<Vec<_>>(),
            [Event::Message(Message::binary(&b"\xff\xfe\xc0"[..]))]
        );
    }
}

mod section_5_5_control_frames {
    use super::*;

    #[test]
    fn a_control_frame_over_125_bytes_fails_with_1002() {
        for opcode in [PING, PONG, CLOSE] {
            let mut payload = 1000u16.to_be_bytes().to_vec();
            payload.resize(126, b'x');
            let mut conn = server();
            let wire = masked_frame(opcode, true, &payload);
            // Only the header: the length alone is enough to fail.
            let result = conn.receive(&wire[..8]);
            let err = assert_failed_with(&mut conn, result, 1002).error;
            assert_eq!(err, ProtocolError::ControlFrameTooLong { len: 126 });
        }
    }

    #[test]
    fn a_ping_of_125_bytes_is_answered_with_the_same_125_bytes() {
        let payload = pattern(125);
        let mut conn = server();
        conn.receive(&masked_frame(PING, true, &payload)).unwrap();
        assert_eq!(conn.take_outgoing(), unmasked_frame(PONG, true, &payload));
    }

    #[test]
    fn a_fragmented_control_frame_fails_with_1002() {
        for opcode in [PING, PONG, CLOSE] {
            let mut conn = server();
            let result = conn.receive(&masked_frame(opcode, false, b""));
            let err = assert_failed_with(&mut conn, result, 1002).error;
            assert_eq!(err, ProtocolError::FragmentedControlFrame);
        }
    }

    #[test]
    fn a_ping_flood_owes_at_most_16_pongs_the_last_answering_the_latest_ping() {
        let mut conn = server();
        for i in 0..100 {
            let payload = format!("ping {i}");
            conn.receive(&masked_frame(PING, true, payload.as_bytes()))
                .unwrap();
        }
        assert_eq!(conn.events().count(), 100);
        let pongs = parse_frames(&peek_outgoing(&mut conn));
        assert!((1..=16).contains(&pongs.len()), "{} pongs", pongs.len());
        assert!(pongs.iter().all(|f| f.opcode == PONG && f.fin));
        assert_eq!(pongs.last().unwrap().payload, b"ping 99");
    }

    #[test]
    fn a_ping_flood_in_one_read_owes_at_most_16_pongs() {
        let wire: Vec<u8> = (0..100u8)
            .flat_map(|i| masked_frame(PING, true, &[i]))
            .collect();
        let mut conn = server();
        conn.receive(&wire).unwrap();
        let pongs = parse_frames(&conn.take_outgoing());
        assert!((1..=16).contains(&pongs.len()), "{} pongs", pongs.len());
        // The Pongs kept answer the latest Pings, oldest first.
        let payloads: Vec<u8> = pongs.iter().map(|f| f.payload[0]).collect();
        let latest: Vec<u8> = (100 - pongs.len() as u8..100).collect();
        assert_eq!(payloads, latest);
    }

    #[test]
    fn each_ping_is_answered_when_the_output_is_taken_after_each() {
        let mut conn = client();
        let mut written = Vec::new();
        for i in 0..10u8 {
            conn.receive(&unmasked_frame(PING, true, &[i])).unwrap();
            written.extend_from_slice(&conn.take_outgoing());
        }
        let pongs = parse_frames(&written);
        let payloads: Vec<_> = pongs
            .iter()
            .map(|f| (f.opcode, f.payload.clone()))
            .collect();
        let expected: Vec<_> = (0..10u8).map(|i| (PONG, vec![i])).collect();
        assert_eq!(payloads, expected);
    }

    #[test]
    fn without_auto_pong_a_ping_is_delivered_and_not_answered() {
        let mut conn = endpoint(Role::Server, Config::default().auto_pong(false));
        conn.receive(&masked_frame(PING, true, b"x")).unwrap();
        assert_eq!(
            conn.events().collect::<Vec<_>>(),
            [Event::Ping(Bytes::from_static(b"x"))]
        );
        assert!(conn.take_outgoing().is_empty());
        assert!(conn.backlog().is_empty());
    }

    #[test]
    fn output_can_be_written_in_pieces() {
        let mut conn = server();
        conn.receive(&masked_frame(PING, true, b"Hello")).unwrap();
        assert!(!conn.backlog().is_empty());
        let expected = unmasked_frame(PONG, true, b"Hello");
        let mut written = Vec::new();
        loop {
            let pending = peek_outgoing(&mut conn);
            if pending.is_empty() {
                break;
            }
            let n = pending.len().min(3);
            written.extend_from_slice(&pending[..n]);
            conn.advance_outgoing(n);
        }
        assert_eq!(written, expected);
        assert!(conn.backlog().is_empty());
    }

    #[test]
    fn send_ping_and_send_pong_refuse_over_125_bytes_and_write_nothing() {
        let mut conn = server();
        assert_eq!(
            conn.send_ping(&[0; 126]),
            Err(SendError::ControlFrameTooLong { len: 126 })
        );
        assert_eq!(
            conn.send_pong(&[0; 126]),
            Err(SendError::ControlFrameTooLong { len: 126 })
        );
        assert!(conn.take_outgoing().is_empty());
        assert_eq!(conn.state(), State::Open);
    }
}

mod section_5_5_1_and_7_4_close {
    use super::*;

    #[test]
    fn every_received_close_code_is_echoed_if_allowed_and_fails_with_1002_if_not() {
        for code in 0..=u16::MAX {
            let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            let mut conn = server();
            let result = conn.receive(&masked_frame(CLOSE, true, &code.to_be_bytes()));
            if allowed {
                assert_eq!(result, Ok(()), "{code}");
                assert_eq!(
                    conn.events().collect::<Vec<_>>(),
                    [Event::Close(Some(CloseFrame::new(
                        CloseCode::from(code),
                        ""
                    )))]
                );
                assert_eq!(
                    conn.take_outgoing(),
                    unmasked_frame(CLOSE, true, &code.to_be_bytes()),
                    "{code}"
                );
                assert_eq!(conn.state(), State::Closed);
            } else {
                let failure = assert_failed_with(&mut conn, result, 1002);
                assert_eq!(failure.error, ProtocolError::InvalidCloseCode { code });
                assert!(failure.events.is_empty());
            }
        }
    }

    #[test]
    fn a_close_is_echoed_with_its_code_and_delivered_with_its_reason() {
        let mut payload = 4000u16.to_be_bytes().to_vec();
        payload.extend_from_slice("au revoir, κόσμε".as_bytes());
        let mut conn = client();
        conn.receive(&unmasked_frame(CLOSE, true, &payload))
            .unwrap();
        assert_eq!(
            conn.events().collect::<Vec<_>>(),
            [Event::Close(Some(CloseFrame::new(
                CloseCode::Other(4000),
                "au revoir, κόσμε"
            )))]
        );
        let echo = parse_frames(&conn.take_outgoing());
        assert_eq!(echo.len(), 1);
        assert_eq!(echo[0].opcode, CLOSE);
        assert_eq!(echo[0].key, Some(RFC_KEY), "a client masks its echo");
        assert_eq!(echo[0].payload, 4000u16.to_be_bytes());
        assert_eq!(conn.state(), State::Closed);
    }

    #[test]
    fn an_empty_close_is_echoed_as_an_empty_close() {
        let mut conn = server();
        conn.receive(&masked_frame(CLOSE, true, b"")).unwrap();
        assert_eq!(conn.events().collect::<Vec<_>>(), [Event::Close(None)]);
        assert_eq!(conn.take_outgoing(), unmasked_frame(CLOSE, true, b""));
        assert_eq!(conn.state(), State::Closed);
    }

    #[test]
    fn a_one_byte_close_payload_fails_with_1002() {
        let mut conn = server();
        let result = conn.receive(&masked_frame(CLOSE, true, &[0x03]));
        let err = assert_failed_with(&mut conn, result, 1002).error;
        assert_eq!(err, ProtocolError::CloseTooShort);
    }

    #[test]
    fn a_close_reason_that_is_not_utf8_fails_with_1007() {
        for reason in [&b"\xff"[..], b"ok\xc0\xaf", b"cut \xce"] {
            let mut payload = 1000u16.to_be_bytes().to_vec();
            payload.extend_from_slice(reason);
            let mut conn = server();
            let result = conn.receive(&masked_frame(CLOSE, true, &payload));
            let err = assert_failed_with(&mut conn, result, 1007).error;
            assert!(matches!(err, ProtocolError::InvalidUtf8 { .. }), "{err}");
        }
    }

    #[test]
    fn a_close_with_a_123_byte_reason_fills_a_control_frame_and_is_accepted() {
        let mut payload = 1001u16.to_be_bytes().to_vec();
        payload.extend_from_slice(&[b'r'; 123]);
        let mut conn = server();
        conn.receive(&masked_frame(CLOSE, true, &payload)).unwrap();
        let Some(Event::Close(Some(close))) = conn.next_event() else {
            panic!("no Close event");
        };
        assert_eq!(close.code, CloseCode::GoingAway);
        assert_eq!(close.reason.len(), 123);
    }

    #[test]
    fn after_we_send_close_the_state_is_closing_and_the_peers_close_makes_it_closed() {
        let mut conn = server();
        conn.send_close(CloseCode::NormalClosure, "bye").unwrap();
        assert_eq!(conn.state(), State::Closing);
        assert_eq!(
            conn.take_outgoing(),
            unmasked_frame(CLOSE, true, b"\x03\xe8bye")
        );
        // Data the peer sent before it saw our Close is still delivered.
        conn.receive(&masked_frame(TEXT, true, b"late")).unwrap();
        conn.receive(&masked_frame(CLOSE, true, &1000u16.to_be_bytes()))
            .unwrap();
        assert_eq!(conn.state(), State::Closed);
        assert_eq!(
            conn.events().collect::<Vec<_>>(),
            [
                text_event("late"),
                Event::Close(Some(CloseFrame::new(CloseCode::NormalClosure, "")))
            ]
        );
        assert!(conn.take_outgoing().is_empty(), "a Close is sent only once");
    }

    #[test]
    fn send_close_refuses_codes_that_must_not_be_sent_and_writes_nothing() {
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let mut conn = server();
            assert_eq!(
                conn.send_close(CloseCode::from(code), ""),
                Err(SendError::InvalidCloseCode { code })
            );
            assert!(conn.take_outgoing().is_empty());
            assert_eq!(conn.state(), State::Open);
        }
    }

    #[test]
    fn send_close_refuses_a_reason_over_123_bytes_and_writes_nothing() {
        let mut conn = client();
        let long = "é".repeat(62);
        assert_eq!(
            conn.send_close(CloseCode::NormalClosure, &long),
            Err(SendError::ReasonTooLong { len: 124 })
        );
        assert!(conn.take_outgoing().is_empty());
        assert_eq!(conn.state(), State::Open);
        let longest = "r".repeat(123);
        conn.send_close(CloseCode::NormalClosure, &longest).unwrap();
        let frames = parse_frames(&conn.take_outgoing());
        assert_eq!(frames[0].payload.len(), 125);
    }

    #[test]
    fn nothing_is_sent_after_a_close() {
        let mut conn = server();
        conn.send_close(CloseCode::GoingAway, "").unwrap();
        let close = conn.take_outgoing();
        assert_eq!(close_code_in(&close), Some(1001));
        let prepared = PreparedMessage::new(&Message::text("x"));
        assert_eq!(conn.send_text("x"), Err(SendError::NotOpen));
        assert_eq!(conn.send_binary(b"x"), Err(SendError::NotOpen));
        assert_eq!(
            conn.send_message(&Message::text("x")),
            Err(SendError::NotOpen)
        );
        assert_eq!(
            conn.send_fragment(Opcode::Text, b"x", false),
            Err(SendError::NotOpen)
        );
        assert_eq!(conn.send_prepared(&prepared), Err(SendError::NotOpen));
        assert_eq!(conn.send_ping(b"x"), Err(SendError::NotOpen));
        assert_eq!(conn.send_pong(b"x"), Err(SendError::NotOpen));
        assert_eq!(
            conn.send_close(CloseCode::NormalClosure, ""),
            Err(SendError::NotOpen)
        );
        assert_eq!(conn.send_close_without_code(), Err(SendError::NotOpen));
        // A Ping that arrives now is delivered but not answered.
        conn.receive(&masked_frame(PING, true, b"x")).unwrap();
        assert_eq!(conn.events().count(), 1);
        assert!(conn.take_outgoing().is_empty());
        assert!(conn.backlog().is_empty());
    }

    #[test]
    fn nothing_is_sent_after_the_connection_failed() {
        let mut conn = server();
        let result = conn.receive(&unmasked_frame(TEXT, true, b"x"));
        assert_failed_with(&mut conn, result, 1002);
        conn.take_outgoing();
        assert_eq!(conn.send_text("x"), Err(SendError::NotOpen));
        assert_eq!(conn.send_ping(b"x"), Err(SendError::NotOpen));
        assert!(conn.take_outgoing().is_empty());
    }

    #[test]
    fn send_close_without_code_writes_an_empty_close() {
        let mut conn = server();
        conn.send_close_without_code().unwrap();
        assert_eq!(conn.take_outgoing(), unmasked_frame(CLOSE, true, b""));
        assert_eq!(conn.state(), State::Closing);
    }

    #[test]
    fn bytes_after_the_peers_close_are_ignored() {
        let mut wire = masked_frame(CLOSE, true, &1000u16.to_be_bytes());
        wire.extend(masked_frame(TEXT, true, b"too late"));
        wire.extend([0xff; 20]);
        let mut conn = server();
        assert_eq!(conn.receive(&wire), Ok(()));
        assert_eq!(conn.receive(&[0x00; 20]), Ok(()));
        assert_eq!(
            conn.events().collect::<Vec<_>>(),
            [Event::Close(Some(CloseFrame::new(
                CloseCode::NormalClosure,
                ""
            )))]
        );
        assert_eq!(
            conn.take_outgoing(),
            unmasked_frame(CLOSE, true, &1000u16.to_be_bytes())
        );
    }

    #[test]
    fn pongs_owed_go_out_before_the_close_echo() {
        let mut wire = masked_frame(PING, true, b"1");
        wire.extend(masked_frame(CLOSE, true, &1000u16.to_be_bytes()));
        let mut conn = server();
        conn.receive(&wire).unwrap();
        assert_eq!(conn.events().count(), 2);
        let mut expected = unmasked_frame(PONG, true, b"1");
        expected.extend(unmasked_frame(CLOSE, true, &1000u16.to_be_bytes()));
        assert_eq!(conn.take_outgoing(), expected);
    }

    #[test]
    fn the_close_echo_waits_until_the_close_event_is_taken_so_earlier_replies_go_first() {
        // An endpoint "MAY delay sending a Close frame until its current
        // message is sent" (§5.5.1).
        let mut wire = masked_frame(TEXT, true, b"question");
        wire.extend(masked_frame(CLOSE, true, &1000u16.to_be_bytes()));
        let mut conn = server();
        conn.receive(&wire).unwrap();
        assert_eq!(conn.next_event(), Some(text_event("question")));
        assert_eq!(conn.state(), State::Closing);
        conn.send_text("answer").unwrap();
        assert_eq!(
            conn.next_event(),
            Some(Event::Close(Some(CloseFrame::new(
                CloseCode::NormalClosure,
                ""
            ))))
        );
        assert_eq!(conn.state(), State::Closed);
        let mut expected = unmasked_frame(TEXT, true, b"answer");
        expected.extend(unmasked_frame(CLOSE, true, &1000u16.to_be_bytes()));
        assert_eq!(conn.take_outgoing(), expected);
    }

    #[test]
    fn events_before_a_failure_are_delivered_and_the_failing_close_follows_their_replies() {
        // An echo server still echoes the message parsed before the bad frame.
        let mut wire = masked_frame(TEXT, true, b"Hello");
        wire.extend(masked_frame(PING, true, b"p"));
        wire.extend(unmasked_frame(TEXT, true, b"bad"));
        let mut conn = server();
        assert_eq!(conn.receive(&wire), Err(ProtocolError::UnmaskedFrame));
        assert_eq!(conn.state(), State::Closed);
        assert_eq!(conn.next_event(), Some(text_event("Hello")));
        conn.send_text("Hello").unwrap();
        assert_eq!(
            conn.next_event(),
            Some(Event::Ping(Bytes::from_static(b"p")))
        );
        assert_eq!(conn.next_event(), None);
        let frames = parse_frames(&conn.take_outgoing());
        let opcodes: Vec<u8> = frames.iter().map(|f| f.opcode).collect();
        assert_eq!(opcodes, [PONG, TEXT, CLOSE]);
        assert_eq!(frames[2].payload[..2], 1002u16.to_be_bytes());
        assert_eq!(conn.send_text("more"), Err(SendError::NotOpen));
    }

    #[test]
    fn a_failure_while_closing_sends_no_second_close() {
        let mut conn = server();
        conn.send_close(CloseCode::NormalClosure, "").unwrap();
        let result = conn.receive(&unmasked_frame(TEXT, true, b"x"));
        assert_eq!(result, Err(ProtocolError::UnmaskedFrame));
        assert_eq!(conn.state(), State::Closed);
        let written = conn.take_outgoing();
        assert_eq!(parse_frames(&written).len(), 1);
        assert_eq!(
            close_code_in(&written),
            Some(1000),
            "our first Close stands"
        );
    }
}

mod section_10_4_limits {
    use super::*;

    #[test]
    fn a_frame_over_max_frame_size_fails_with_1009_as_soon_as_its_header_arrives() {
        for role in [Role::Server, Role::Client] {
            for opcode in [TEXT, BINARY] {
                let mut conn = endpoint(role, Config::default().max_frame_size(1000));
                let wire = frame_to(role, opcode, true, &[b'a'; 1001]);
                let header_len = wire.len() - 1001;
                let result = conn.receive(&wire[..header_len]);
                let err = assert_failed_with(&mut conn, result, 1009).error;
                assert_eq!(
                    err,
                    ProtocolError::FrameTooBig {
                        size: 1001,
                        limit: 1000
                    }
                );
            }
        }
    }

    #[test]
    fn a_frame_of_exactly_max_frame_size_is_accepted() {
        let mut conn = endpoint(Role::Server, Config::default().max_frame_size(1000));
        conn.receive(&masked_frame(BINARY, true, &pattern(1000)))
            .unwrap();
        assert_eq!(conn.events().count(), 1);
    }

    #[test]
    fn a_continuation_over_max_frame_size_fails_with_1009_as_soon_as_its_header_arrives() {
        let mut conn = endpoint(Role::Server, Config::default().max_frame_size(100));
        conn.receive(&masked_frame(BINARY, false, &[0; 100]))
            .unwrap();
        let result = conn.receive(&header(CONTINUATION, true, Some(RFC_KEY), 101));
        assert_failed_with(&mut conn, result, 1009);
    }

    #[test]
    fn a_message_over_max_message_size_across_fragments_fails_with_1009_at_the_header() {
        let config = Config::default().max_frame_size(100).max_message_size(150);
        let mut conn = endpoint(Role::Server, config.clone());
        conn.receive(&masked_frame(TEXT, false, &[b'a'; 100]))
            .unwrap();
        let result = conn.receive(&header(CONTINUATION, true, Some(RFC_KEY), 51));
        let err = assert_failed_with(&mut conn, result, 1009).error;
        assert_eq!(
            err,
            ProtocolError::MessageTooBig {
                size: 151,
                limit: 150
            }
        );

        let mut conn = endpoint(Role::Server, config);
        conn.receive(&masked_frame(TEXT, false, &[b'a'; 100]))
            .unwrap();
        conn.receive(&masked_frame(CONTINUATION, true, &[b'a'; 50]))
            .unwrap();
        assert_eq!(conn.events().count(), 1, "exactly the limit is accepted");
    }

    #[test]
    fn the_message_size_limit_applies_to_each_message_not_the_connection() {
        let mut conn = endpoint(Role::Client, Config::default().max_message_size(10));
        for _ in 0..5 {
            conn.receive(&unmasked_frame(BINARY, true, &[0; 10]))
                .unwrap();
        }
        assert_eq!(conn.events().count(), 5);
    }

    #[test]
    fn more_fragments_than_max_fragments_fail_with_1009() {
        let mut conn = endpoint(Role::Server, Config::default().max_fragments(3));
        // Two messages of exactly three fragments: the count starts afresh.
        for _ in 0..2 {
            conn.receive(&masked_frame(BINARY, false, b"a")).unwrap();
            conn.receive(&masked_frame(CONTINUATION, false, b"b"))
                .unwrap();
            conn.receive(&masked_frame(CONTINUATION, true, b"c"))
                .unwrap();
        }
        assert_eq!(conn.events().count(), 2);
        conn.receive(&masked_frame(BINARY, false, b"a")).unwrap();
        conn.receive(&masked_frame(CONTINUATION, false, b"b"))
            .unwrap();
        conn.receive(&masked_frame(CONTINUATION, false, b"c"))
            .unwrap();
        let result = conn.receive(&masked_frame(CONTINUATION, true, b"d"));
        let err = assert_failed_with(&mut conn, result, 1009).error;
        assert_eq!(err, ProtocolError::TooManyFragments { limit: 3 });
    }
}

mod prepared_messages {
    use super::*;

    #[test]
    fn a_prepared_message_is_what_a_server_writes_for_the_same_message() {
        for message in [
            Message::text(""),
            Message::text("Hello"),
            Message::text("é".repeat(100)),
            Message::binary(pattern(125)),
            Message::binary(pattern(126)),
            Message::binary(pattern(65536)),
        ] {
            let prepared = PreparedMessage::new(&message);
            let mut direct = server();
            direct.send_message(&message).unwrap();
            let direct = direct.take_outgoing();
            assert_eq!(prepared.frame(), &direct);
            let mut shared = server();
            shared.send_prepared(&prepared).unwrap();
            assert_eq!(shared.take_outgoing(), direct);
        }
    }

    #[test]
    fn a_client_refuses_a_prepared_message_and_writes_nothing() {
        let mut conn = client();
        let prepared = PreparedMessage::new(&Message::text("Hello"));
        assert_eq!(conn.send_prepared(&prepared), Err(SendError::MaskRequired));
        assert!(conn.take_outgoing().is_empty());
        assert_eq!(conn.state(), State::Open);
    }
}

mod round_trips {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::Index;

    /// Deterministic bytes from `seed` (xorshift64), so a failing case shrinks
    /// to a seed and a length rather than to 70,000 bytes.
    fn bytes_from(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// Text of exactly `len` bytes mixing 1- to 4-byte code points.
    fn text_from(seed: u64, len: usize) -> String {
        const CHARS: [char; 8] = ['a', ' ', '\0', 'é', 'κ', '€', '🎉', '\u{10FFFF}'];
        let mut text = String::with_capacity(len);
        for byte in bytes_from(seed, len) {
            let c = CHARS[byte as usize % CHARS.len()];
            if text.len() + c.len_utf8() > len {
                break;
            }
            text.push(c);
        }
        while text.len() < len {
            text.push('z');
        }
        text
    }

    fn payload_len() -> impl Strategy<Value = usize> {
        prop_oneof![
            prop::sample::select(vec![0usize, 1, 125, 126, 127, 65535, 65536, 65537]),
            0usize..=300,
            0usize..70_000,
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        (any::<bool>(), payload_len(), any::<u64>()).prop_map(|(is_text, len, seed)| {
            if is_text {
                Message::text(text_from(seed, len))
            } else {
                Message::binary(bytes_from(seed, len))
            }
        })
    }

    /// Cut points in `0..=len`, sorted.
    fn cut_points(cuts: &[Index], len: usize) -> Vec<usize> {
        let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(len + 1)).collect();
        points.sort_unstable();
        points
    }

    /// Queues `message`, as one frame or as fragments cut at `cuts` (even inside
    /// a code point).
    fn send(conn: &mut Connection, message: &Message, cuts: &[Index]) {
        if cuts.is_empty() {
            conn.send_message(message).unwrap();
            return;
        }
        let bytes = message.as_bytes();
        let mut ends = cut_points(cuts, bytes.len());
        ends.push(bytes.len());
        let mut start = 0;
        for (i, &end) in ends.iter().enumerate() {
            let opcode = match (i, message.is_text()) {
                (0, true) => Opcode::Text,
                (0, false) => Opcode::Binary,
                _ => Opcode::Continuation,
            };
            conn.send_fragment(opcode, &bytes[start..end], i == ends.len() - 1)
                .unwrap();
            start = end;
        }
    }

    /// Feeds `wire` cut at `cuts`.
    fn receive_cut(
        conn: &mut Connection,
        wire: &[u8],
        cuts: &[Index],
    ) -> Result<(), ProtocolError> {
        let mut start = 0;
        for end in cut_points(cuts, wire.len()) {
            conn.receive(&wire[start..end])?;
            start = end;
        }
        conn.receive(&wire[start..])
    }

    fn assert_round_trip(
        mut sender: Connection,
        mut receiver: Connection,
        messages: Vec<Message>,
        fragment_cuts: &[Index],
        chunk_cuts: &[Index],
    ) -> Result<(), TestCaseError> {
        for message in &messages {
            send(&mut sender, message, fragment_cuts);
        }
        let wire = sender.take_outgoing();
        prop_assert_eq!(receive_cut(&mut receiver, &wire, chunk_cuts), Ok(()));
        let expected: Vec<Event> = messages.into_iter().map(Event::Message).collect();
        let got: Vec<Event> = receiver.events().collect();
        prop_assert!(got == expected, "received messages differ from those sent");
        prop_assert!(receiver.take_outgoing().is_empty());
        prop_assert_eq!(receiver.state(), State::Open);
        Ok(())
    }

    /// A client whose masking keys follow an LCG from `seed`.
    fn client_from(seed: u32) -> Connection {
        let mut state = seed;
        Connection::with_masking_keys(Config::default(), move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            state.to_be_bytes()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn messages_from_a_client_reach_a_server_whole_in_any_chunking(
            messages in vec(message(), 1..4),
            fragment_cuts in vec(any::<Index>(), 0..4),
            chunk_cuts in vec(any::<Index>(), 0..8),
            key_seed: u32,
        ) {
            assert_round_trip(client_from(key_seed), server(), messages, &fragment_cuts, &chunk_cuts)?;
        }

        #[test]
        fn messages_from_a_server_reach_a_client_whole_in_any_chunking(
            messages in vec(message(), 1..4),
            fragment_cuts in vec(any::<Index>(), 0..4),
            chunk_cuts in vec(any::<Index>(), 0..8),
        ) {
            assert_round_trip(server(), client(), messages, &fragment_cuts, &chunk_cuts)?;
        }

        #[test]
        fn arbitrary_input_never_panics_and_a_failure_ends_the_output_with_a_close(
            server_role: bool,
            data in vec(any::<u8>(), 0..600),
            chunk_cuts in vec(any::<Index>(), 0..8),
        ) {
            let role = if server_role { Role::Server } else { Role::Client };
            let config = Config::default().max_frame_size(64).max_message_size(128).max_fragments(4);
            let mut conn = endpoint(role, config);
            if let Err(err) = receive_cut(&mut conn, &data, &chunk_cuts) {
                prop_assert_eq!(conn.state(), State::Closed);
                // The failing Close follows the events parsed before the error.
                conn.events().for_each(drop);
                prop_assert_eq!(close_code_in(&peek_outgoing(&mut conn)), Some(err.close_code().as_u16()));
            }
        }
    }
}

mod sending_rules {
    use super::*;
    use wshub_proto::SendError;

    #[test]
    fn control_opcodes_are_refused_as_fragments_and_nothing_is_written() {
        let mut conn = server();
        for opcode in [Opcode::Close, Opcode::Ping, Opcode::Pong] {
            assert_eq!(
                conn.send_fragment(opcode, b"x", true),
                Err(SendError::ControlOpcode {
                    opcode: opcode.as_u8()
                })
            );
        }
        assert!(peek_outgoing(&mut conn).is_empty());
        assert_eq!(conn.state(), State::Open);
    }

    #[test]
    fn take_outgoing_includes_a_pong_owed_behind_a_queued_message() {
        let mut conn = server();
        conn.send_text("first").unwrap();
        conn.receive(&masked_frame(PING, true, b"p")).unwrap();
        let frames = parse_frames(&conn.take_outgoing());
        let opcodes: Vec<u8> = frames.iter().map(|f| f.opcode).collect();
        assert_eq!(opcodes, [TEXT, PONG]);
        assert_eq!(frames[1].payload, b"p");
    }

    #[test]
    fn a_close_asked_for_after_a_failure_carries_the_failure_code() {
        let mut conn = server();
        let mut wire = masked_frame(TEXT, true, b"before");
        wire.extend_from_slice(&unmasked_frame(TEXT, true, b"bad"));
        let err = conn.receive(&wire).unwrap_err();
        assert_eq!(err, ProtocolError::UnmaskedFrame);
        // The application answers the message before the bad frame, then
        // closes; the Close still says 1002.
        assert_eq!(conn.next_event(), Some(text_event("before")));
        conn.send_text("echo").unwrap();
        conn.send_close(CloseCode::NormalClosure, "").unwrap();
        let frames = parse_frames(&conn.take_outgoing());
        assert_eq!(frames[0].opcode, TEXT);
        assert_eq!(frames.last().unwrap().payload[..2], 1002u16.to_be_bytes());
        assert_eq!(conn.next_event(), None);
        assert!(
            peek_outgoing(&mut conn).is_empty(),
            "only one Close is ever written"
        );
    }
}
