//! No allocation per message on the echo path at steady state (issue 3, §3).
//!
//! A counting global allocator wraps the system one. Each test warms a server
//! [`Connection`] up with a few echoes, so its buffers reach their working
//! size, then counts the allocations its own thread makes across 10,000
//! echoes: receive a masked frame, take the message, queue the echo, write
//! the output out with `outgoing` and `advance_outgoing`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use wshub_proto::{Config, Connection, Event, Message, Role};

/// Counts the allocations of each thread that opted in with [`count_allocations`].
///
/// The count is per thread, not one global atomic: the test harness runs the
/// tests on parallel threads, and a global count would charge one test with
/// another's allocations.
struct CountingAllocator;

thread_local! {
    // `const` and without destructors, so using them never allocates and is
    // safe from inside the allocator.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed while counting.
    static NET_BYTES: Cell<i64> = const { Cell::new(0) };
}

impl CountingAllocator {
    fn record(&self, freed: usize, allocated: usize) {
        if COUNTING.with(Cell::get) {
            if allocated > 0 {
                ALLOCATIONS.with(|n| n.set(n.get() + 1));
            }
            NET_BYTES.with(|n| n.set(n.get() + allocated as i64 - freed as i64));
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are ours; counting touches only const
// thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.record(0, layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.record(0, layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A realloc may move the block: as costly as an allocation.
        self.record(layout.size(), new_size);
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.record(layout.size(), 0);
        // SAFETY: forwarded unchanged; `ptr` came from `System` through us.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Allocations (and reallocations) this thread makes while running `f`.
fn count_allocations(f: impl FnOnce()) -> u64 {
    count(f).0
}

/// Allocations, and bytes still held from them, of this thread running `f`.
fn count<R>(f: impl FnOnce() -> R) -> (u64, i64, R) {
    ALLOCATIONS.with(|n| n.set(0));
    NET_BYTES.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    let result = f();
    COUNTING.with(|c| c.set(false));
    (
        ALLOCATIONS.with(Cell::get),
        NET_BYTES.with(Cell::get),
        result,
    )
}

/// Enough echoes for the message buffer's block to double up to its largest
/// size (`MAX_MESSAGE_BLOCK` in connection.rs): the steady state.
const WARM_UP: usize = 1000;
const MESSAGES: usize = 10_000;

/// `count` copies of `message` as a client would send them: masked frames,
/// back to back.
fn masked_frames(message: &Message, count: usize) -> Vec<u8> {
    let mut client = Connection::with_masking_keys(Config::default(), || [0x37, 0xfa, 0x21, 0x3d]);
    for _ in 0..count {
        client.send_message(message).unwrap();
    }
    client.take_outgoing().to_vec()
}

/// One echo: receive `frame`, echo the message it holds, write the output.
/// The message is dropped before this returns, so before the next receive.
fn echo_once(server: &mut Connection, frame: &[u8], written: &mut usize) {
    server.receive(frame).unwrap();
    let Some(Event::Message(message)) = server.next_event() else {
        panic!("one message per frame");
    };
    assert!(server.next_event().is_none());
    server.send_message(&message).unwrap();
    drop(message);
    *written += write_all(server);
}

/// Writes the output out as a driver does, part by part; returns the bytes.
fn write_all(server: &mut Connection) -> usize {
    let mut written = 0;
    loop {
        let mut slices = [std::io::IoSlice::new(&[]); 4];
        let parts = server.outgoing_vectored(&mut slices);
        let n: usize = slices[..parts].iter().map(|s| s.len()).sum();
        if n == 0 {
            return written;
        }
        written += n;
        server.advance_outgoing(n);
    }
}

/// Allocations per 10,000 echoes of `message` after a warm-up.
fn allocations_echoing(message: &Message) -> u64 {
    let frame = masked_frames(message, 1);
    // The echo is the same frame, unmasked: four bytes of masking key fewer.
    let echo_len = frame.len() - 4;
    let mut server = Connection::new(Role::Server, Config::default());
    let mut written = 0;
    for _ in 0..WARM_UP {
        echo_once(&mut server, &frame, &mut written);
    }
    let count = count_allocations(|| {
        for _ in 0..MESSAGES {
            echo_once(&mut server, &frame, &mut written);
        }
    });
    assert_eq!(
        written,
        (WARM_UP + MESSAGES) * echo_len,
        "every echo written"
    );
    count
}

#[test]
fn echoing_20_byte_text_messages_does_not_allocate() {
    let message = Message::text("twenty bytes of text");
    assert_eq!(message.len(), 20);
    assert_eq!(
        allocations_echoing(&message),
        0,
        "allocations in {MESSAGES} echoes"
    );
}

#[test]
fn echoing_16_kib_binary_messages_does_not_allocate() {
    let payload: Vec<u8> = (0..16 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let message = Message::binary(payload);
    assert_eq!(
        allocations_echoing(&message),
        0,
        "allocations in {MESSAGES} echoes"
    );
}

#[test]
fn the_counter_sees_an_allocation() {
    // Guards the two tests above against a counter that never counts.
    let count = count_allocations(|| drop(std::hint::black_box(Box::new(7u64))));
    assert_eq!(count, 1);
}

/// What a burst leaves behind is reported and given back. A server
/// receives one 64 KiB message and echoes it (the echo's payload shares the
/// message's bytes), and the socket takes the echo 4 KiB at a time. The
/// message buffer stays allocated, to be reused in place, while the room
/// left in it is nothing: the message filled it. Drivers shrink
/// on `buffer_capacity`, so it must count these allocations, not the room
/// left in them; else an idle connection keeps a burst's buffers for good
/// (it did: 66 KiB per idle connection after one 64 KiB echo, with
/// `wshub bench idle --burst 64KiB` on 2026-12-05).
#[test]
fn buffer_capacity_counts_what_a_burst_left_and_shrinking_gives_it_back() {
    let payload: Vec<u8> = (0..64 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let frame = masked_frames(&Message::binary(payload), 1);
    let mut server = Connection::new(Role::Server, Config::default());
    let (_, held, written) = count(|| {
        server.receive(&frame).unwrap();
        let Some(Event::Message(message)) = server.next_event() else {
            panic!("one message");
        };
        server.send_message(&message).unwrap();
        drop(message);
        let mut written = 0;
        loop {
            let mut slices = [std::io::IoSlice::new(&[]); 4];
            let parts = server.outgoing_vectored(&mut slices);
            let n: usize = slices[..parts].iter().map(|s| s.len()).sum();
            if n == 0 {
                return written;
            }
            let taken = n.min(4096);
            written += taken;
            server.advance_outgoing(taken);
        }
    });
    assert_eq!(written, frame.len() - 4, "the echo written whole");
    assert!(
        held >= 64 * 1024,
        "the message buffer is still allocated: {held} B"
    );
    let reported = server.buffer_capacity() as i64;
    // The event queue is not a buffer `buffer_capacity` counts: a few
    // hundred bytes of slack.
    assert!(
        reported >= held - 1024,
        "buffer_capacity {reported} B while {held} B are held"
    );
    let (_, change, ()) = count(|| server.shrink_buffers());
    assert!(
        held + change <= 1024,
        "{} B still held after shrink_buffers",
        held + change
    );
    assert_eq!(server.buffer_capacity(), 0);
}

/// The same for the output buffer: a client masks what it sends, so a
/// 64 KiB message is copied into the output buffer, and the socket takes it
/// 4 KiB at a time; each partial write moves the buffer's start, so once
/// written the room it reports is a fraction of its allocation.
#[test]
fn buffer_capacity_counts_an_output_buffer_written_in_parts() {
    let mut client = Connection::new(Role::Client, Config::default());
    let message = Message::binary(vec![5u8; 64 * 1024]);
    let (_, held, ()) = count(|| {
        client.send_message(&message).unwrap();
        loop {
            let mut slices = [std::io::IoSlice::new(&[]); 4];
            let parts = client.outgoing_vectored(&mut slices);
            let n: usize = slices[..parts].iter().map(|s| s.len()).sum();
            if n == 0 {
                return;
            }
            client.advance_outgoing(n.min(4096));
        }
    });
    assert!(
        held >= 64 * 1024,
        "the output buffer is still allocated: {held} B"
    );
    let reported = client.buffer_capacity() as i64;
    assert!(
        reported >= held - 1024,
        "buffer_capacity {reported} B while {held} B are held"
    );
    let (_, change, ()) = count(|| client.shrink_buffers());
    assert!(
        held + change <= 1024,
        "{} B still held after shrink_buffers",
        held + change
    );
}

/// One read holding `BATCH` frames, as from a client with 16 messages in
/// flight: receive them all, then echo each, then write the output once.
fn echo_batch(server: &mut Connection, frames: &[u8]) -> usize {
    server.receive(frames).unwrap();
    let mut echoed = 0;
    while let Some(Event::Message(message)) = server.next_event() {
        server.send_message(&message).unwrap();
        echoed += 1;
    }
    write_all(server);
    echoed
}

const BATCH: usize = 16;

#[test]
fn echoing_batches_of_16_text_messages_read_at_once_allocates_per_block_not_per_message() {
    let message = Message::text("twenty bytes of text");
    let frames = masked_frames(&message, BATCH);
    let mut server = Connection::new(Role::Server, Config::default());
    for _ in 0..WARM_UP {
        assert_eq!(echo_batch(&mut server, &frames), BATCH);
    }
    let count = count_allocations(|| {
        for _ in 0..MESSAGES / BATCH {
            assert_eq!(echo_batch(&mut server, &frames), BATCH);
        }
    });
    // Messages of one read share the connection's 4 KiB message block. When
    // a block runs out while messages cut from it are still queued, a new one
    // is allocated (the buffer, and its shared header at the first split):
    // at most 2 allocations per 4 KiB of payload, never 2 per message as
    // before. A block whose messages were all dropped is reused in place.
    let payload = (MESSAGES / BATCH * BATCH * message.len()) as u64;
    let blocks = payload.div_ceil(4096);
    assert!(
        count <= 2 * blocks,
        "{count} allocations for {} echoes ({blocks} blocks of payload)",
        MESSAGES / BATCH * BATCH
    );
}

/// `Connection::deflate_memory` reports what zlib-rs really holds: after its
/// first compressed message, a server that keeps its compression context
/// (takeover) holds exactly the state's reported size more than one that
/// does not.
#[cfg(feature = "deflate")]
#[test]
fn deflate_memory_matches_the_bytes_a_kept_context_holds() {
    use wshub_proto::deflate::{self, DeflateConfig};

    fn server(takeover: bool, window_bits: u8, mem_level: u8) -> Connection {
        let client = DeflateConfig::client().server_max_window_bits(window_bits);
        let offer = deflate::offer(&client);
        let config = DeflateConfig::server()
            .server_no_context_takeover(!takeover)
            .server_max_window_bits(window_bits)
            .mem_level(mem_level)
            .threshold(0);
        let (agreement, _) = deflate::negotiate([offer.as_str()], &config).unwrap();
        Connection::new(Role::Server, Config::default().deflate(Some(agreement)))
    }

    let text = "{\"op\":\"message\",\"text\":\"hello\"} ".repeat(400);
    for (window_bits, mem_level) in [(15, 8), (15, 1), (9, 8), (9, 9), (8, 4)] {
        let held = |takeover: bool| {
            let mut conn = server(takeover, window_bits, mem_level);
            let (_, bytes, conn) = count(|| {
                conn.send_text(&text).unwrap();
                drop(conn.take_outgoing());
                conn
            });
            (bytes, conn.deflate_memory())
        };
        // Both keep the same scratch buffer; only the state differs.
        let (kept, reported) = held(true);
        let (freed, scratch) = held(false);
        assert!(reported > scratch + 100_000, "{reported} B reported");
        assert_eq!(
            kept - freed,
            (reported - scratch) as i64,
            "window bits {window_bits}, memory level {mem_level}"
        );
    }
}
