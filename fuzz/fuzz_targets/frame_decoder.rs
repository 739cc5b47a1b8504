//! The streaming frame `Decoder` on arbitrary bytes, in either role, with
//! or without permessage-deflate, cut into arbitrary pieces: never panics,
//! and decodes the same items however the stream is cut.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wshub_fuzz::drive_decoder(data));
