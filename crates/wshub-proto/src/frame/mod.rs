//! Frames as they appear on the wire (RFC 6455 §5).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! | Masking-key (continued)       |          Payload Data         |
//! +-------------------------------- - - - - - - - - - - - - - - - +
//! ```

mod decoder;
mod encoder;
mod header;
mod mask;
mod opcode;

pub use decoder::{DataChunk, Decoded, Decoder, Limits};
pub use encoder::encoded_len;
pub(crate) use encoder::{encode_frame, encode_header, encode_unmasked_frame};
pub use header::{FrameHeader, MAX_CONTROL_PAYLOAD_LEN, MAX_HEADER_LEN};
pub use mask::apply_mask;
pub(crate) use mask::apply_mask_offset;
pub use opcode::Opcode;
