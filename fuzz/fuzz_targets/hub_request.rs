//! The hub's JSON request decoder (`wshub_hub::protocol::decode_request`) on
//! arbitrary text: never panics; what it accepts has a valid room (and name),
//! and what it rejects carries one of the documented error codes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wshub_hub::protocol::{decode_request, ErrorCode, Op, MAX_NAME_LEN, MAX_ROOM_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The hub hands the decoder a text message's bytes, already UTF-8.
    match decode_request(text.as_bytes()) {
        Ok(request) => {
            let (Op::Join { room, .. } | Op::Leave { room } | Op::Publish { room, .. }) = &request.op;
            assert!(!room.is_empty() && room.len() <= MAX_ROOM_LEN);
            if let Op::Join { name: Some(name), .. } = &request.op {
                assert!(!name.is_empty() && name.len() <= MAX_NAME_LEN);
            }
        }
        Err(e) => assert!(matches!(
            e.code,
            ErrorCode::BadJson | ErrorCode::UnknownOp | ErrorCode::BadRequest
        )),
    }
});
