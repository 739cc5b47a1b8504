//! Compressing and decompressing message payloads (RFC 7692 §7.2).
//!
//! A compressed message is raw DEFLATE (RFC 1951) ending in a sync flush, with
//! the flush's final `00 00 ff ff` removed (§7.2.1); the receiver appends it
//! back before inflating (§7.2.2).
//!
//! # Window bits 8
//!
//! zlib cannot deflate raw with an 8-bit window (since zlib 1.2.9 it silently
//! uses 9, which is why flate2 refuses 8), so when we may use at most 256
//! bytes of window we compress with a 9-bit window but end a DEFLATE block
//! with a *full* flush after every 256 bytes of input. A full flush resets
//! the compressor's dictionary: no match may reach back past it. Every
//! back-reference therefore stays within the current segment of at most 256
//! bytes, which a true 8-bit (256-byte) inflater can resolve; a message's
//! last segment also ends with a full flush, so with context takeover the
//! next message cannot reach into the previous one either. Each flush costs
//! an empty stored block (5 bytes, about 2% on top of each 256 bytes): the
//! price of a window nobody should ask for. Inflating data that was
//! compressed with an 8-bit window needs no trick: a 9-bit window holds it.
//!
//! # The inbound window
//!
//! The inflater is created with the negotiated window (9 for 8), but zlib
//! resolves a back-reference from the message's own output too, which this
//! crate keeps whole: a peer that reaches further back within one message
//! than it agreed is decoded anyway, and one that does so across messages
//! (context takeover) fails with 1007. Being lenient here costs no memory
//! beyond the message itself, which `max_message_size` bounds.
//!
//! # Memory
//!
//! Compression uses zlib-rs's own `Deflate`, which takes a memory level;
//! inflation goes through flate2 on the same zlib-rs. Measured with a
//! counting allocator (`tests/alloc.rs`), zlib-rs 0.6, for window bits `w`
//! (9 for 8) and memory level `m`:
//! - deflate: `2^(w+2) + 7·2^(m+6) + 134,400` bytes: 371 KiB at `w = 15,
//!   m = 8` (zlib's defaults), 260 KiB at 15/1, 245 KiB at 9/8, 134 KiB at
//!   9/1. zlib-rs's hash table is a fixed 128 KiB whatever `m`;
//! - inflate: 47,552 bytes whatever `w` (zlib-rs allocates a 32 KiB window).
//!
//! Both are allocated on the first compressed message in their direction,
//! and freed after each message when that direction has no context takeover.

use flate2::{Decompress, FlushDecompress, Status};
use zlib_rs::{Deflate, DeflateFlush};

use super::params::{DeflateDirection, MAX_MEM_LEVEL, MIN_MEM_LEVEL};

/// The end of a sync flush, removed by the sender and appended by the
/// receiver (RFC 7692 §7.2.1, §7.2.2).
pub(crate) const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Input bytes between full flushes when the window is limited to 8 bits.
const WINDOW_8_SEGMENT: usize = 256;

/// First capacity of an inflated message, in bytes.
const FIRST_OUTPUT_BLOCK: usize = 4096;

/// The window bits flate2 accepts (9–15) for a negotiated value (8–15).
fn zlib_window_bits(bits: u8) -> u8 {
    bits.clamp(9, 15)
}

/// Bytes of a zlib-rs deflate state, as measured (see the module docs;
/// `tests/alloc.rs` checks this against a counting allocator).
pub(crate) fn deflate_state_size(window_bits: u8, mem_level: u8) -> usize {
    (1 << (zlib_window_bits(window_bits) + 2)) + 7 * (1 << (mem_level + 6)) + 134_400
}

/// Bytes of a zlib-rs inflate state, as measured (see the module docs).
pub(crate) fn inflate_state_size(_window_bits: u8) -> usize {
    47_552
}

/// Why inflating failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// Not valid DEFLATE data (RFC 1951), or a back-reference beyond the window.
    Corrupt,
    /// The inflated message outgrew the limit; `size` is how far it got.
    TooBig { size: u64 },
}

