//! Complete data messages (RFC 6455 §5.6): fragments reassembled, text validated.

use std::fmt;

use bytes::Bytes;

/// UTF-8 text held in shared, cheaply clonable bytes.
///
/// Constructed only from bytes that passed UTF-8 validation.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps bytes already known to be UTF-8; `None` if they are not.
    pub fn from_bytes(bytes: Bytes) -> Option<Self> {
        simdutf8::basic::from_utf8(&bytes).ok()?;
        Some(Self(bytes))
    }

    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Self(bytes)
    }

    /// The text. Cheap: the bytes were validated when the message was built.
    pub fn as_str(&self) -> &str {
        // Validated at construction; simdutf8 re-checks at tens of GB/s, which
        // keeps this crate free of `unsafe` until a benchmark says otherwise.
        simdutf8::basic::from_utf8(&self.0).expect("Utf8Bytes holds validated UTF-8")
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Unwraps into the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes (not chars).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&'static str> for Message {
    fn from(s: &'static str) -> Self {
        Message::Text(Utf8Bytes(Bytes::from_static(s.as_bytes())))
    }
}

/// A text message holding `s` (no copy).
impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::Text(Utf8Bytes::from(s))
    }
}

/// A text message.
impl From<Utf8Bytes> for Message {
    fn from(text: Utf8Bytes) -> Self {
        Message::Text(text)
    }
}

/// A binary message holding `data` (no copy).
impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Message::Binary(Bytes::from(data))
    }
}

/// A binary message.
impl From<Bytes> for Message {
    fn from(data: Bytes) -> Self {
        Message::Binary(data)
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::ops::Deref for Utf8Bytes {
    type Target = str;

    /// As [`Utf8Bytes::as_str`].
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A complete data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message: UTF-8 (opcode 0x1).
    Text(Utf8Bytes),
    /// A binary message: arbitrary bytes (opcode 0x2).
    Binary(Bytes),
}

impl Message {
    /// A text message holding a copy of `text`.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(Utf8Bytes::from(text.into()))
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::Binary(data.into())
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Binary(b) => b,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_text_becomes_text_and_owned_bytes_binary_without_a_copy() {
        let text = String::from("héllo");
        let at = text.as_ptr();
        let Message::Text(t) = Message::from(text) else {
            panic!("a String is text");
        };
        assert_eq!((&*t, t.as_ptr()), ("héllo", at), "same buffer");
        assert_eq!(t.len(), 6, "bytes, not chars");
        let s: &str = t.as_ref();
        assert!(s.starts_with('h'));

        let data = vec![0u8, 159, 146, 150];
        let at = data.as_ptr();
        let Message::Binary(b) = Message::from(data) else {
            panic!("a Vec<u8> is binary, even if it were UTF-8");
        };
        assert_eq!(b.as_ptr(), at);
        let shared = Bytes::from_static(b"abc");
        assert_eq!(Message::from(shared.clone()), Message::Binary(shared));
        let text = Utf8Bytes::from("x");
        assert_eq!(Message::from(text.clone()), Message::Text(text));
    }
}
