//! Micro-benchmarks of the hub's fan-out (issue 3, §2): one publish to a room
//! of 10,000 members, and encoding a message once with `PreparedMessage`.
//!
//! ```text
//! cargo bench -p wshub-hub --bench fanout -- --warm-up-time 1 --measurement-time 2
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use wshub::{Message, PreparedMessage};
use wshub_hub::rooms::{Inbox, Rooms, SendQueue};

const MEMBERS: usize = 10_000;
const ROOM: &str = "bench";

/// A room of `MEMBERS` members with empty queues.
fn full_room() -> (Rooms, Vec<Inbox>) {
    let rooms = Rooms::default();
    let mut inboxes = Vec::with_capacity(MEMBERS);
    for id in 0..MEMBERS as u64 {
        // Room for the presence notices of the members joining after this
        // one would make setup quadratic in memory; a full queue only kicks
        // the member (a stored `Notify` permit), which the benchmark ignores.
        let (tx, rx) = rooms.outbox(SendQueue::new(16, usize::MAX));
        rooms
            .join(ROOM, id, &format!("member-{id}"), true, &tx, None)
            .expect("names are unique");
        inboxes.push(rx);
    }
    drain(&mut inboxes);
    (rooms, inboxes)
}

fn drain(inboxes: &mut [Inbox]) {
    for inbox in inboxes {
        while inbox.try_recv().is_some() {}
    }
}

/// One publish of a 64-byte message to every member: encode once, queue to
/// 10,000 outboxes. Throughput in deliveries; the queues are drained between
/// publishes, outside the timing.
fn fan_out(c: &mut Criterion) {
    let started = Instant::now();
    let (rooms, mut inboxes) = full_room();
    eprintln!(
        "fanout: {MEMBERS} members joined in {:.2?}",
        started.elapsed()
    );
    let message = json!("x".repeat(64));
    let mut group = c.benchmark_group("fan_out");
    group.throughput(Throughput::Elements(MEMBERS as u64));
    group.bench_function("publish_64B_to_10000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                black_box(rooms.publish(ROOM, 0, black_box(&message)).unwrap());
                total += start.elapsed();
                drain(&mut inboxes);
            }
            total
        })
    });
    group.finish();
    assert!(
        inboxes.iter_mut().all(|i| i.try_recv().is_none()),
        "every delivery was drained"
    );
}

/// Encoding one message as a shareable server frame.
fn prepared_message(c: &mut Criterion) {
    let mut group = c.benchmark_group("prepared_message");
    for (name, size) in [("64B", 64), ("16KiB", 16 << 10)] {
        let message = Message::text("x".repeat(size));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("new", name), |b| {
            b.iter(|| PreparedMessage::new(black_box(&message)))
        });
    }
    group.finish();
}

/// Runs every group of this file; what `criterion_group!` would generate,
/// written out so that the public function has a doc comment.
pub fn benches() {
    let mut c = Criterion::default().configure_from_args();
    fan_out(&mut c);
    prepared_message(&mut c);
}
criterion_main!(benches);
