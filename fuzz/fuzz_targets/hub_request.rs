//! The hub's JSON request decoder (`wshub_hub::protocol::decode_request`) on
//! arbitrary bytes (a text message's payload): never panics; what it accepts has a valid room (and name, and `since` epoch) or token,
//! and what it rejects carries one of the documented error codes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wshub_hub::protocol::{
    decode_request, ErrorCode, Op, MAX_EPOCH_LEN, MAX_NAME_LEN, MAX_ROOM_LEN, MAX_TOKEN_LEN,
};

fuzz_target!(|data: &[u8]| {
    match decode_request(data) {
        Ok(request) => {
            match &request.op {
                Op::Join { room, .. } | Op::Leave { room } | Op::Publish { room, .. } => {
                    assert!(!room.is_empty() && room.len() <= MAX_ROOM_LEN);
                }
                Op::Auth { token } => {
                    assert!(!token.is_empty() && token.len() <= MAX_TOKEN_LEN);
                }
            }
            if let Op::Join {
                name: Some(name), ..
            } = &request.op
            {
                assert!(!name.is_empty() && name.len() <= MAX_NAME_LEN);
            }
            if let Op::Join {
                since: Some(since), ..
            } = &request.op
            {
                assert!(!since.epoch.is_empty() && since.epoch.len() <= MAX_EPOCH_LEN);
            }
        }
        Err(e) => assert!(matches!(
            e.code,
            ErrorCode::BadJson | ErrorCode::UnknownOp | ErrorCode::BadRequest
        )),
    }
});
