//! The opening handshake (RFC 6455 §4): an HTTP/1.1 Upgrade request answered
//! by `101 Switching Protocols`.
//!
//! Both sides read an HTTP head with [`HeadReader`], which finds the end of
//! the head in O(n) however the bytes are split and bounds its size.

mod accept_key;
mod client;
mod error;
mod extensions;
mod head;
mod origin;
mod server;

pub use accept_key::accept_key;
pub use client::{generate_key, validate_response, Accepted, ClientRequest, Response};
pub use error::{DeflateResponseError, HandshakeError};
pub use extensions::{parse_extensions, Extension};
pub use head::{HeadReader, DEFAULT_MAX_HEAD_LEN, MAX_HEADERS};
pub use origin::{OriginPatternError, OriginPolicy, OriginRefused};
pub use server::{
    accept_headers, accept_response, http_response, validate_request, Request, UpgradeRequest,
};

/// Whether a comma-separated header value contains `token`, compared
/// case-insensitively (RFC 7230 §7, as used for `Connection` and `Upgrade`).
pub(crate) fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Rejects header names and values that could split the head: CR, LF or NUL
/// in a value, or a name that is not an HTTP token.
pub(crate) fn check_header(name: &str, value: &str) -> Result<(), HandshakeError> {
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let value_ok = !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
    if name_ok && value_ok {
        Ok(())
    } else {
        Err(HandshakeError::InvalidHeader {
            name: name.to_owned(),
        })
    }
}

/// A header list with case-insensitive lookup.
pub(crate) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every value of a header that may repeat, comma lists split and trimmed.
pub(crate) fn header_list<'a>(
    headers: &'a [(String, String)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_case_insensitively_in_lists() {
        assert!(has_token("keep-alive, Upgrade", "upgrade"));
        assert!(has_token("WebSocket", "websocket"));
        assert!(!has_token("upgrades", "upgrade"));
    }

    #[test]
    fn header_values_with_cr_lf_or_nul_are_rejected() {
        assert!(check_header("X-Ok", "fine value").is_ok());
        for bad in ["a\rb", "a\nb", "a\0b"] {
            assert!(check_header("X-Bad", bad).is_err());
        }
        assert!(check_header("Bad Name", "v").is_err());
        assert!(check_header("", "v").is_err());
    }
}
