//! The output queue: payloads of [`SHARED_PAYLOAD_MIN`] bytes or more are
//! queued by reference, so the output comes in parts. Whatever way a driver
//! writes it (part by part, vectored, in short writes, all at once), the peer
//! must read the same frames in the order they were queued.

use std::io::IoSlice;

use bytes::Bytes;
use proptest::prelude::*;
use wshub_proto::{Config, Connection, Event, Message, PreparedMessage, Role, SHARED_PAYLOAD_MIN};

/// What the server queues, in order.
#[derive(Debug, Clone)]
enum Send {
    Message(Message),
    Prepared(Message),
    Ping(Vec<u8>),
}

fn payload(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn send() -> impl Strategy<Value = Send> {
    let len = prop_oneof![
        0usize..200,
        SHARED_PAYLOAD_MIN - 2..SHARED_PAYLOAD_MIN + 2,
        SHARED_PAYLOAD_MIN..70_000,
    ];
    (len, any::<u8>(), 0u8..4).prop_map(|(len, seed, kind)| match kind {
        0 => Send::Message(Message::Binary(payload(len, seed))),
        1 => Send::Message(Message::text("é".repeat(len / 2))),
        2 => Send::Prepared(Message::Binary(payload(len, seed))),
        _ => Send::Ping(payload(len % 126, seed).to_vec()),
    })
}

/// How the driver writes: the size of each write it manages.
#[derive(Debug, Clone, Copy)]
enum Writer {
    /// The first slice of `outgoing_vectored` alone, writing at most this
    /// many bytes at a time.
    Plain(usize),
    /// `outgoing_vectored` into this many slices, writing at most this
    /// many bytes at a time.
    Vectored(usize, usize),
    /// `take_outgoing`.
    Take,
}

fn drain(server: &mut Connection, writer: Writer) -> Vec<u8> {
    let mut wire = Vec::new();
    match writer {
        Writer::Take => wire.extend_from_slice(&server.take_outgoing()),
        Writer::Plain(max) => loop {
            let mut first = [IoSlice::new(&[])];
            if server.outgoing_vectored(&mut first) == 0 {
                break;
            }
            let n = first[0].len().min(max);
            wire.extend_from_slice(&first[0][..n]);
            server.advance_outgoing(n);
        },
        Writer::Vectored(slots, max) => loop {
            let mut slices = vec![IoSlice::new(&[]); slots];
            let parts = server.outgoing_vectored(&mut slices);
            if parts == 0 {
                break;
            }
            let mut n = 0;
            for part in &slices[..parts] {
                let take = part.len().min(max - n);
                wire.extend_from_slice(&part[..take]);
                n += take;
                if n == max {
                    break;
                }
            }
            server.advance_outgoing(n);
        },
    }
    assert_eq!(server.backlog().bytes, 0);
    wire
}

proptest! {
    #[test]
    fn the_peer_reads_what_was_queued_in_order_however_it_is_written(
        sends in proptest::collection::vec(send(), 1..12),
        writer in prop_oneof![
            (1usize..100_000).prop_map(Writer::Plain),
            (1usize..5, 1usize..100_000).prop_map(|(s, m)| Writer::Vectored(s, m)),
            Just(Writer::Take),
        ],
    ) {
        let mut server = Connection::new(Role::Server, Config::default());
        let mut expected = Vec::new();
        let mut queued = 0;
        for send in &sends {
            match send {
                Send::Message(m) => {
                    server.send_message(m).unwrap();
                    queued += m.len();
                    expected.push(Event::Message(m.clone()));
                }
                Send::Prepared(m) => {
                    server.send_prepared(&PreparedMessage::new(m)).unwrap();
                    queued += m.len();
                    expected.push(Event::Message(m.clone()));
                }
                Send::Ping(p) => {
                    server.send_ping(p).unwrap();
                    queued += p.len();
                    expected.push(Event::Ping(Bytes::from(p.clone())));
                }
            }
        }
        // Headers add 2 to 10 bytes a frame.
        prop_assert!(server.backlog().bytes >= queued + 2 * sends.len());
        prop_assert!(server.backlog().bytes <= queued + 10 * sends.len());
        let wire = drain(&mut server, writer);
        let mut client = Connection::new(Role::Client, Config::default());
        client.receive(&wire).unwrap();
        let received: Vec<Event> = client.events().collect();
        prop_assert_eq!(received, expected);
    }
}

#[test]
fn long_payloads_are_shared_not_copied() {
    let big = payload(SHARED_PAYLOAD_MIN, 7);
    let mut server = Connection::new(Role::Server, Config::default());
    server.send_message(&Message::text("before")).unwrap();
    server.send_message(&Message::Binary(big.clone())).unwrap();
    server.send_message(&Message::text("after")).unwrap();
    // [text frame + binary header] [payload] [text frame]
    let mut slices = [IoSlice::new(&[]); 8];
    assert_eq!(server.outgoing_vectored(&mut slices), 3);
    assert_eq!(slices[1].as_ptr(), big.as_ptr(), "the message's own bytes");
    assert_eq!(&slices[0][..2 + 6], b"\x81\x06before");
    assert_eq!(&slices[0][8..], &[0x82, 126, 0x08, 0x00]);
    assert_eq!(&slices[2][..], b"\x81\x05after");

    // A client masks, so it copies.
    let mut client = Connection::new(Role::Client, Config::default());
    client.send_message(&Message::Binary(big)).unwrap();
    let mut slices = [IoSlice::new(&[]); 8];
    assert_eq!(client.outgoing_vectored(&mut slices), 1);
}

#[test]
fn a_partial_write_resumes_inside_a_shared_part() {
    let big = payload(5000, 1);
    let mut server = Connection::new(Role::Server, Config::default());
    server.send_message(&Message::Binary(big.clone())).unwrap();
    let total = server.backlog().bytes;
    assert_eq!(total, 4 + 5000);
    server.advance_outgoing(4 + 1000);
    {
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(server.outgoing_vectored(&mut slices), 1);
        assert_eq!(&slices[0][..], &big[1000..]);
    }
    assert_eq!(server.backlog().bytes, 4000);
    server.advance_outgoing(4000);
    assert_eq!(server.outgoing_vectored(&mut [IoSlice::new(&[]); 8]), 0);
    assert!(server.backlog().is_empty());
}
