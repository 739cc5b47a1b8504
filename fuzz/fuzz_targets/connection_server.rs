//! A server-side `Connection` fed arbitrary client bytes in arbitrary pieces:
//! never panics, and every failure ends the output with a Close frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wshub_proto::Role;

fuzz_target!(|data: &[u8]| wshub_fuzz::drive_connection(Role::Server, data));
