//! Bench only: measures the flate2 backend selected by this crate's cargo
//! feature on permessage-deflate-style messages (RFC 7692): raw deflate, one
//! message per sync flush. See README.md for what each number means.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

#[cfg(not(any(
    feature = "zlib-rs",
    feature = "zlib",
    feature = "zlib-ng",
    feature = "miniz"
)))]
compile_error!("enable one backend feature: zlib-rs, zlib-rs-std, zlib, zlib-ng or miniz");

const BACKEND: &str = if cfg!(feature = "zlib-ng") {
    "zlib-ng (flate2/zlib-ng, libz-ng-sys)"
} else if cfg!(feature = "zlib") {
    "zlib (flate2/zlib, system libz via libz-sys)"
} else if cfg!(feature = "zlib-rs-std") {
    "zlib-rs + std (flate2/zlib-rs + runtime_detection)"
} else if cfg!(feature = "zlib-rs") {
    "zlib-rs (flate2/zlib-rs, no std: as wshub builds it)"
} else {
    "miniz_oxide (flate2/rust_backend)"
};

// ---------------------------------------------------------------------------
// Counting allocator: current and peak bytes held through the global allocator.

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn count_alloc(size: usize) {
    let now = CURRENT.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; we only count sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        CURRENT.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Relaxed);
            count_alloc(new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `make` and returns what it built, the bytes still held after it
/// returned (the live value) and the peak bytes held on top while it ran.
fn held<T>(make: impl FnOnce() -> T) -> (T, usize, usize) {
    let before = CURRENT.load(Relaxed);
    PEAK.store(before, Relaxed);
    let value = make();
    let after = CURRENT.load(Relaxed);
    (value, after - before, PEAK.load(Relaxed) - before)
}

// ---------------------------------------------------------------------------
// Timing.

/// Minimum measured time per row (BENCH_SECS overrides, for quick checks).
fn min_time() -> Duration {
    let secs = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(secs)
}

/// Seconds per call of `f(i)`, after 0.1 s of warm-up, over at least `min_time()`.
fn secs_per_call(mut f: impl FnMut(usize)) -> f64 {
    let warm = Instant::now();
    let mut i = 0;
    while warm.elapsed() < Duration::from_millis(100) {
        f(i);
        i += 1;
    }
    let min = min_time();
    let start = Instant::now();
    let mut n = 0;
    loop {
        f(n);
        n += 1;
        if start.elapsed() >= min {
            break;
        }
    }
    start.elapsed().as_secs_f64() / n as f64
}

fn mb_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

// ---------------------------------------------------------------------------
// Payloads: deterministic chat-like JSON, a ring of distinct messages.

/// Distinct messages in the ring we cycle through (so that, with context
/// takeover, a message is never compressed against an identical copy).
const RING: usize = 32;

fn messages(size: usize) -> Vec<Vec<u8>> {
    (0..RING)
        .map(|k| {
            let mut s = String::from("[");
            let mut n = k * 1000;
            while s.len() < size {
                if s.len() > 1 {
                    s.push(',');
                }
                write!(
                    s,
                    r#"{{"id":{n},"user":"user-{n}","text":"hello world message {n}","tags":["a","b"]}}"#
                )
                .unwrap();
                n += 1;
            }
            s.truncate(size);
            s.into_bytes()
        })
        .collect()
}

// ---------------------------------------------------------------------------
// flate2, whichever backend is compiled in.

/// A raw deflate state, or `None` where the backend cannot take `bits`.
#[cfg(not(feature = "miniz"))]
fn new_compress(level: u32, bits: u8) -> Option<Compress> {
    Some(Compress::new_with_window_bits(
        Compression::new(level),
        false,
        bits,
    ))
}

/// flate2 compiles `new_with_window_bits` only for zlib backends
/// (`#[cfg(feature = "any_zlib")]`): miniz_oxide has the 15-bit window only.
#[cfg(feature = "miniz")]
fn new_compress(level: u32, bits: u8) -> Option<Compress> {
    (bits == 15).then(|| Compress::new(Compression::new(level), false))
}

#[cfg(not(feature = "miniz"))]
fn new_decompress(bits: u8) -> Decompress {
    Decompress::new_with_window_bits(false, bits)
}

#[cfg(feature = "miniz")]
fn new_decompress(bits: u8) -> Decompress {
    assert_eq!(bits, 15);
    Decompress::new(false)
}

/// Compresses one message with a sync flush into `out`; returns its length
/// (trailer `00 00 ff ff` included).
fn compress_msg(c: &mut Compress, input: &[u8], out: &mut [u8]) -> usize {
    let (in0, out0) = (c.total_in(), c.total_out());
    loop {
        let done_in = (c.total_in() - in0) as usize;
        let done_out = (c.total_out() - out0) as usize;
        assert!(done_out < out.len(), "output buffer too small");
        c.compress(&input[done_in..], &mut out[done_out..], FlushCompress::Sync)
            .expect("compress");
        let done_out = (c.total_out() - out0) as usize;
        if (c.total_in() - in0) as usize == input.len() && done_out < out.len() {
            return done_out;
        }
    }
}

/// Inflates one message (ending in a sync flush) into `out`; returns its length.
fn decompress_msg(d: &mut Decompress, input: &[u8], out: &mut [u8]) -> usize {
    let (in0, out0) = (d.total_in(), d.total_out());
    loop {
        let done_in = (d.total_in() - in0) as usize;
        let done_out = (d.total_out() - out0) as usize;
        assert!(done_out < out.len(), "output buffer too small");
        d.decompress(
            &input[done_in..],
            &mut out[done_out..],
            FlushDecompress::Sync,
        )
        .expect("decompress");
        let done_out = (d.total_out() - out0) as usize;
        if (d.total_in() - in0) as usize == input.len() && done_out < out.len() {
            return done_out;
        }
    }
}

/// Output buffer big enough for any message of `size` bytes.
fn out_buf(size: usize) -> Vec<u8> {
    vec![0; size * 2 + 1024]
}

fn bench_compress(msgs: &[Vec<u8>], level: u32, bits: u8) {
    let size = msgs[0].len();
    let label = format!("{:>6}  {level:>5}  {bits:>5}", kib(size));
    if new_compress(level, bits).is_none() {
        println!(
            "{label}  {:>8}  {:>8}  {:>10}  {:>10}",
            "n/a", "n/a", "n/a", "n/a"
        );
        return;
    }
    let mut out = out_buf(size);

    // Wire size (RFC 7692 §7.2.1: the 4-byte trailer is not sent), average per message.
    let fresh_size: usize = msgs
        .iter()
        .map(|m| compress_msg(&mut new_compress(level, bits).unwrap(), m, &mut out) - 4)
        .sum::<usize>()
        / RING;
    // Context takeover: one state for the whole ring, twice over; the second
    // pass is measured, and each message is checked by inflating it with one
    // kept inflater too.
    let mut kept = new_compress(level, bits).unwrap();
    let mut inflater = new_decompress(bits);
    let mut back = out_buf(size);
    let mut kept_size = 0;
    for pass in 0..2 {
        for m in msgs {
            let n = compress_msg(&mut kept, m, &mut out);
            let k = decompress_msg(&mut inflater, &out[..n], &mut back);
            assert_eq!(&back[..k], &m[..], "kept round trip");
            if pass == 1 {
                kept_size += n - 4;
            }
        }
    }
    let kept_size = kept_size / RING;

    let fresh = secs_per_call(|i| {
        let mut c = new_compress(level, bits).unwrap();
        black_box(compress_msg(&mut c, &msgs[i % RING], &mut out));
    });
    let kept_t = secs_per_call(|i| {
        black_box(compress_msg(&mut kept, &msgs[i % RING], &mut out));
    });
    println!(
        "{label}  {fresh_size:>8}  {kept_size:>8}  {:>10.1}  {:>10.1}",
        mb_per_s(size, fresh),
        mb_per_s(size, kept_t)
    );
}

fn bench_decompress(msgs: &[Vec<u8>], level: u32, bits: u8) {
    let size = msgs[0].len();
    let label = format!("{:>6}  {level:>5}  {bits:>5}", kib(size));
    if new_compress(level, bits).is_none() {
        println!("{label}  {:>10}", "n/a");
        return;
    }
    let mut buf = out_buf(size);
    let compressed: Vec<Vec<u8>> = msgs
        .iter()
        .map(|m| {
            let n = compress_msg(&mut new_compress(level, bits).unwrap(), m, &mut buf);
            buf[..n].to_vec()
        })
        .collect();
    let mut out = out_buf(size);
    for (c, m) in compressed.iter().zip(msgs) {
        let n = decompress_msg(&mut new_decompress(bits), c, &mut out);
        assert_eq!(&out[..n], &m[..], "round trip");
    }
    let t = secs_per_call(|i| {
        let mut d = new_decompress(bits);
        black_box(decompress_msg(&mut d, &compressed[i % RING], &mut out));
    });
    println!("{label}  {:>10.1}", mb_per_s(size, t));
}

fn state_memory(msg: &[u8], bits: u8) {
    let Some(_) = new_compress(2, bits) else {
        println!(
            "{bits:>5}  {:>12}  {:>12}  {:>12}  {:>12}",
            "n/a", "n/a", "n/a", "n/a"
        );
        return;
    };
    let mut out = out_buf(msg.len());
    let mut back = out_buf(msg.len());
    let (c, c_held, c_peak) = held(|| {
        let mut c = new_compress(2, bits).unwrap();
        compress_msg(&mut c, msg, &mut out);
        c
    });
    drop(c);
    let n = compress_msg(&mut new_compress(2, bits).unwrap(), msg, &mut out);
    let compressed = out[..n].to_vec();
    let (d, d_held, d_peak) = held(|| {
        let mut d = new_decompress(bits);
        decompress_msg(&mut d, &compressed, &mut back);
        d
    });
    drop(d);
    println!("{bits:>5}  {c_held:>12}  {c_peak:>12}  {d_held:>12}  {d_peak:>12}");
}

fn kib(bytes: usize) -> String {
    format!("{}KiB", bytes / 1024)
}

// ---------------------------------------------------------------------------
// zlib-rs called directly, for its memory level (flate2 does not expose it).

#[cfg(feature = "zlib-rs")]
mod direct {
    use super::*;
    use zlib_rs::{Deflate, DeflateConfig, DeflateFlush};

    fn new_deflate(level: i32, bits: u8, mem_level: i32) -> Deflate {
        Deflate::new_with_config(DeflateConfig {
            level,
            method: Default::default(),
            window_bits: -i32::from(bits), // raw deflate
            mem_level,
            strategy: Default::default(),
        })
    }

    fn compress_msg(d: &mut Deflate, input: &[u8], out: &mut [u8]) -> usize {
        let (in0, out0) = (d.total_in(), d.total_out());
        loop {
            let done_in = (d.total_in() - in0) as usize;
            let done_out = (d.total_out() - out0) as usize;
            assert!(done_out < out.len(), "output buffer too small");
            d.compress(
                &input[done_in..],
                &mut out[done_out..],
                DeflateFlush::SyncFlush,
            )
            .expect("compress");
            let done_out = (d.total_out() - out0) as usize;
            if (d.total_in() - in0) as usize == input.len() && done_out < out.len() {
                return done_out;
            }
        }
    }

    pub(crate) fn mem_levels(msgs: &[Vec<u8>]) {
        let size = msgs[0].len();
        let level = 2;
        println!();
        println!(
            "zlib-rs direct (zlib_rs::Deflate::new_with_config), {}, level {level}",
            kib(size)
        );
        println!(
            "{:>9}  {:>5}  {:>12}  {:>12}  {:>8}  {:>8}  {:>10}  {:>10}",
            "mem_level",
            "wbits",
            "state B",
            "peak B",
            "fresh B",
            "kept B",
            "fresh MB/s",
            "kept MB/s"
        );
        let mut out = out_buf(size);
        for bits in [15u8, 9] {
            for mem_level in [1, 4, 8, 9] {
                let (d, state, peak) = held(|| {
                    let mut d = new_deflate(level, bits, mem_level);
                    compress_msg(&mut d, &msgs[0], &mut out);
                    d
                });
                drop(d);
                let fresh_size = msgs
                    .iter()
                    .map(|m| {
                        compress_msg(&mut new_deflate(level, bits, mem_level), m, &mut out) - 4
                    })
                    .sum::<usize>()
                    / RING;
                let mut kept = new_deflate(level, bits, mem_level);
                for m in msgs {
                    compress_msg(&mut kept, m, &mut out);
                }
                let kept_size = msgs
                    .iter()
                    .map(|m| compress_msg(&mut kept, m, &mut out) - 4)
                    .sum::<usize>()
                    / RING;
                let fresh = secs_per_call(|i| {
                    let mut d = new_deflate(level, bits, mem_level);
                    black_box(compress_msg(&mut d, &msgs[i % RING], &mut out));
                });
                let kept_t = secs_per_call(|i| {
                    black_box(compress_msg(&mut kept, &msgs[i % RING], &mut out));
                });
                println!(
                    "{mem_level:>9}  {bits:>5}  {state:>12}  {peak:>12}  {fresh_size:>8}  {kept_size:>8}  {:>10.1}  {:>10.1}",
                    mb_per_s(size, fresh),
                    mb_per_s(size, kept_t)
                );
            }
        }
    }
}

fn main() {
    let big = messages(16 * 1024);
    let small = messages(1024);
    println!("backend: {BACKEND}");
    println!(
        "min time per row: {:.1} s; {RING} distinct messages cycled; MB = 10^6 bytes",
        min_time().as_secs_f64()
    );

    println!();
    println!("compress (sizes: bytes on the wire per message, average; fresh = new state per message, kept = context takeover)");
    println!(
        "{:>6}  {:>5}  {:>5}  {:>8}  {:>8}  {:>10}  {:>10}",
        "msg", "level", "wbits", "fresh B", "kept B", "fresh MB/s", "kept MB/s"
    );
    for msgs in [&big, &small] {
        for level in [1, 2, 6] {
            for bits in [15, 9] {
                bench_compress(msgs, level, bits);
            }
        }
    }

    println!();
    println!("decompress (new state per message; MB/s of output)");
    println!(
        "{:>6}  {:>5}  {:>5}  {:>10}",
        "msg", "level", "wbits", "MB/s"
    );
    for level in [1, 2, 6] {
        for bits in [15, 9] {
            bench_decompress(&big, level, bits);
        }
    }

    println!();
    println!("state memory after one 16KiB message, level 2 (held = live state; peak = most held while creating + first message)");
    println!(
        "{:>5}  {:>12}  {:>12}  {:>12}  {:>12}",
        "wbits", "deflate held", "deflate peak", "inflate held", "inflate peak"
    );
    for bits in [15, 9] {
        state_memory(&big[0], bits);
    }

    #[cfg(feature = "zlib-rs")]
    direct::mem_levels(&big);
}
