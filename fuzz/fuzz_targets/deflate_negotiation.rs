//! permessage-deflate negotiation (RFC 7692 §5, §7.1) on arbitrary
//! `Sec-WebSocket-Extensions` values, one header line per input line:
//! - the server's `negotiate` and the client's `validate_response` never
//!   panic;
//! - whatever the server answers to an offer passes the client's check
//!   against that offer (`handshake::validate_response`);
//! - the offer of any valid client config is accepted by a server of any
//!   valid config, and both ends then agree on both directions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wshub_proto::deflate::{self, DeflateConfig};
use wshub_proto::handshake::{validate_response, ClientRequest, Response};
use wshub_proto::Role;

/// A valid config drawn from one byte and one more for the window sizes.
fn config(base: DeflateConfig, flags: u8, bits: u8) -> DeflateConfig {
    base.server_no_context_takeover(flags & 1 != 0)
        .client_no_context_takeover(flags & 2 != 0)
        .server_max_window_bits(8 + (bits & 7))
        .client_max_window_bits(8 + (bits >> 4 & 7))
}

fuzz_target!(|data: &[u8]| {
    let [flags, bits, rest @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let lines: Vec<&str> = text.split('\n').collect();
    let server = config(DeflateConfig::server(), *flags, *bits);
    let client = config(DeflateConfig::client(), flags >> 2, bits.rotate_left(3));

    // The client's check on arbitrary answers: an error or an agreement,
    // never a panic.
    let _ = deflate::validate_response(lines.iter().copied(), &client);

    // The server on arbitrary offers.
    if let Some((agreement, answer)) = deflate::negotiate(lines.iter().copied(), &server) {
        assert_eq!(agreement.response_header(), answer);
        let request = ClientRequest {
            host: "server.example.com".into(),
            target: "/chat".into(),
            key: "dGhlIHNhbXBsZSBub25jZQ==".into(),
            protocols: Vec::new(),
            extensions: Some(lines.join(", ")),
            headers: Vec::new(),
        };
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: {answer}\r\n\r\n"
        );
        let response = Response::parse(head.as_bytes()).expect("a well-formed 101");
        if let Err(err) = validate_response(&response, &request) {
            panic!("the server's answer {answer:?} to {lines:?} was refused: {err}");
        }
    }

    // Our own offers are always accepted, and both ends agree.
    let offer = deflate::offer(&client);
    let (server_side, answer) =
        deflate::negotiate([offer.as_str()], &server).expect("our offer is acceptable");
    let client_side = deflate::validate_response([answer.as_str()], &client)
        .expect("the answer to our offer is valid")
        .expect("and accepts the extension");
    for role in [Role::Client, Role::Server] {
        assert_eq!(server_side.inbound(role), client_side.inbound(role));
        assert_eq!(server_side.outbound(role), client_side.outbound(role));
    }
});
