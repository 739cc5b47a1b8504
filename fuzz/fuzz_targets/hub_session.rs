//! Up to four `/ws` member sessions of one hub over in-memory transports,
//! driven by operations decoded from the input (client frames, short reads
//! and writes, stalled readers, time, cancellation, shutdown): every frame
//! the hub writes is valid, its Close codes are documented ones, sessions
//! end after the shutdown, and the rooms are empty once they have. See
//! `src/hub.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wshub_fuzz::hub::drive_hub_session(data));