/// The inbound half: inflates one message at a time, in bounded steps.
#[derive(Debug)]
pub(crate) struct Inflater {
    direction: DeflateDirection,
    /// Created on the first compressed message; `None` between messages when
    /// there is no context takeover.
    state: Option<Box<Decompress>>,
    /// The stream hit a block with BFINAL set (RFC 7692 §7.2.3.4): the rest
    /// of the message is ignored and the state starts afresh for the next.
    ended: bool,
}

impl Inflater {
    pub(crate) fn new(direction: DeflateDirection) -> Self {
        Self {
            direction,
            state: None,
            ended: false,
        }
    }

    /// Whether a zlib state is allocated.
    pub(crate) fn is_allocated(&self) -> bool {
        self.state.is_some()
    }

    pub(crate) fn memory(&self) -> usize {
        if self.is_allocated() {
            inflate_state_size(self.direction.max_window_bits)
        } else {
            0
        }
    }

    /// Inflates `input`, the next piece of a compressed message, appending to
    /// `out`, which holds the message inflated so far.
    ///
    /// `out` never grows beyond `limit + 1` bytes of capacity (it grows by
    /// doubling, capped there), so a bomb costs at most the limit: as soon as
    /// the output passes `limit`, this returns [`InflateError::TooBig`].
    pub(crate) fn inflate(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        if self.ended {
            return Ok(());
        }
        let bits = zlib_window_bits(self.direction.max_window_bits);
        let state = self
            .state
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, bits)));
        loop {
            if out.len() == out.capacity() {
                grow(out, limit);
            }
            let (in_before, out_before) = (state.total_in(), state.total_out());
            let status = state
                .decompress_vec(input, out, FlushDecompress::None)
                .map_err(|_| InflateError::Corrupt)?;
            let consumed = (state.total_in() - in_before) as usize;
            input = &input[consumed..];
            if out.len() > limit {
                return Err(InflateError::TooBig {
                    size: out.len() as u64,
                });
            }
            if status == Status::StreamEnd {
                self.ended = true;
                return Ok(());
            }
            let room_left = out.len() < out.capacity();
            let progressed = consumed > 0 || state.total_out() > out_before;
            // Done when the input is used up and zlib stopped for want of
            // input rather than of room; stuck (it wants more input) when a
            // call with room left made no progress.
            if room_left && (input.is_empty() || !progressed) {
                return Ok(());
            }
        }
    }

    /// Ends a message: inflates the trailer the sender removed (§7.2.2),
    /// then drops the state if the peer does not take its context over
    /// (§7.1.1), or if a BFINAL block ended the stream.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        let result = self.inflate(&TRAILER, out, limit);
        if self.direction.no_context_takeover || self.ended || result.is_err() {
            self.state = None;
            self.ended = false;
        }
        result
    }

    /// Forgets any message in progress (after a failure).
    pub(crate) fn reset(&mut self) {
        self.state = None;
        self.ended = false;
    }
}

/// Grows `out` for more inflated bytes: doubling, at least a block, but
/// never past `limit + 1` bytes, the first size that proves a bomb.
fn grow(out: &mut Vec<u8>, limit: usize) {
    let cap = out.capacity();
    let target = (cap * 2)
        .max(cap + FIRST_OUTPUT_BLOCK)
        .min(limit.saturating_add(1))
        .max(cap + 1);
    out.reserve_exact(target - out.len());
}

/// The outbound half: compresses one whole message at a time.
pub(crate) struct Deflater {
    direction: DeflateDirection,
    settings: DeflateSettings,
    /// Created on the first compressed message; `None` between messages when
    /// there is no context takeover.
    state: Option<Box<Deflate>>,
}

/// This end's own deflate settings, which the peer never sees: zlib's
/// compression level (0–9) and memory level (1–9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct DeflateSettings {
    pub(crate) level: u32,
    pub(crate) mem_level: u8,
}

