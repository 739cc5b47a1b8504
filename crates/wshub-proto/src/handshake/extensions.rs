//! `Sec-WebSocket-Extensions` values parsed into extensions and their
//! parameters (RFC 6455 §9.1).

use super::HandshakeError;

/// One entry of a `Sec-WebSocket-Extensions` header: a name and its
/// parameters, in order (RFC 6455 §9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// Parameters in header order: `name` or `name=value` (a quoted-string
    /// value is unquoted).
    pub params: Vec<(String, Option<String>)>,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn token(&mut self) -> Result<String, HandshakeError> {
        let start = self.i;
        while self.i < self.s.len() && is_tchar(self.s[self.i]) {
            self.i += 1;
        }
        if start == self.i {
            return Err(HandshakeError::InvalidExtensions);
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn quoted(&mut self) -> Result<String, HandshakeError> {
        self.i += 1; // opening quote
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => {
                    return String::from_utf8(out).map_err(|_| HandshakeError::InvalidExtensions)
                }
                b'\\' => {
                    let escaped = self.peek().ok_or(HandshakeError::InvalidExtensions)?;
                    self.i += 1;
                    out.push(escaped);
                }
                _ => out.push(b),
            }
        }
        Err(HandshakeError::InvalidExtensions)
    }
}

/// Parses `Sec-WebSocket-Extensions` values into extensions, in one linear
/// pass (RFC 6455 §9.1):
///
/// ```text
/// extension-list  = 1#extension
/// extension       = extension-token *( ";" extension-param )
/// extension-param = token [ "=" (token | quoted-string) ]
/// ```
///
/// Empty list elements (`a, , b`) are skipped, as RFC 7230 §7 allows.
///
/// # Errors
/// [`HandshakeError::InvalidExtensions`] when a value breaks the grammar.
pub fn parse_extensions<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Extension>, HandshakeError> {
    let mut out = Vec::new();
    for value in values {
        let mut c = Cursor {
            s: value.as_bytes(),
            i: 0,
        };
        loop {
            c.skip_ws();
            match c.peek() {
                None => break,
                Some(b',') => {
                    c.i += 1;
                    continue;
                }
                Some(_) => {}
            }
            let name = c.token()?;
            let mut params = Vec::new();
            loop {
                c.skip_ws();
                match c.peek() {
                    None | Some(b',') => break,
                    Some(b';') => {
                        c.i += 1;
                        c.skip_ws();
                        let key = c.token()?;
                        c.skip_ws();
                        let value = if c.peek() == Some(b'=') {
                            c.i += 1;
                            c.skip_ws();
                            Some(if c.peek() == Some(b'"') {
                                c.quoted()?
                            } else {
                                c.token()?
                            })
                        } else {
                            None
                        };
                        params.push((key, value));
                    }
                    Some(_) => return Err(HandshakeError::InvalidExtensions),
                }
            }
            out.push(Extension { name, params });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(name: &str, params: &[(&str, Option<&str>)]) -> Extension {
        Extension {
            name: name.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect(),
        }
    }

    #[test]
    fn parses_offers_with_parameters_and_quoted_values() {
        let parsed = parse_extensions([
            "permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\", x-foo",
            "bar;a=1 ;b",
        ])
        .unwrap();
        assert_eq!(
            parsed,
            [
                ext(
                    "permessage-deflate",
                    &[
                        ("client_max_window_bits", None),
                        ("server_max_window_bits", Some("10"))
                    ]
                ),
                ext("x-foo", &[]),
                ext("bar", &[("a", Some("1")), ("b", None)]),
            ]
        );
    }

    #[test]
    fn skips_empty_list_elements() {
        assert_eq!(parse_extensions([" , a ,, "]).unwrap(), [ext("a", &[])]);
    }

    #[test]
    fn rejects_what_breaks_the_grammar() {
        for bad in ["a;", "a;=1", "a b", "a;b=\"unterminated", ";a", "a;b=", "é"] {
            assert_eq!(
                parse_extensions([bad]),
                Err(HandshakeError::InvalidExtensions),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn stays_linear_on_a_long_header() {
        let long = "a;b=c, ".repeat(10_000);
        assert_eq!(parse_extensions([long.as_str()]).unwrap().len(), 10_000);
    }
}
