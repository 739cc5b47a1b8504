//! [`HeadReader`]: an HTTP/1.1 head read from bytes in any split, bounded in
//! bytes and header count.

use super::HandshakeError;

/// Default bound on an HTTP head, in bytes: 16 KiB.
pub const DEFAULT_MAX_HEAD_LEN: usize = 16 * 1024;

/// Most header lines a head may have.
pub const MAX_HEADERS: usize = 64;

/// Collects an HTTP head (request or response) from bytes split anyhow.
///
/// Each byte is looked at once when searching for the blank line that ends
/// the head, so reading a head one byte at a time stays O(n).
#[derive(Debug, Clone)]
pub struct HeadReader {
    buf: Vec<u8>,
    scanned: usize,
    head_len: Option<usize>,
    max_len: usize,
}

impl Default for HeadReader {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_HEAD_LEN)
    }
}

impl HeadReader {
    /// A reader that refuses heads over `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            scanned: 0,
            head_len: None,
            max_len,
        }
    }

    /// Appends `data`; returns `Ok(true)` once the head is complete. Bytes after
    /// the head (frames the peer sent early) are kept in [`HeadReader::remainder`].
    ///
    /// # Errors
    /// [`HandshakeError::HeadTooLarge`] when `max_len` bytes arrived without
    /// the end of the head.
    pub fn push(&mut self, data: &[u8]) -> Result<bool, HandshakeError> {
        if self.head_len.is_some() {
            self.buf.extend_from_slice(data);
            return Ok(true);
        }
        self.buf.extend_from_slice(data);
        // Resume three bytes back so a "\r\n\r\n" cut anywhere is found.
        let from = self.scanned.saturating_sub(3);
        if let Some(pos) = self.buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let len = from + pos + 4;
            if len > self.max_len {
                return Err(HandshakeError::HeadTooLarge {
                    limit: self.max_len,
                });
            }
            self.head_len = Some(len);
            return Ok(true);
        }
        self.scanned = self.buf.len();
        if self.buf.len() > self.max_len {
            return Err(HandshakeError::HeadTooLarge {
                limit: self.max_len,
            });
        }
        Ok(false)
    }

    /// The complete head, blank line included; `None` until it is complete.
    pub fn head(&self) -> Option<&[u8]> {
        self.head_len.map(|n| &self.buf[..n])
    }

    /// Bytes received after the head.
    pub fn remainder(&self) -> &[u8] {
        match self.head_len {
            Some(n) => &self.buf[n..],
            None => &[],
        }
    }

    /// Bytes held so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no byte has arrived.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Maps httparse's outcome on a complete head to ours.
pub(crate) fn parsed(outcome: httparse::Result<usize>) -> Result<(), HandshakeError> {
    match outcome {
        Ok(httparse::Status::Complete(_)) => Ok(()),
        Err(httparse::Error::TooManyHeaders) => {
            Err(HandshakeError::TooManyHeaders { limit: MAX_HEADERS })
        }
        // A complete head never parses as partial; treat it as malformed.
        Ok(httparse::Status::Partial) | Err(_) => Err(HandshakeError::MalformedHttp),
    }
}

/// Header names and values, owned; values that are not UTF-8 are kept lossily.
pub(crate) fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

    #[test]
    fn finds_the_end_of_the_head_one_byte_at_a_time() {
        let mut r = HeadReader::default();
        for (i, b) in HEAD.iter().enumerate() {
            let done = r.push(&[*b]).unwrap();
            assert_eq!(done, i == HEAD.len() - 1);
        }
        assert_eq!(r.head(), Some(HEAD));
        assert_eq!(r.remainder(), b"");
    }

    /// Each push scans only what it added and the three bytes before it
    /// (a "\r\n\r\n" cut across pushes), so a head sent a byte at a time
    /// is scanned in linear time, not once per byte.
    #[test]
    fn each_push_resumes_the_scan_where_the_last_one_stopped() {
        let mut r = HeadReader::new(16 * 1024);
        let padding = vec![b'a'; 15 * 1024];
        for (i, b) in padding.iter().enumerate() {
            assert!(!r.push(&[*b]).unwrap());
            assert_eq!(r.scanned, i + 1, "the next scan starts at byte {i}");
        }
        assert!(r.push(b"\r\n\r").is_ok_and(|done| !done));
        assert!(r.push(b"\n").unwrap());
    }

    #[test]
    fn keeps_bytes_after_the_head() {
        let mut r = HeadReader::default();
        let mut data = HEAD.to_vec();
        data.extend_from_slice(&[0x81, 0x00]);
        assert!(r.push(&data).unwrap());
        assert_eq!(r.remainder(), [0x81, 0x00]);
    }

    #[test]
    fn refuses_a_head_over_the_limit() {
        let mut r = HeadReader::new(32);
        assert!(!r.push(&[b'a'; 32]).unwrap());
        assert_eq!(
            r.push(b"b"),
            Err(HandshakeError::HeadTooLarge { limit: 32 })
        );
        let mut r = HeadReader::new(10);
        assert_eq!(
            r.push(HEAD),
            Err(HandshakeError::HeadTooLarge { limit: 10 })
        );
    }
}
