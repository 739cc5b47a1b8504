//! `Sec-WebSocket-Accept` from `Sec-WebSocket-Key` (RFC 6455 §1.3, §4.2.2):
//! base64 of the SHA-1 of the key and the protocol's GUID.

use base64::{engine::general_purpose::STANDARD, Engine};
use sha1::{Digest, Sha1};

/// The GUID appended to the key before hashing (RFC 6455 §1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`: the base64 of
/// the SHA-1 of the key followed by the GUID (RFC 6455 §1.3, §4.2.2).
pub fn accept_key(sec_websocket_key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(sec_websocket_key);
    sha.update(GUID);
    STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_the_accept_key_of_rfc_6455_section_1_3() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
