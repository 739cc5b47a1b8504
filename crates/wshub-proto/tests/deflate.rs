//! permessage-deflate (RFC 7692) through the public API: negotiation (§5,
//! §7.1), the examples of §7.2.3, round trips, limits and misuse.
#![cfg(feature = "deflate")]

use proptest::prelude::*;
use wshub_proto::deflate::{self, DeflateAgreement, DeflateConfig};
use wshub_proto::handshake::{DeflateResponseError, HandshakeError};
use wshub_proto::{
    CloseCode, Config, Connection, Event, Message, PreparedMessage, ProtocolError, Role,
};

/// The masking key of the examples in RFC 6455 §5.7.
const RFC_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Masks every frame of `frames` (unmasked, as in RFC 7692 §7.2.3) with
/// [`RFC_KEY`], turning server-to-client frames into client-to-server ones.
/// Handles 7-bit and 16-bit lengths.
fn mask_frames(mut frames: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while !frames.is_empty() {
        let (len, head) = match frames[1] {
            126 => (u16::from_be_bytes([frames[2], frames[3]]) as usize, 4),
            127 => panic!("64-bit lengths are not used here"),
            n => (n as usize, 2),
        };
        out.push(frames[0]);
        out.push(frames[1] | 0x80);
        out.extend_from_slice(&frames[2..head]);
        out.extend_from_slice(&RFC_KEY);
        out.extend(
            frames[head..head + len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ RFC_KEY[i % 4]),
        );
        frames = &frames[head + len..];
    }
    out
}

