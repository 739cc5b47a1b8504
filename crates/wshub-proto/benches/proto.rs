//! Micro-benchmarks of the protocol core (issue 3, §2): frame headers,
//! unmasking, UTF-8 validation, the receive → echo path, the opening
//! handshake and permessage-deflate (RFC 7692).
//!
//! ```text
//! cargo bench -p wshub-proto --bench proto -- --warm-up-time 1 --measurement-time 2
//! ```

use std::hint::black_box;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use wshub_proto::frame::{apply_mask, FrameHeader, Opcode, MAX_HEADER_LEN};
use wshub_proto::handshake::{accept_response, validate_request, HeadReader, Request};
use wshub_proto::{Config, Connection, Event, Message, Role};

const MASKING_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// `messages` as a client would send them: masked frames, back to back.
fn masked_frames(messages: &[Message]) -> Vec<u8> {
    let mut client = Connection::with_masking_keys(Config::default(), || MASKING_KEY);
    for message in messages {
        client.send_message(message).unwrap();
    }
    client.take_outgoing().to_vec()
}

fn header(payload_len: u64, masked: bool) -> FrameHeader {
    FrameHeader {
        fin: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: Opcode::Binary,
        masking_key: masked.then_some(MASKING_KEY),
        payload_len,
    }
}

/// Header parse and encode for each length form (§5.2), masked and not.
fn frame_header(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_header");
    for (form, payload_len) in [("7bit", 20u64), ("16bit", 16 << 10), ("64bit", 1 << 20)] {
        for masked in [false, true] {
            let id = format!("{form}/{}", if masked { "masked" } else { "unmasked" });
            let header = header(payload_len, masked);
            let mut wire = [0u8; MAX_HEADER_LEN];
            let n = header.encode(&mut wire);
            group.bench_function(BenchmarkId::new("parse", &id), |b| {
                b.iter(|| FrameHeader::parse(black_box(&wire[..n])))
            });
            group.bench_function(BenchmarkId::new("encode", &id), |b| {
                let mut out = [0u8; MAX_HEADER_LEN];
                b.iter(|| black_box(&header).encode(black_box(&mut out)))
            });
        }
    }
    group.finish();
}

const SIZES: [(&str, usize); 5] = [
    ("16B", 16),
    ("125B", 125),
    ("1KiB", 1 << 10),
    ("64KiB", 64 << 10),
    ("1MiB", 1 << 20),
];

/// Unmasking in place (§5.3); throughput in bytes.
fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_mask");
    for (name, size) in SIZES {
        let mut buf: Vec<u8> = (0..size).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(name, |b| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(MASKING_KEY)))
        });
    }
    group.finish();
}

/// Exactly `len` bytes of text mixing 2-, 3- and 4-byte code points with
/// ASCII; padded with ASCII where a code point would not fit.
fn multi_byte_text(len: usize) -> String {
    let mut text = String::with_capacity(len);
    for c in "Grüße, κόσμε, 日本語 🎉 ".chars().cycle() {
        if text.len() + c.len_utf8() > len {
            break;
        }
        text.push(c);
    }
    while text.len() < len {
        text.push('.');
    }
    text
}

/// A server receiving one masked message and draining its events: text
/// (ASCII and multi-byte) against binary of the same size, so the cost of
/// UTF-8 validation (§8.1) shows as the difference.
fn utf8_validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("receive_message");
    for (name, size) in [("20B", 20), ("16KiB", 16 << 10), ("1MiB", 1 << 20)] {
        let ascii = "abcdefghijklmnopqrstuvwxyz0123456789 "
            .chars()
            .cycle()
            .take(size)
            .collect::<String>();
        let inputs = [
            ("text_ascii", Message::text(ascii)),
            ("text_multibyte", Message::text(multi_byte_text(size))),
            ("binary", Message::binary(vec![0xa5; size])),
        ];
        group.throughput(Throughput::Bytes(size as u64));
        for (kind, message) in inputs {
            assert_eq!(message.len(), size);
            let wire = masked_frames(&[message]);
            let mut server = Connection::new(Role::Server, Config::default());
            group.bench_function(BenchmarkId::new(kind, name), |b| {
                b.iter(|| {
                    server.receive(black_box(&wire)).unwrap();
                    while let Some(event) = server.next_event() {
                        black_box(event);
                    }
                })
            });
        }
    }
    group.finish();
}