impl DeflateSettings {
    pub(crate) fn new(level: u32, mem_level: u8) -> Self {
        Self {
            level: level.min(9),
            mem_level: mem_level.clamp(MIN_MEM_LEVEL, MAX_MEM_LEVEL),
        }
    }
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("direction", &self.direction)
            .field("settings", &self.settings)
            .field("allocated", &self.state.is_some())
            .finish()
    }
}

impl Deflater {
    pub(crate) fn new(direction: DeflateDirection, settings: DeflateSettings) -> Self {
        Self {
            direction,
            settings,
            state: None,
        }
    }

    pub(crate) fn direction(&self) -> DeflateDirection {
        self.direction
    }

    pub(crate) fn settings(&self) -> DeflateSettings {
        self.settings
    }

    pub(crate) fn memory(&self) -> usize {
        if self.state.is_some() {
            deflate_state_size(self.direction.max_window_bits, self.settings.mem_level)
        } else {
            0
        }
    }

    /// Compresses `payload` as one message, appending to `out` without the
    /// trailer (RFC 7692 §7.2.1). With context takeover the state stays for
    /// the next message, so everything compressed here must be sent.
    pub(crate) fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let bits = self.direction.max_window_bits;
        let settings = self.settings;
        let state = self
            .state
            .get_or_insert_with(|| Box::new(new_deflate(bits, settings)));
        compress_message(state, bits, payload, out);
        if self.direction.no_context_takeover {
            self.state = None;
        }
    }
}

/// A raw deflate state (no zlib header, RFC 7692 §7.2.1).
fn new_deflate(window_bits: u8, settings: DeflateSettings) -> Deflate {
    // In range: `DeflateSettings::new` clamps level and memory level, and
    // `zlib_window_bits` the window; zlib-rs panics outside level 0–9,
    // memory level 1–9 and raw window bits 9–15.
    Deflate::new_with_config(zlib_rs::DeflateConfig {
        level: settings.level as i32,
        window_bits: -i32::from(zlib_window_bits(window_bits)),
        mem_level: i32::from(settings.mem_level),
        ..zlib_rs::DeflateConfig::default()
    })
}

/// Compresses `payload` with a fresh state: what a message sent without
/// context takeover looks like, the same for every connection with these
/// parameters (used for compress-once fan-out).
pub(crate) fn compress_once(payload: &[u8], window_bits: u8, settings: DeflateSettings) -> Vec<u8> {
    let mut state = new_deflate(window_bits, settings);
    let mut out = Vec::new();
    compress_message(&mut state, window_bits, payload, &mut out);
    out
}

fn compress_message(state: &mut Deflate, window_bits: u8, payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    if window_bits <= 8 {
        // See the module docs: a full flush every 256 bytes keeps every
        // back-reference within 256 bytes.
        for segment in payload.chunks(WINDOW_8_SEGMENT) {
            run(state, segment, out, DeflateFlush::FullFlush);
        }
        if payload.is_empty() {
            run(state, &[], out, DeflateFlush::FullFlush);
        }
    } else {
        run(state, payload, out, DeflateFlush::SyncFlush);
    }
    // A sync or full flush ends with an empty stored block, whose last four
    // bytes are the trailer (RFC 7692 §7.2.1).
    debug_assert!(out[start..].ends_with(&TRAILER));
    out.truncate(out.len() - TRAILER.len());
}

