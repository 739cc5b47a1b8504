//! Arbitrary bytes as the compressed payload of messages (RSV1 set, RFC 7692
//! §6) into a server `Connection` with permessage-deflate negotiated and
//! small limits: never panics, fails only with a documented error, and
//! never holds more inflated bytes than the limit (plus the other buffers).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wshub_proto::deflate::{self, DeflateConfig};
use wshub_proto::{Config, Connection, Event, ProtocolError, Role, State};

const MAX_MESSAGE_SIZE: usize = 64 * 1024;
const MAX_FRAGMENTS: usize = 64;
/// Other buffers: the compressed frame's payload is never buffered, but the
/// message and output buffers may hold a block each.
const SLACK: usize = 16 * 1024;
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn masked_frame(first: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(first);
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&KEY);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
}

fuzz_target!(|data: &[u8]| {
    // Byte 0: takeover flags, text or binary, window bits; byte 1: messages
    // and fragment size; byte 2: read size.
    let [params, shape, read, payload @ ..] = data else {
        return;
    };
    let client = DeflateConfig::client()
        .server_no_context_takeover(params & 1 != 0)
        .client_no_context_takeover(params & 2 != 0)
        .client_max_window_bits(8 + (params >> 4 & 7));
    let server = DeflateConfig::server()
        .server_no_context_takeover(false)
        .client_no_context_takeover(false);
    let (agreement, _) =
        deflate::negotiate([deflate::offer(&client).as_str()], &server).expect("acceptable");
    let mut conn = Connection::new(
        Role::Server,
        Config::default()
            .max_message_size(MAX_MESSAGE_SIZE)
            .max_fragments(MAX_FRAGMENTS)
            .deflate(Some(agreement)),
    );
    let opcode = if params & 4 != 0 { 0x1 } else { 0x2 };
    let messages = 1 + usize::from(shape & 3);
    let fragment = 1 + usize::from(shape >> 2) * 16;
    let mut wire = Vec::new();
    let per_message = payload.len().div_ceil(messages).max(1);
    for message in payload.chunks(per_message) {
        let pieces: Vec<&[u8]> = message.chunks(fragment).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let fin = if i + 1 == pieces.len() { 0x80 } else { 0 };
            let first = if i == 0 { 0x40 | opcode } else { 0 };
            masked_frame(fin | first, piece, &mut wire);
        }
    }
    let read = 1 + usize::from(*read) * 8;
    for chunk in wire.chunks(read) {
        let result = conn.receive(chunk);
        while let Some(event) = conn.next_event() {
            if let Event::Message(message) = event {
                assert!(message.len() <= MAX_MESSAGE_SIZE);
            }
        }
        assert!(
            conn.buffer_capacity() <= MAX_MESSAGE_SIZE + 1 + SLACK,
            "{} bytes buffered",
            conn.buffer_capacity()
        );
        match result {
            Ok(()) => {}
            Err(
                ProtocolError::InvalidCompressedData
                | ProtocolError::MessageTooBig { .. }
                | ProtocolError::InvalidUtf8 { .. }
                | ProtocolError::TooManyFragments { .. },
            ) => {
                assert_eq!(conn.state(), State::Closed);
                return;
            }
            Err(other) => panic!("undocumented error for compressed input: {other}"),
        }
    }
});