/// The echo server's whole path for a batch of 1,000 masked 20-byte text
/// frames in one read: receive, take each message, queue its echo, take the
/// output. Throughput in messages.
fn echo_path(c: &mut Criterion) {
    const BATCH: usize = 1_000;
    let messages = vec![Message::text("twenty bytes of text"); BATCH];
    let wire = masked_frames(&messages);
    let mut group = c.benchmark_group("echo_20B_text_x1000");
    group.throughput(Throughput::Elements(BATCH as u64));
    // One write per read, as a batching server does.
    let mut server = Connection::new(Role::Server, Config::default());
    group.bench_function("take_outgoing_per_batch", |b| {
        b.iter(|| {
            server.receive(black_box(&wire)).unwrap();
            while let Some(Event::Message(message)) = server.next_event() {
                server.send_message(&message).unwrap();
            }
            black_box(server.take_outgoing())
        })
    });
    // One write per message, as a server that flushes each echo does.
    let mut server = Connection::new(Role::Server, Config::default());
    group.bench_function("take_outgoing_per_message", |b| {
        b.iter(|| {
            server.receive(black_box(&wire)).unwrap();
            while let Some(Event::Message(message)) = server.next_event() {
                server.send_message(&message).unwrap();
                black_box(server.take_outgoing());
            }
        })
    });
    group.finish();
}

/// What Chrome sends to open a WebSocket.
const CHROME_REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://127.0.0.1:8080\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

/// The server side of the opening handshake (§4.2): collect the head, parse
/// it, check it, write the 101. Throughput in handshakes.
fn handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    group.bench_function("chrome_request_to_101", |b| {
        b.iter(|| {
            let mut reader = HeadReader::default();
            assert!(reader.push(black_box(CHROME_REQUEST)).unwrap());
            let request = Request::parse(reader.head().unwrap()).unwrap();
            let upgrade = validate_request(request).unwrap();
            accept_response(&upgrade, None, None, &[]).unwrap()
        })
    });
    group.finish();
}

/// JSON-like text of exactly `len` bytes, as a chat hub sends; messages
/// with different `first_seq` differ.
#[cfg(feature = "deflate")]
fn json_text(len: usize, first_seq: u32) -> String {
    let mut text = String::with_capacity(len + 128);
    let mut seq = first_seq;
    while text.len() < len {
        text.push_str(&format!(
            "{{\"op\":\"message\",\"room\":\"lobby-{}\",\"seq\":{seq},\"user\":\"user-{}\",\"text\":\"hello {} from the benchmark\"}},",
            seq % 7,
            seq * 7919 % 1000,
            seq * 31 % 97,
        ));
        seq += 1;
    }
    text.truncate(len);
    text
}

/// permessage-deflate agreements for a server and a client at `level`,
/// threshold 0, with or without context takeover in both directions.
#[cfg(feature = "deflate")]
fn deflate_agreements(
    level: u32,
    takeover: bool,
) -> (
    wshub_proto::deflate::DeflateAgreement,
    wshub_proto::deflate::DeflateAgreement,
) {
    use wshub_proto::deflate::{self, DeflateConfig};
    let client = DeflateConfig::client()
        .server_no_context_takeover(!takeover)
        .client_no_context_takeover(!takeover)
        .level(level)
        .threshold(0);
    let server = DeflateConfig::server()
        .server_no_context_takeover(!takeover)
        .client_no_context_takeover(!takeover)
        .level(level)
        .threshold(0);
    let (server_side, answer) =
        deflate::negotiate([deflate::offer(&client).as_str()], &server).unwrap();
    let client_side = deflate::validate_response([answer.as_str()], &client)
        .unwrap()
        .unwrap();
    (server_side, client_side)
}

