//! A tiny synchronous RESP2 client: enough to set up and check a test's
//! Redis, not a driver for code under test.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One RESP2 reply, as `redis-server` sends it to a client that never sent
/// `HELLO 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`, `+PONG`: a simple string, without its `+` and line break.
    Simple(String),
    /// `-ERR unknown command`: the error line, without its `-` and line break.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3 foo`, or `None` for the null bulk string `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*2 …`, or `None` for the null array `*-1`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// Parses the reply at the start of `buf`.
    ///
    /// Returns `Ok(Some((reply, used)))` with the number of bytes the reply
    /// took, or `Ok(None)` if `buf` holds only the first part of a reply
    /// (read more and call again with the longer buffer; nothing is kept
    /// between calls).
    ///
    /// # Errors
    /// [`ParseError`] if `buf` does not start with a well-formed RESP2 reply.
    pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ParseError> {
        parse_at(buf, 0)
    }

    /// The text of a simple string, or of a bulk string that is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Reply::Simple(text) => Some(text),
            Reply::Bulk(Some(bytes)) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    /// The value of an integer reply.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Reply::Integer(value) => Some(*value),
            _ => None,
        }
    }

    /// The elements of a non-null array.
    pub fn as_array(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(Some(items)) => Some(items),
            _ => None,
        }
    }
}