/// A frame with `first` as its first byte (FIN, RSV, opcode) and `payload`,
/// unmasked, 7- or 16-bit length.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    if payload.len() < 126 {
        out.push(payload.len() as u8);
    } else {
        out.push(126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// Both ends' agreements for a client offering `client` to a server that
/// allows everything (no restriction of its own), with `threshold` and
/// `level` on both sides.
fn agreements(client: DeflateConfig) -> (DeflateAgreement, DeflateAgreement) {
    let offer = deflate::offer(&client);
    let server = DeflateConfig::server()
        .server_no_context_takeover(false)
        .client_no_context_takeover(false)
        .threshold(client.threshold)
        .level(client.level)
        .mem_level(client.mem_level);
    let (server_side, answer) = deflate::negotiate([offer.as_str()], &server).unwrap();
    let client_side = deflate::validate_response([answer.as_str()], &client)
        .unwrap()
        .unwrap();
    (server_side, client_side)
}

/// Agreements with the given RFC 7692 §7.1 parameters, threshold 0, level 6.
fn pair(
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_bits: u8,
    client_bits: u8,
) -> (DeflateAgreement, DeflateAgreement) {
    agreements(
        DeflateConfig::client()
            .server_no_context_takeover(server_no_context_takeover)
            .client_no_context_takeover(client_no_context_takeover)
            .server_max_window_bits(server_bits)
            .client_max_window_bits(client_bits)
            .threshold(0)
            .level(6),
    )
}

fn connection(role: Role, agreement: Option<DeflateAgreement>, config: Config) -> Connection {
    let config = config.deflate(agreement);
    match role {
        Role::Client => Connection::with_masking_keys(config, || RFC_KEY),
        Role::Server => Connection::new(Role::Server, config),
    }
}

/// A pair of connected endpoints with the given parameters.
fn endpoints(
    server_nct: bool,
    client_nct: bool,
    server_bits: u8,
    client_bits: u8,
) -> (Connection, Connection) {
    let (s, c) = pair(server_nct, client_nct, server_bits, client_bits);
    (
        connection(Role::Server, Some(s), Config::default()),
        connection(Role::Client, Some(c), Config::default()),
    )
}

fn messages(conn: &mut Connection) -> Vec<Message> {
    conn.events()
        .map(|e| match e {
            Event::Message(m) => m,
            other => panic!("expected a message, got {other:?}"),
        })
        .collect()
}

/// Feeds `wire` to a fresh connection at every split point and one byte at
/// a time, and checks it yields exactly `expected`.
fn check_at_every_split(role: Role, agreement: &DeflateAgreement, wire: &[u8], expected: &[&str]) {
    let expected: Vec<Message> = expected.iter().map(|t| Message::text(*t)).collect();
    for cut in 0..=wire.len() {
        let mut conn = connection(role, Some(agreement.clone()), Config::default());
        conn.receive(&wire[..cut]).unwrap();
        conn.receive(&wire[cut..]).unwrap();
        assert_eq!(messages(&mut conn), expected, "cut at {cut}");
    }
    let mut conn = connection(role, Some(agreement.clone()), Config::default());
    for byte in wire {
        conn.receive(std::slice::from_ref(byte)).unwrap();
    }
    assert_eq!(messages(&mut conn), expected, "one byte at a time");
}

/// Checks the examples of RFC 7692 §7.2.3 (unmasked server frames) on a
/// client, and the same frames masked on a server.
fn check_rfc_example(wire: &[u8], expected: &[&str], takeover: bool) {
    let (server, client) = pair(!takeover, !takeover, 15, 15);
    check_at_every_split(Role::Client, &client, wire, expected);
    check_at_every_split(Role::Server, &server, &mask_frames(wire), expected);
}

/// The close code of the Close frame our output ends with.
fn close_code_sent(conn: &mut Connection) -> u16 {
    while conn.next_event().is_some() {}
    let out = conn.take_outgoing();
    let mut rest = &out[..];
    let mut last = None;
    while !rest.is_empty() {
        let masked = rest[1] & 0x80 != 0;
        let (len, mut head) = match rest[1] & 0x7f {
            126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let key = masked.then(|| {
            let k: [u8; 4] = rest[head..head + 4].try_into().unwrap();
            head += 4;
            k
        });
        if rest[0] & 0x0f == 0x8 {
            let p: Vec<u8> = rest[head..head + len]
                .iter()
                .enumerate()
                .map(|(i, b)| key.map_or(*b, |k| b ^ k[i % 4]))
                .collect();
            last = Some(u16::from_be_bytes([p[0], p[1]]));
        }
        rest = &rest[head + len..];
    }
    last.expect("a Close frame was queued")
}

mod rfc_7692_section_7_2_3_examples {
    use super::*;

    const HELLO: [u8; 9] = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    #[test]
    fn section_7_2_3_1_a_message_compressed_in_one_frame() {
        check_rfc_example(&HELLO, &["Hello"], false);
    }

    #[test]
    fn section_7_2_3_1_a_compressed_message_in_two_fragments() {
        let wire = [
            0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00,
        ];
        check_rfc_example(&wire, &["Hello"], false);
    }

    #[test]
    fn section_7_2_3_2_sharing_the_lz77_window() {
        let mut wire = HELLO.to_vec();
        wire.extend_from_slice(&[0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]);
        check_rfc_example(&wire, &["Hello", "Hello"], true);
    }

    #[test]
    fn section_7_2_3_3_a_deflate_block_with_no_compression() {
        let wire = [
            0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        check_rfc_example(&wire, &["Hello"], false);
    }

    #[test]
    fn section_7_2_3_4_a_deflate_block_with_bfinal_set() {
        let wire = [0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        check_rfc_example(&wire, &["Hello"], false);
        // The state starts afresh after a final block: the next message too.
        let mut twice = wire.to_vec();
        twice.extend_from_slice(&HELLO);
        check_rfc_example(&twice, &["Hello", "Hello"], true);
    }

    #[test]
    fn section_7_2_3_5_two_deflate_blocks_in_one_message() {
        let wire = [
            0xc1, 0x0d, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07,
            0x00,
        ];
        check_rfc_example(&wire, &["Hello"], false);
    }

    #[test]
    fn section_7_2_3_6_an_empty_compressed_message() {
        check_rfc_example(&[0xc1, 0x01, 0x00], &[""], false);
    }

    #[test]
    fn a_server_sends_hello_as_in_section_7_2_3_1_and_7_2_3_2() {
        // With context takeover every message at or over the threshold goes
        // compressed, even when that makes it longer (see `sending`).
        let (server, _) = pair(false, false, 15, 15);
        let mut conn = connection(Role::Server, Some(server), Config::default());
        conn.send_text("Hello").unwrap();
        conn.send_text("Hello").unwrap();
        let mut expected = HELLO.to_vec();
        expected.extend_from_slice(&[0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]);
        assert_eq!(&conn.take_outgoing()[..], expected);
    }

    #[test]
    fn without_context_takeover_a_message_that_would_grow_is_still_compressed() {
        // §7.2.3.1's bytes: 7 bytes of payload for 5 of text, sent anyway.
        let (server, _) = pair(true, true, 15, 15);
        let mut conn = connection(Role::Server, Some(server), Config::default());
        conn.send_text("Hello").unwrap();
        assert_eq!(&conn.take_outgoing()[..], HELLO);
    }

    #[test]
    fn a_client_masks_the_compressed_payload() {
        let (_, client) = pair(false, false, 15, 15);
        let mut conn = connection(Role::Client, Some(client), Config::default());
        conn.send_text("Hello").unwrap();
        assert_eq!(&conn.take_outgoing()[..], mask_frames(&HELLO));
    }
}

mod section_7_1_server_negotiation {
    use super::*;

    /// What a server with `config` answers to `offer`.
    fn answer_with(config: &DeflateConfig, offer: &str) -> Option<String> {
        deflate::negotiate([offer], config).map(|(_, answer)| answer)
    }

    /// What a server that restricts nothing answers.
    fn answer(offer: &str) -> Option<String> {
        let permissive = DeflateConfig::server()
            .server_no_context_takeover(false)
            .client_no_context_takeover(false);
        answer_with(&permissive, offer)
    }

    const PMD: &str = "permessage-deflate";

    #[test]
    fn each_parameter_is_accepted_with_a_valid_value() {
        let cases = [
            ("permessage-deflate", PMD.to_string()),
            (
                "permessage-deflate; server_no_context_takeover",
                format!("{PMD}; server_no_context_takeover"),
            ),
            (
                "permessage-deflate; client_no_context_takeover",
                format!("{PMD}; client_no_context_takeover"),
            ),
            // Below the server's own 15 bits: it answers 9, "the same or
            // smaller value as the offer" (RFC 7692 §7.1.2.1), one of the
            // few windows it compresses with.
            (
                "permessage-deflate; server_max_window_bits=10",
                format!("{PMD}; server_max_window_bits=9"),
            ),
            (
                "permessage-deflate; server_max_window_bits=15",
                format!("{PMD}; server_max_window_bits=15"),
            ),
            (
                "permessage-deflate; server_max_window_bits=8",
                format!("{PMD}; server_max_window_bits=8"),
            ),
            // Without a value: the client can limit its window; this server
            // does not ask it to.
            (
                "permessage-deflate; client_max_window_bits",
                PMD.to_string(),
            ),
            (
                "permessage-deflate; client_max_window_bits=9",
                format!("{PMD}; client_max_window_bits=9"),
            ),
            // §7.1: a quoted-string value is unquoted before it is checked.
            (
                "permessage-deflate; server_max_window_bits=\"12\"",
                format!("{PMD}; server_max_window_bits=9"),
            ),
            (
                "permessage-deflate;server_no_context_takeover ; client_max_window_bits = 11",
                format!("{PMD}; server_no_context_takeover; client_max_window_bits=11"),
            ),
        ];
        for (offer, expected) in cases {
            assert_eq!(answer(offer), Some(expected), "{offer}");
        }
    }

    #[test]
    fn an_offer_breaking_section_7_1_is_declined() {
        let declined = [
            "permessage-deflate; x=1",
            "permessage-deflate; unknown",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=11",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"\"",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; server_max_window_bits=ten",
            "permessage-deflate; client_max_window_bits=\"1 0\"",
            "permessage-deflate; client_max_window_bits=\"\"",
            // Not parameters of RFC 7692 §7.1, though other drafts had them.
            "permessage-deflate; s2c_max_window_bits=10",
            // Breaks the grammar of RFC 6455 §9.1: the whole header is ignored.
            "permessage-deflate; server_max_window_bits=",
            "x-webkit-deflate-frame",
            // Extension names are compared exactly, as the client does.
            "Permessage-Deflate",
            "",
        ];
        for offer in declined {
            assert_eq!(answer(offer), None, "{offer:?}");
        }
    }

    #[test]
    fn the_first_acceptable_offer_wins() {
        assert_eq!(
            answer(
                "x-unknown; a=1, permessage-deflate; server_max_window_bits=7, \
                 permessage-deflate; server_max_window_bits=9, permessage-deflate"
            ),
            Some(format!("{PMD}; server_max_window_bits=9"))
        );
        // Offers may come in separate header lines.
        let (_, answer) = deflate::negotiate(
            [
                "permessage-deflate; bogus",
                "permessage-deflate; client_no_context_takeover",
            ],
            &DeflateConfig::server()
                .client_no_context_takeover(false)
                .server_no_context_takeover(false),
        )
        .unwrap();
        assert_eq!(answer, format!("{PMD}; client_no_context_takeover"));
    }

    #[test]
    fn the_default_server_asks_for_no_context_takeover_both_ways() {
        let server = DeflateConfig::server();
        assert_eq!(
            answer_with(&server, "permessage-deflate; client_max_window_bits"),
            Some(format!(
                "{PMD}; server_no_context_takeover; client_no_context_takeover"
            ))
        );
        let (agreement, _) = deflate::negotiate(["permessage-deflate"], &server).unwrap();
        assert!(agreement.inbound(Role::Server).no_context_takeover);
        assert!(agreement.outbound(Role::Server).no_context_takeover);
        assert_eq!(agreement.level, server.level);
        assert_eq!(agreement.threshold, 1024);
    }

    #[test]
    fn the_server_window_is_the_smaller_of_the_offer_and_its_own() {
        let server = DeflateConfig::server()
            .server_no_context_takeover(false)
            .client_no_context_takeover(false)
            .server_max_window_bits(11)
            .client_max_window_bits(10);
        assert_eq!(
            answer_with(&server, "permessage-deflate; server_max_window_bits=13"),
            Some(format!("{PMD}; server_max_window_bits=11"))
        );
        assert_eq!(
            answer_with(&server, "permessage-deflate; server_max_window_bits=9"),
            Some(format!("{PMD}; server_max_window_bits=9"))
        );
        // client_max_window_bits is answered only when offered (§7.1.2.2).
        assert_eq!(
            answer_with(&server, "permessage-deflate; client_max_window_bits"),
            Some(format!(
                "{PMD}; server_max_window_bits=11; client_max_window_bits=10"
            ))
        );
        assert_eq!(
            answer_with(&server, "permessage-deflate; client_max_window_bits=12"),
            Some(format!(
                "{PMD}; server_max_window_bits=11; client_max_window_bits=10"
            ))
        );
        let (agreement, answer) = deflate::negotiate(["permessage-deflate"], &server).unwrap();
        assert_eq!(answer, format!("{PMD}; server_max_window_bits=11"));
        assert_eq!(agreement.inbound(Role::Server).max_window_bits, 15);
        assert_eq!(agreement.response_header(), answer);
    }

    #[test]
    fn every_server_answer_passes_the_client_check() {
        for client in [
            DeflateConfig::client(),
            DeflateConfig::client().server_no_context_takeover(true),
            DeflateConfig::client().client_no_context_takeover(true),
            DeflateConfig::client().server_max_window_bits(8),
            DeflateConfig::client().client_max_window_bits(9),
        ] {
            for server in [
                DeflateConfig::server(),
                DeflateConfig::server().server_max_window_bits(10),
                DeflateConfig::server().client_max_window_bits(8),
                DeflateConfig::server().server_no_context_takeover(false),
            ] {
                let (server_side, answer) =
                    deflate::negotiate([deflate::offer(&client).as_str()], &server).unwrap();
                let client_side = deflate::validate_response([answer.as_str()], &client)
                    .unwrap()
                    .unwrap();
                for role in [Role::Client, Role::Server] {
                    assert_eq!(server_side.inbound(role), client_side.inbound(role));
                }
            }
        }
    }
}

mod section_7_1_client_validation {
    use super::*;

    fn check(
        config: &DeflateConfig,
        response: &str,
    ) -> Result<Option<DeflateAgreement>, HandshakeError> {
        deflate::validate_response([response], config)
    }

    fn invalid(error: DeflateResponseError) -> HandshakeError {
        HandshakeError::InvalidDeflateResponse { error }
    }

    fn name(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn no_extension_in_the_response_means_no_compression() {
        assert_eq!(check(&DeflateConfig::client(), ""), Ok(None));
        assert_eq!(
            deflate::validate_response([], &DeflateConfig::client()),
            Ok(None)
        );
    }

    #[test]
    fn accepts_what_the_offer_allows() {
        let client = DeflateConfig::client();
        for response in [
            "permessage-deflate",
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=15",
            "permessage-deflate; client_max_window_bits=8",
            "permessage-deflate; client_max_window_bits=\"12\"",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=10",
        ] {
            assert!(matches!(check(&client, response), Ok(Some(_))), "{response}");
        }
        let agreement = check(
            &client,
            "permessage-deflate; server_max_window_bits=9; client_max_window_bits=10; client_no_context_takeover",
        )
        .unwrap()
        .unwrap();
        assert_eq!(agreement.inbound(Role::Client).max_window_bits, 9);
        assert_eq!(agreement.outbound(Role::Client).max_window_bits, 10);
        assert!(agreement.outbound(Role::Client).no_context_takeover);
        assert!(!agreement.inbound(Role::Client).no_context_takeover);
    }

    #[test]
    fn rejects_what_breaks_section_7_1() {
        let client = DeflateConfig::client();
        let cases = [
            (
                "permessage-deflate; x",
                invalid(DeflateResponseError::UnknownParameter { name: name("x") }),
            ),
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                invalid(DeflateResponseError::DuplicateParameter {
                    name: name("server_no_context_takeover"),
                }),
            ),
            (
                "permessage-deflate; client_max_window_bits=9; client_max_window_bits=9",
                invalid(DeflateResponseError::DuplicateParameter {
                    name: name("client_max_window_bits"),
                }),
            ),
            (
                "permessage-deflate; client_no_context_takeover=yes",
                invalid(DeflateResponseError::InvalidValue {
                    name: name("client_no_context_takeover"),
                }),
            ),
            (
                "permessage-deflate; server_max_window_bits",
                invalid(DeflateResponseError::InvalidValue {
                    name: name("server_max_window_bits"),
                }),
            ),
            // A response must give client_max_window_bits a value (§7.1.2.2).
            (
                "permessage-deflate; client_max_window_bits",
                invalid(DeflateResponseError::InvalidValue {
                    name: name("client_max_window_bits"),
                }),
            ),
            (
                "permessage-deflate; server_max_window_bits=7",
                invalid(DeflateResponseError::InvalidValue {
                    name: name("server_max_window_bits"),
                }),
            ),
            (
                "permessage-deflate; server_max_window_bits=16",
                invalid(DeflateResponseError::InvalidValue {
                    name: name("server_max_window_bits"),
                }),
            ),
            (
                "permessage-deflate; client_max_window_bits=08",
                invalid(DeflateResponseError::InvalidValue {
                    name: name("client_max_window_bits"),
                }),
            ),
            (
                "permessage-deflate; client_max_window_bits=abc",
                invalid(DeflateResponseError::InvalidValue {
                    name: name("client_max_window_bits"),
                }),
            ),
            (
                "permessage-deflate, permessage-deflate",
                invalid(DeflateResponseError::DuplicateExtension),
            ),
            (
                "x-other",
                HandshakeError::UnexpectedExtension {
                    name: name("x-other"),
                },
            ),
            (
                "permessage-deflate, x-other",
                HandshakeError::UnexpectedExtension {
                    name: name("x-other"),
                },
            ),
            ("permessage-deflate;", HandshakeError::InvalidExtensions),
        ];
        for (response, error) in cases {
            assert_eq!(check(&client, response), Err(error), "{response}");
        }
    }

    #[test]
    fn rejects_what_the_offer_did_not_allow() {
        let strict = DeflateConfig::client()
            .server_no_context_takeover(true)
            .server_max_window_bits(10)
            .client_max_window_bits(11);
        assert_eq!(
            deflate::offer(&strict),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11"
        );
        let ok = "permessage-deflate; server_no_context_takeover; server_max_window_bits=10";
        assert!(check(&strict, ok).unwrap().is_some());
        let cases = [
            (
                "permessage-deflate; server_max_window_bits=10",
                DeflateResponseError::MissingParameter { name: name("server_no_context_takeover") },
            ),
            (
                "permessage-deflate; server_no_context_takeover",
                DeflateResponseError::MissingParameter { name: name("server_max_window_bits") },
            ),
            (
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
                DeflateResponseError::NotOffered { name: name("server_max_window_bits") },
            ),
            (
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12",
                DeflateResponseError::NotOffered { name: name("client_max_window_bits") },
            ),
        ];
        for (response, error) in cases {
            assert_eq!(check(&strict, response), Err(invalid(error)), "{response}");
        }
        // Our own client_max_window_bits=11 holds even if the server is silent.
        let agreement = check(&strict, ok).unwrap().unwrap();
        assert_eq!(agreement.outbound(Role::Client).max_window_bits, 11);
    }

    #[test]
    fn handshake_validate_response_checks_the_deflate_answer_against_the_request() {
        use wshub_proto::handshake::{validate_response, ClientRequest, Response};
        let response = |ext: &str| {
            Response::parse(
                format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: {ext}\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap()
        };
        let mut request = ClientRequest::new("server.example.com", "/chat");
        request.key = "dGhlIHNhbXBsZSBub25jZQ==".into();
        request.extensions = Some("permessage-deflate".into());
        assert_eq!(
            validate_response(
                &response("permessage-deflate; client_max_window_bits=10"),
                &request
            ),
            Err(invalid(DeflateResponseError::NotOffered {
                name: name("client_max_window_bits")
            }))
        );
        assert!(validate_response(
            &response("permessage-deflate; server_max_window_bits=10"),
            &request
        )
        .is_ok());
        // A later offer that allows it is enough.
        request.extensions =
            Some("permessage-deflate, permessage-deflate; client_max_window_bits".into());
        assert!(validate_response(
            &response("permessage-deflate; client_max_window_bits=10"),
            &request
        )
        .is_ok());
        assert!(matches!(
            validate_response(
                &response("permessage-deflate; server_max_window_bits=16"),
                &request
            ),
            Err(HandshakeError::InvalidDeflateResponse { .. })
        ));
    }
}

mod section_6_rsv1 {
    use super::*;

    fn server(deflate: bool) -> Connection {
        let agreement = deflate.then(|| pair(true, true, 15, 15).0);
        connection(Role::Server, agreement, Config::default())
    }

    fn expect_error(conn: &mut Connection, wire: &[u8], error: ProtocolError) {
        assert_eq!(conn.receive(&mask_frames(wire)), Err(error.clone()));
        assert_eq!(close_code_sent(conn), error.close_code().as_u16());
    }

    const HELLO: [u8; 9] = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    #[test]
    fn rsv1_without_the_extension_is_a_protocol_error() {
        expect_error(
            &mut server(false),
            &HELLO,
            ProtocolError::ReservedBitsSet { bits: 0b100 },
        );
    }

    #[test]
    fn rsv1_on_a_continuation_frame_is_a_protocol_error() {
        let wire = [
            0x41, 0x03, 0xf2, 0x48, 0xcd, 0xc0, 0x04, 0xc9, 0xc9, 0x07, 0x00,
        ];
        expect_error(
            &mut server(true),
            &wire,
            ProtocolError::ReservedBitsSet { bits: 0b100 },
        );
    }

    #[test]
    fn rsv1_on_a_control_frame_is_a_protocol_error() {
        expect_error(
            &mut server(true),
            &[0xc9, 0x00],
            ProtocolError::ReservedBitsSet { bits: 0b100 },
        );
        expect_error(
            &mut server(true),
            &[0xca, 0x00],
            ProtocolError::ReservedBitsSet { bits: 0b100 },
        );
        expect_error(
            &mut server(true),
            &[0xc8, 0x00],
            ProtocolError::ReservedBitsSet { bits: 0b100 },
        );
    }

    #[test]
    fn rsv2_and_rsv3_stay_reserved() {
        expect_error(
            &mut server(true),
            &[0xe1, 0x00],
            ProtocolError::ReservedBitsSet { bits: 0b110 },
        );
        expect_error(
            &mut server(true),
            &[0x91, 0x00],
            ProtocolError::ReservedBitsSet { bits: 0b001 },
        );
    }

    #[test]
    fn uncompressed_messages_still_flow_with_the_extension() {
        let mut conn = server(true);
        conn.receive(&mask_frames(&[0x81, 0x02, b'h', b'i']))
            .unwrap();
        conn.receive(&mask_frames(&HELLO)).unwrap();
        assert_eq!(
            messages(&mut conn),
            [Message::text("hi"), Message::text("Hello")]
        );
    }

    #[test]
    fn bad_deflate_data_fails_with_1007() {
        // BTYPE 11 is reserved (RFC 1951 §3.2.3).
        let mut conn = server(true);
        expect_error(
            &mut conn,
            &[0xc2, 0x02, 0xff, 0xff],
            ProtocolError::InvalidCompressedData,
        );
        assert_eq!(
            ProtocolError::InvalidCompressedData.close_code(),
            CloseCode::InvalidPayloadData
        );
    }

    #[test]
    fn invalid_utf8_inside_compressed_text_fails_with_1007() {
        // With context takeover even 3 bytes go compressed.
        let (mut server, mut client) = endpoints(false, false, 15, 15);
        client.send_binary(&[b'a', 0xff, b'b']).unwrap();
        let mut wire = client.take_outgoing().to_vec();
        wire[0] = 0xc1; // binary → text
        assert_eq!(
            server.receive(&wire),
            Err(ProtocolError::InvalidUtf8 { offset: 1 })
        );
        assert_eq!(close_code_sent(&mut server), 1007);
    }
}

mod bombs {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    const LIMIT: usize = 1 << 20;
    /// Slack allowed over the limit for the other buffers.
    const SLACK: usize = 64 * 1024;

    /// `len` zero bytes, raw-deflated and sync-flushed, trailer removed:
    /// about 1000:1.
    fn compressed_zeros(len: usize) -> Vec<u8> {
        let mut c = Compress::new(Compression::best(), false);
        let mut out = Vec::with_capacity(len / 500);
        let zeros = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(zeros.len());
            let before = c.total_in();
            c.compress_vec(&zeros[..n], &mut out, FlushCompress::None)
                .unwrap();
            left -= (c.total_in() - before) as usize;
            out.reserve(1024);
        }
        loop {
            out.reserve(1024);
            c.compress_vec(&[], &mut out, FlushCompress::Sync).unwrap();
            if out.len() < out.capacity() {
                break;
            }
        }
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }

    fn server(takeover: bool) -> Connection {
        let (agreement, _) = pair(!takeover, !takeover, 15, 15);
        connection(
            Role::Server,
            Some(agreement),
            Config::default().max_message_size(LIMIT),
        )
    }

    /// Feeds `wire` in 1 KiB pieces, checking the memory held after each,
    /// until the connection fails; returns the error.
    fn feed_until_failure(conn: &mut Connection, wire: &[u8]) -> ProtocolError {
        for piece in wire.chunks(1024) {
            if let Err(err) = conn.receive(piece) {
                return err;
            }
            assert!(
                conn.buffer_capacity() <= LIMIT + SLACK,
                "{} bytes buffered",
                conn.buffer_capacity()
            );
            assert!(conn.deflate_memory() <= LIMIT + SLACK + 64 * 1024);
        }
        panic!("the bomb went through");
    }

    fn expect_too_big(err: ProtocolError, conn: &mut Connection) {
        match err {
            ProtocolError::MessageTooBig { size, limit } => {
                assert_eq!(limit, LIMIT as u64);
                assert!(size as usize <= LIMIT + 1, "stopped at {size}");
            }
            other => panic!("expected MessageTooBig, got {other:?}"),
        }
        assert_eq!(close_code_sent(conn), 1009);
        assert_eq!(conn.buffer_capacity(), 0);
    }

    #[test]
    fn a_10_mib_bomb_in_one_frame_stops_at_the_limit() {
        let payload = compressed_zeros(10 << 20);
        assert!(
            payload.len() < 20 * 1024,
            "{} bytes on the wire",
            payload.len()
        );
        let mut wire = vec![0xc2, 126];
        wire.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        wire.extend_from_slice(&payload);
        let mut conn = server(false);
        let err = feed_until_failure(&mut conn, &mask_frames(&wire));
        expect_too_big(err, &mut conn);
    }

    #[test]
    fn a_10_mib_bomb_in_many_small_fragments_stops_at_the_limit() {
        let payload = compressed_zeros(10 << 20);
        let mut wire = Vec::new();
        let pieces: Vec<&[u8]> = payload.chunks(100).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let first = match (i == 0, i == pieces.len() - 1) {
                (true, _) => 0x42,
                (false, true) => 0x80,
                (false, false) => 0x00,
            };
            wire.extend_from_slice(&frame(first, piece));
        }
        let mut conn = server(false);
        let err = feed_until_failure(&mut conn, &mask_frames(&wire));
        expect_too_big(err, &mut conn);
    }

    #[test]
    fn a_bomb_after_a_small_message_with_context_takeover_stops_at_the_limit() {
        let (server_side, client_side) = pair(false, false, 15, 15);
        let mut client = connection(Role::Client, Some(client_side), Config::default());
        client.send_text("a small first message").unwrap();
        client.send_binary(&vec![0u8; 10 << 20]).unwrap();
        let wire = client.take_outgoing();
        assert!(wire.len() < 64 * 1024);
        let mut conn = connection(
            Role::Server,
            Some(server_side),
            Config::default().max_message_size(LIMIT),
        );
        let err = feed_until_failure(&mut conn, &wire);
        assert_eq!(
            conn.next_event(),
            Some(Event::Message(Message::text("a small first message")))
        );
        expect_too_big(err, &mut conn);
    }

    #[test]
    fn a_message_of_exactly_the_limit_passes() {
        let (server_side, client_side) = pair(true, true, 15, 15);
        let mut client = connection(Role::Client, Some(client_side), Config::default());
        client.send_binary(&vec![7u8; LIMIT]).unwrap();
        client.send_binary(&vec![7u8; LIMIT + 1]).unwrap();
        let wire = client.take_outgoing();
        let mut conn = connection(
            Role::Server,
            Some(server_side),
            Config::default().max_message_size(LIMIT),
        );
        let err = conn.receive(&wire).unwrap_err();
        assert_eq!(
            conn.next_event(),
            Some(Event::Message(Message::binary(vec![7u8; LIMIT])))
        );
        expect_too_big(err, &mut conn);
    }
}

mod sending {
    use super::*;

    #[test]
    fn messages_below_the_threshold_go_uncompressed() {
        let (server_side, _) = agreements(DeflateConfig::client().threshold(100));
        let mut conn = connection(Role::Server, Some(server_side), Config::default());
        let short = "x".repeat(99);
        conn.send_text(&short).unwrap();
        let out = conn.take_outgoing();
        assert_eq!(out[0], 0x81, "RSV1 clear");
        assert_eq!(&out[2..], short.as_bytes());
        conn.send_text(&"x".repeat(100)).unwrap();
        assert_eq!(conn.take_outgoing()[0], 0xc1, "RSV1 set");
    }

    #[test]
    fn incompressible_payloads_are_compressed_all_the_same() {
        let noise = sample(4096, 256, 42, false).as_bytes().to_vec();
        let (mut conn, mut client) = endpoints(true, true, 15, 15);
        conn.send_binary(&noise).unwrap();
        let out = conn.take_outgoing();
        assert_eq!(out[0], 0xc2, "RSV1 set: compressed, though no smaller");
        client.receive(&out).unwrap();
        assert_eq!(messages(&mut client), [Message::binary(noise.clone())]);
        // With context takeover too.
        let (mut conn, mut client) = endpoints(false, false, 15, 15);
        conn.send_binary(&noise).unwrap();
        let out = conn.take_outgoing();
        assert_eq!(out[0], 0xc2);
        client.receive(&out).unwrap();
        assert_eq!(messages(&mut client), [Message::binary(noise)]);
    }

    #[test]
    fn fragments_and_control_frames_are_never_compressed() {
        use wshub_proto::frame::Opcode;
        let (server_side, _) = pair(true, true, 15, 15);
        let mut conn = connection(Role::Server, Some(server_side), Config::default());
        conn.send_fragment(Opcode::Text, &[b'a'; 2000], false)
            .unwrap();
        conn.send_fragment(Opcode::Continuation, &[b'a'; 2000], true)
            .unwrap();
        conn.send_ping(&[b'p'; 100]).unwrap();
        let out = conn.take_outgoing();
        assert_eq!(out[0], 0x01);
        assert_eq!(out[4 + 2000], 0x80);
        assert_eq!(out[2 * (4 + 2000)], 0x89);
    }

    #[test]
    fn state_is_freed_after_each_message_without_context_takeover() {
        let text = "compressible text, ".repeat(500);
        let (mut server, mut client) = endpoints(true, true, 15, 15);
        assert_eq!(server.deflate_memory(), 0);
        client.send_text(&text).unwrap();
        client.shrink_buffers();
        assert_eq!(client.deflate_memory(), 0, "the client freed its state");
        server.receive(&client.take_outgoing()).unwrap();
        server.send_text(&text).unwrap();
        assert_eq!(messages(&mut server), [Message::text(text.clone())]);
        server.shrink_buffers();
        client.shrink_buffers();
        assert_eq!(server.deflate_memory(), 0, "server keeps nothing");
        assert_eq!(client.deflate_memory(), 0, "client keeps nothing");

        let (mut server, mut client) = endpoints(false, false, 15, 15);
        client.send_text(&text).unwrap();
        server.receive(&client.take_outgoing()).unwrap();
        server.send_text(&text).unwrap();
        server.shrink_buffers();
        // 371 KiB to deflate, 46 KiB to inflate (zlib-rs, measured).
        assert_eq!(server.deflate_memory(), 380_160 + 47_552);
    }

    #[test]
    fn prepared_messages_are_compressed_once_and_identical_for_every_recipient() {
        let text = "{\"op\":\"message\",\"room\":\"lobby\",\"text\":\"hello\"}".repeat(50);
        let prepared = PreparedMessage::new(&Message::text(text.clone()));
        let (server_side, client_side) = pair(true, true, 15, 15);
        let mut outputs = Vec::new();
        for _ in 0..3 {
            let mut conn = connection(Role::Server, Some(server_side.clone()), Config::default());
            conn.send_prepared(&prepared).unwrap();
            outputs.push(conn.take_outgoing());
        }
        assert!(outputs.iter().all(|o| o == &outputs[0]));
        let shared = prepared.deflated_frame(15, server_side.level, server_side.mem_level);
        assert_eq!(&shared[..], &outputs[0][..]);
        assert_eq!(
            shared.as_ptr(),
            prepared
                .clone()
                .deflated_frame(15, server_side.level, server_side.mem_level)
                .as_ptr()
        );
        let mut client = connection(Role::Client, Some(client_side), Config::default());
        client.receive(&outputs[0]).unwrap();
        assert_eq!(messages(&mut client), [Message::text(text.clone())]);

        // With context takeover the connection's own deflater is used, and
        // the peer follows along.
        let (server_side, client_side) = pair(false, false, 15, 15);
        let mut conn = connection(Role::Server, Some(server_side), Config::default());
        let mut client = connection(Role::Client, Some(client_side), Config::default());
        for _ in 0..3 {
            conn.send_prepared(&prepared).unwrap();
        }
        client.receive(&conn.take_outgoing()).unwrap();
        assert_eq!(messages(&mut client), vec![Message::text(text); 3]);
    }
}

/// A deterministic message of `len` bytes drawn from an alphabet of
/// `alphabet` symbols (1: all the same; 95: printable text; 256: noise).
fn sample(len: usize, alphabet: u16, seed: u64, text: bool) -> Message {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    if text {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            let r = next();
            let c = match r % 16 {
                0 if s.len() + 3 <= len => 'κ',
                1 if s.len() + 4 <= len => '🎉',
                _ => char::from(b' ' + (r >> 8) as u8 % alphabet.clamp(1, 95) as u8),
            };
            s.push(c);
        }
        while s.len() > len {
            s.pop();
        }
        Message::text(s)
    } else {
        Message::binary(
            (0..len)
                .map(|_| (next() >> 20) as u8 % (alphabet.clamp(1, 256) - 1).max(1) as u8)
                .collect::<Vec<u8>>(),
        )
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn messages_round_trip_both_ways_for_every_parameter_combination(
        server_nct in any::<bool>(),
        client_nct in any::<bool>(),
        server_bits in 8u8..=15,
        client_bits in 8u8..=15,
        threshold in prop_oneof![Just(0usize), Just(1024), 0usize..4096],
        mem_level in 1u8..=9,
        specs in proptest::collection::vec(
            (
                prop_oneof![0usize..2048, 0usize..100 * 1024, 1000usize..1100],
                prop_oneof![Just(1u16), 2u16..20, Just(95), Just(256)],
                any::<u64>(),
                any::<bool>(),
            ),
            1..5,
        ),
        chunk in prop_oneof![1usize..8, 1usize..70_000],
    ) {
        let (server_side, client_side) = agreements(
            DeflateConfig::client()
                .server_no_context_takeover(server_nct)
                .client_no_context_takeover(client_nct)
                .server_max_window_bits(server_bits)
                .client_max_window_bits(client_bits)
                .threshold(threshold)
                .level(6)
                .mem_level(mem_level),
        );
        let chunk = if specs.iter().map(|s| s.0).sum::<usize>() > 20_000 { chunk.max(512) } else { chunk };
        let sent: Vec<Message> = specs.iter().map(|&(len, a, seed, text)| sample(len, a, seed, text)).collect();
        let mut server = connection(Role::Server, Some(server_side), Config::default());
        let mut client = connection(Role::Client, Some(client_side), Config::default());
        for client_sends in [true, false] {
            let (from, to) = if client_sends { (&mut client, &mut server) } else { (&mut server, &mut client) };
            for message in &sent {
                from.send_message(message).unwrap();
            }
            let wire = from.take_outgoing();
            for piece in wire.chunks(chunk) {
                to.receive(piece).unwrap();
            }
            prop_assert_eq!(messages(to), sent.clone());
        }
    }
}