/// permessage-deflate (RFC 7692 §7.2): a server compressing one text
/// message into its output (`compress`), and a new server connection
/// receiving 64 masked compressed messages and taking them
/// (`decompress_x64`), for 16 KiB JSON-like messages and 64-byte ones, at
/// levels 1, 2 and 6 without context takeover (a fresh zlib state per
/// message, the server default) and at level 2 with it (state kept).
/// Messages cycle through 16 different texts, so context takeover does not
/// get to match a whole message against its twin. Throughput in bytes of
/// uncompressed payload. The compressed sizes are printed once, to weigh
/// speed against ratio.
#[cfg(feature = "deflate")]
fn deflate(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate");
    for (name, size) in [("16KiB_json", 16 << 10), ("64B_json", 64)] {
        let texts: Vec<String> = (0..16).map(|i| json_text(size, i * 1000)).collect();
        for (level, takeover) in [(1, false), (2, false), (6, false), (2, true)] {
            let id = format!(
                "{name}/level{level}/{}",
                if takeover { "takeover" } else { "no_takeover" }
            );
            let (server_side, client_side) = deflate_agreements(level, takeover);
            let mut server = Connection::new(
                Role::Server,
                Config::default().deflate(Some(server_side.clone())),
            );
            server.send_text(&texts[0]).unwrap();
            let sent = server.take_outgoing();
            eprintln!(
                "deflate {id}: {size} bytes -> {} bytes on the wire",
                sent.len()
            );
            group.throughput(Throughput::Bytes(size as u64));
            let mut next = 0;
            group.bench_function(BenchmarkId::new("compress", &id), |b| {
                b.iter(|| {
                    next = (next + 1) % texts.len();
                    server.send_text(black_box(&texts[next])).unwrap();
                    black_box(server.take_outgoing())
                })
            });

            // With context takeover every frame must come from the same
            // client stream, so a batch is prepared once and replayed into
            // a fresh connection each time.
            const BATCH: usize = 64;
            let mut client =
                Connection::with_masking_keys(Config::default().deflate(Some(client_side)), || {
                    MASKING_KEY
                });
            for i in 0..BATCH {
                client.send_text(&texts[i % texts.len()]).unwrap();
            }
            let wire = client.take_outgoing().to_vec();
            let config = Config::default().deflate(Some(server_side));
            group.throughput(Throughput::Bytes((size * BATCH) as u64));
            group.bench_function(BenchmarkId::new("decompress_x64", &id), |b| {
                b.iter(|| {
                    let mut server = Connection::new(Role::Server, config.clone());
                    server.receive(black_box(&wire)).unwrap();
                    let mut n = 0;
                    while let Some(event) = server.next_event() {
                        black_box(event);
                        n += 1;
                    }
                    assert_eq!(n, BATCH);
                })
            });
        }
    }
    group.finish();
}

/// A server's work per echo of one masked client message, without sockets:
/// receive the frame, take the message, queue the echo, take the output.
/// For a 16 KiB JSON-like text message, uncompressed and with
/// permessage-deflate at the server default (level 2, no context takeover:
/// inflate into a fresh state, deflate from a fresh state, per message) and
/// with context takeover. The throughput is echoes per second on one core,
/// the ceiling of `wshub serve`'s `/echo` for such messages before any
/// system call.
#[cfg(feature = "deflate")]
fn deflate_echo(c: &mut Criterion) {
    let mut group = c.benchmark_group("echo_16KiB_json");
    const BATCH: usize = 64;
    let texts: Vec<String> = (0..16).map(|i| json_text(16 << 10, i * 1000)).collect();
    for (id, deflate) in [
        ("uncompressed", None),
        ("deflate_level2_no_takeover", Some(false)),
        ("deflate_level2_takeover", Some(true)),
    ] {
        let agreements = deflate.map(|takeover| deflate_agreements(2, takeover));
        let mut client_config = Config::default();
        let mut server_config = Config::default();
        if let Some((server_side, client_side)) = agreements {
            client_config = client_config.deflate(Some(client_side));
            server_config = server_config.deflate(Some(server_side));
        }
        // One client stream of BATCH messages, replayed into a fresh server
        // each iteration (context takeover needs the same stream).
        let mut client = Connection::with_masking_keys(client_config, || MASKING_KEY);
        for i in 0..BATCH {
            client.send_text(&texts[i % texts.len()]).unwrap();
        }
        let wire = client.take_outgoing().to_vec();
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(BenchmarkId::new("server_x64", id), |b| {
            b.iter(|| {
                let mut server = Connection::new(Role::Server, server_config.clone());
                server.receive(black_box(&wire)).unwrap();
                let mut n = 0;
                while let Some(Event::Message(message)) = server.next_event() {
                    server.send_message(&message).unwrap();
                    black_box(server.take_outgoing());
                    n += 1;
                }
                assert_eq!(n, BATCH);
            })
        });
    }
    group.finish();
}

/// Runs every group of this file; what `criterion_group!` would generate,
/// written out so that the public function has a doc comment.
pub fn benches() {
    let mut c = Criterion::default().configure_from_args();
    frame_header(&mut c);
    unmask(&mut c);
    utf8_validation(&mut c);
    echo_path(&mut c);
    handshake(&mut c);
    #[cfg(feature = "deflate")]
    deflate(&mut c);
    #[cfg(feature = "deflate")]
    deflate_echo(&mut c);
}
criterion_main!(benches);