/// Ways bytes can fail to be a RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The byte where a reply starts is none of `+ - : $ *`.
    UnknownType {
        /// The byte found.
        byte: u8,
        /// Its offset in the buffer.
        offset: usize,
    },
    /// The line after `:`, `$` or `*` at `offset` is not a decimal integer.
    InvalidNumber {
        /// Offset of the line in the buffer.
        offset: usize,
    },
    /// A bulk string or array length below -1.
    InvalidLength {
        /// The length announced.
        len: i64,
    },
    /// A bulk string's bytes are not followed by `\r\n`.
    MissingCrlf {
        /// Offset where the `\r\n` should be.
        offset: usize,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnknownType { byte, offset } => {
                write!(f, "unknown reply type byte {byte:#04x} at offset {offset}")
            }
            ParseError::InvalidNumber { offset } => {
                write!(f, "invalid integer in the line at offset {offset}")
            }
            ParseError::InvalidLength { len } => write!(f, "invalid length {len}"),
            ParseError::MissingCrlf { offset } => {
                write!(f, "bulk string not followed by CRLF at offset {offset}")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// The line that starts at `start`, without its `\r\n`, and the offset after
/// it; `None` while the `\r\n` has not arrived.
fn line(buf: &[u8], start: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(start..)?;
    let end = rest.windows(2).position(|pair| pair == b"\r\n")?;
    Some((&rest[..end], start + end + 2))
}

fn number(text: &[u8], offset: usize) -> Result<i64, ParseError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(ParseError::InvalidNumber { offset })
}

/// A length of `$` or `*`: `None` for -1 (null).
fn length(text: &[u8], offset: usize) -> Result<Option<usize>, ParseError> {
    match number(text, offset)? {
        -1 => Ok(None),
        len => usize::try_from(len)
            .map(Some)
            .map_err(|_| ParseError::InvalidLength { len }),
    }
}

fn parse_at(buf: &[u8], start: usize) -> Result<Option<(Reply, usize)>, ParseError> {
    let Some(&kind) = buf.get(start) else {
        return Ok(None);
    };
    if !b"+-:$*".contains(&kind) {
        return Err(ParseError::UnknownType {
            byte: kind,
            offset: start,
        });
    }
    let Some((text, next)) = line(buf, start + 1) else {
        return Ok(None);
    };
    let lossy = |text: &[u8]| String::from_utf8_lossy(text).into_owned();
    let reply = match kind {
        b'+' => (Reply::Simple(lossy(text)), next),
        b'-' => (Reply::Error(lossy(text)), next),
        b':' => (Reply::Integer(number(text, start + 1)?), next),
        b'$' => match length(text, start + 1)? {
            None => (Reply::Bulk(None), next),
            Some(len) => {
                let end = next.checked_add(len).ok_or(ParseError::InvalidLength {
                    len: i64::try_from(len).unwrap_or(i64::MAX),
                })?;
                let Some(crlf) = buf.get(end..end.saturating_add(2)) else {
                    return Ok(None);
                };
                if crlf != b"\r\n" {
                    return Err(ParseError::MissingCrlf { offset: end });
                }
                (Reply::Bulk(Some(buf[next..end].to_vec())), end + 2)
            }
        },
        _ => match length(text, start + 1)? {
            None => (Reply::Array(None), next),
            Some(count) => {
                // Not `with_capacity(count)`: the count comes from the wire.
                let mut items = Vec::new();
                let mut at = next;
                for _ in 0..count {
                    let Some((item, after)) = parse_at(buf, at)? else {
                        return Ok(None);
                    };
                    items.push(item);
                    at = after;
                }
                (Reply::Array(Some(items)), at)
            }
        },
    };
    Ok(Some(reply))
}

/// The command `args` as a RESP2 array of bulk strings, so arguments may hold
/// spaces, line breaks or nothing at all.
pub(crate) fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one whole reply from `stream`, however the bytes are split.
pub(crate) fn read_reply(stream: &mut impl Read) -> io::Result<Reply> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((reply, _)) = Reply::parse(&buf).map_err(io::Error::other)? {
            return Ok(reply);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a whole reply",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Opens a connection to `addr`, sends one command and reads its reply; each
/// of connect, write and read may take up to `timeout`.
pub(crate) fn request(addr: SocketAddr, args: &[&str], timeout: Duration) -> io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(&encode(args))?;
    read_reply(&mut stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reply type, nested, with a bulk string holding `\r\n`.
    const WIRE: &[u8] =
        b"*6\r\n+OK\r\n-ERR no\r\n:-42\r\n$4\r\na\r\nb\r\n$-1\r\n*2\r\n*-1\r\n$0\r\n\r\n";

    fn expected() -> Reply {
        Reply::Array(Some(vec![
            Reply::Simple("OK".into()),
            Reply::Error("ERR no".into()),
            Reply::Integer(-42),
            Reply::Bulk(Some(b"a\r\nb".to_vec())),
            Reply::Bulk(None),
            Reply::Array(Some(vec![
                Reply::Array(None),
                Reply::Bulk(Some(Vec::new())),
            ])),
        ]))
    }

    #[test]
    fn parses_every_reply_type_and_reports_the_bytes_used() {
        let mut wire = WIRE.to_vec();
        wire.extend_from_slice(b"+NEXT\r\n");
        assert_eq!(Reply::parse(&wire), Ok(Some((expected(), WIRE.len()))));
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete_not_an_error() {
        for end in 0..WIRE.len() {
            assert_eq!(
                Reply::parse(&WIRE[..end]),
                Ok(None),
                "prefix of {end} bytes"
            );
        }
    }

    #[test]
    fn read_reply_assembles_a_reply_read_one_byte_at_a_time() {
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((&first, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = first;
                self.0 = rest;
                Ok(1)
            }
        }
        assert_eq!(read_reply(&mut OneByte(WIRE)).unwrap(), expected());
        let eof = read_reply(&mut OneByte(&WIRE[..10])).unwrap_err();
        assert_eq!(eof.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn rejects_what_is_not_resp2() {
        assert_eq!(
            Reply::parse(b"hello\r\n"),
            Err(ParseError::UnknownType {
                byte: b'h',
                offset: 0
            })
        );
        assert_eq!(
            Reply::parse(b":12x\r\n"),
            Err(ParseError::InvalidNumber { offset: 1 })
        );
        assert_eq!(
            Reply::parse(b"$-2\r\n"),
            Err(ParseError::InvalidLength { len: -2 })
        );
        assert_eq!(
            Reply::parse(b"$1\r\nab\r\n"),
            Err(ParseError::MissingCrlf { offset: 5 })
        );
    }

    #[test]
    fn encodes_commands_as_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&["SET", "k", "", "a b"]),
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$3\r\na b\r\n"
        );
    }
}