fn run(state: &mut Deflate, mut input: &[u8], out: &mut Vec<u8>, flush: DeflateFlush) {
    loop {
        // zlib-rs writes into initialised bytes only (this crate has no
        // `unsafe`), so the room is zeroed first and cut back after.
        let written = out.len();
        let room = (input.len() / 2 + 64).max(1024);
        out.resize(written + room, 0);
        let (in_before, out_before) = (state.total_in(), state.total_out());
        state
            .compress(input, &mut out[written..], flush)
            .expect("deflate on a live raw stream with room to write cannot fail");
        let produced = (state.total_out() - out_before) as usize;
        out.truncate(written + produced);
        input = &input[(state.total_in() - in_before) as usize..];
        // zlib finished the flush if it left room in the output ("If deflate
        // returns with avail_out == 0, this function must be called again").
        if input.is_empty() && produced < room {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direction(bits: u8, no_context_takeover: bool) -> DeflateDirection {
        DeflateDirection {
            no_context_takeover,
            max_window_bits: bits,
        }
    }

    fn inflate_message(
        inflater: &mut Inflater,
        compressed: &[u8],
    ) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        inflater.inflate(compressed, &mut out, usize::MAX - 1)?;
        inflater.finish(&mut out, usize::MAX - 1)?;
        Ok(out)
    }

    #[test]
    fn compresses_hello_as_in_rfc_7692_section_7_2_3_1() {
        let mut deflater = Deflater::new(direction(15, true), DeflateSettings::new(6, 8));
        let mut out = Vec::new();
        deflater.compress(b"Hello", &mut out);
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    }

    #[test]
    fn context_takeover_shares_the_window_as_in_section_7_2_3_2() {
        let mut deflater = Deflater::new(direction(15, false), DeflateSettings::new(6, 8));
        let mut first = Vec::new();
        deflater.compress(b"Hello", &mut first);
        let mut second = Vec::new();
        deflater.compress(b"Hello", &mut second);
        assert_eq!(second, [0xf2, 0x00, 0x11, 0x00, 0x00]);
        let mut inflater = Inflater::new(direction(15, false));
        assert_eq!(inflate_message(&mut inflater, &first).unwrap(), b"Hello");
        assert_eq!(inflate_message(&mut inflater, &second).unwrap(), b"Hello");
    }

    #[test]
    fn an_empty_message_compresses_to_one_zero_byte_as_in_section_7_2_3_6() {
        let mut deflater = Deflater::new(direction(15, true), DeflateSettings::new(6, 8));
        let mut out = Vec::new();
        deflater.compress(b"", &mut out);
        assert_eq!(out, [0x00]);
        let mut inflater = Inflater::new(direction(15, true));
        assert_eq!(inflate_message(&mut inflater, &out).unwrap(), b"");
    }

    #[test]
    fn no_context_takeover_frees_both_states_after_each_message() {
        let mut deflater = Deflater::new(direction(15, true), DeflateSettings::new(1, 8));
        let mut out = Vec::new();
        deflater.compress(&[b'a'; 2000], &mut out);
        assert_eq!(deflater.memory(), 0);
        let mut inflater = Inflater::new(direction(15, true));
        assert_eq!(inflate_message(&mut inflater, &out).unwrap(), [b'a'; 2000]);
        assert!(!inflater.is_allocated());

        let mut deflater = Deflater::new(direction(15, false), DeflateSettings::new(1, 8));
        deflater.compress(&[b'a'; 2000], &mut Vec::new());
        assert_eq!(deflater.memory(), 380_160);
    }

    /// Longest back-reference distance in a raw DEFLATE stream, decoded by
    /// a minimal RFC 1951 reader written for this test only (no output is
    /// produced; only the distances are tracked).
    fn max_distance(data: &[u8]) -> usize {
        struct Bits<'a> {
            data: &'a [u8],
            pos: usize,
        }
        impl Bits<'_> {
            fn bit(&mut self) -> usize {
                let b = (self.data[self.pos / 8] >> (self.pos % 8)) & 1;
                self.pos += 1;
                b as usize
            }
            fn bits(&mut self, n: usize) -> usize {
                (0..n).map(|i| self.bit() << i).sum()
            }
            fn done(&self) -> bool {
                self.pos / 8 >= self.data.len()
            }
        }
        /// Canonical Huffman decode table: (code length, code) → symbol.
        fn decode(bits: &mut Bits<'_>, lengths: &[u8]) -> usize {
            let (mut code, mut first, mut index) = (0usize, 0usize, 0usize);
            for len in 1..=15u8 {
                code |= bits.bit();
                let count = lengths.iter().filter(|&&l| l == len).count();
                if code < first + count {
                    let symbols: Vec<usize> =
                        (0..lengths.len()).filter(|&s| lengths[s] == len).collect();
                    return symbols[code - first];
                }
                index += count;
                first += count;
                first <<= 1;
                code <<= 1;
            }
            let _ = index;
            panic!("bad code");
        }
        const LEN_BASE: [usize; 29] = [
            3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99,
            115, 131, 163, 195, 227, 258,
        ];
        const LEN_EXTRA: [usize; 29] = [
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
        ];
        const DIST_BASE: [usize; 30] = [
            1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025,
            1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
        ];
        const DIST_EXTRA: [usize; 30] = [
            0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12,
            12, 13, 13,
        ];
        let mut bits = Bits { data, pos: 0 };
        let mut max = 0;
        while !bits.done() {
            let _final = bits.bit();
            match bits.bits(2) {
                0 => {
                    bits.pos = bits.pos.div_ceil(8) * 8;
                    let len = bits.bits(16);
                    bits.bits(16);
                    bits.pos += len * 8;
                }
                kind @ (1 | 2) => {
                    let (lit, dist) = if kind == 1 {
                        let mut lit = vec![8u8; 144];
                        lit.extend([9; 112]);
                        lit.extend([7; 24]);
                        lit.extend([8; 8]);
                        (lit, vec![5u8; 30])
                    } else {
                        let hlit = bits.bits(5) + 257;
                        let hdist = bits.bits(5) + 1;
                        let hclen = bits.bits(4) + 4;
                        const ORDER: [usize; 19] = [
                            16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
                        ];
                        let mut cl = [0u8; 19];
                        for &i in &ORDER[..hclen] {
                            cl[i] = bits.bits(3) as u8;
                        }
                        let mut lengths = Vec::new();
                        while lengths.len() < hlit + hdist {
                            match decode(&mut bits, &cl) {
                                s @ 0..=15 => lengths.push(s as u8),
                                16 => {
                                    let prev = *lengths.last().unwrap();
                                    let n = 3 + bits.bits(2);
                                    lengths.extend(std::iter::repeat_n(prev, n));
                                }
                                17 => {
                                    let n = 3 + bits.bits(3);
                                    lengths.extend(std::iter::repeat_n(0, n));
                                }
                                _ => {
                                    let n = 11 + bits.bits(7);
                                    lengths.extend(std::iter::repeat_n(0, n));
                                }
                            }
                        }
                        let dist = lengths.split_off(hlit);
                        (lengths, dist)
                    };
                    loop {
                        let sym = decode(&mut bits, &lit);
                        if sym < 256 {
                            continue;
                        }
                        if sym == 256 {
                            break;
                        }
                        let i = sym - 257;
                        bits.bits(LEN_EXTRA[i]);
                        let _ = LEN_BASE[i];
                        let d = decode(&mut bits, &dist);
                        let distance = DIST_BASE[d] + bits.bits(DIST_EXTRA[d]);
                        max = max.max(distance);
                    }
                }
                _ => panic!("reserved block type"),
            }
        }
        max
    }

    #[test]
    fn the_test_reader_sees_long_distances_with_a_15_bit_window() {
        let text: Vec<u8> = (0..4000u32)
            .flat_map(|i| format!("{{\"seq\":{},\"v\":\"x{}\"}}", i % 97, i % 13).into_bytes())
            .collect();
        let mut out = compress_once(&text, 15, DeflateSettings::new(6, 8));
        out.extend_from_slice(&TRAILER);
        assert!(max_distance(&out) > 256);
    }

    #[test]
    fn an_8_bit_window_never_reaches_back_more_than_256_bytes() {
        let text: Vec<u8> = (0..4000u32)
            .flat_map(|i| format!("{{\"seq\":{},\"v\":\"x{}\"}}", i % 97, i % 13).into_bytes())
            .collect();
        for level in [1, 6, 9] {
            let mut deflater = Deflater::new(direction(8, false), DeflateSettings::new(level, 8));
            for _ in 0..3 {
                let mut out = Vec::new();
                deflater.compress(&text, &mut out);
                assert!(out.len() < text.len() / 2, "still compresses");
                out.extend_from_slice(&TRAILER);
                assert!(max_distance(&out) <= 256, "level {level}");
            }
        }
    }
}
