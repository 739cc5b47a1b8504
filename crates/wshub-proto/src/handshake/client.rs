//! The client side of the opening handshake (RFC 6455 §4.1): the request
//! with a fresh `Sec-WebSocket-Key`, and the checks of the server's response.

use base64::{engine::general_purpose::STANDARD, Engine};
use rand::RngCore;

use super::{
    accept_key, check_header, find_header, has_token, parse_extensions, Extension, HandshakeError,
    MAX_HEADERS,
};

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64 (§4.1), from the
/// operating system's CSPRNG via `rand`.
pub fn generate_key() -> String {
    let mut nonce = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce);
    STANDARD.encode(nonce)
}

/// The client's opening handshake request (RFC 6455 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    /// `Host` header value: host, and `:port` when not the scheme's default.
    pub host: String,
    /// Request target: path and query, starting with `/`.
    pub target: String,
    /// `Sec-WebSocket-Key`.
    pub key: String,
    /// Subprotocols to offer, in preference order.
    pub protocols: Vec<String>,
    /// `Sec-WebSocket-Extensions` value to offer, if any.
    pub extensions: Option<String>,
    /// Extra headers, e.g. `Authorization` or `Origin`.
    pub headers: Vec<(String, String)>,
}

impl ClientRequest {
    /// A request for `target` on `host` with a fresh key.
    pub fn new(host: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            target: target.into(),
            key: generate_key(),
            protocols: Vec::new(),
            extensions: None,
            headers: Vec::new(),
        }
    }

    /// The request head, ready to write.
    ///
    /// # Errors
    /// [`HandshakeError::InvalidHeader`] if any header name is not an HTTP token,
    /// or any value (host, target, subprotocol, extra header) holds CR, LF or NUL.
    pub fn encode(&self) -> Result<Vec<u8>, HandshakeError> {
        let mut out = Vec::with_capacity(256);
        let target_ok = self.target.starts_with('/')
            && !self
                .target
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b == 0);
        if !target_ok {
            return Err(HandshakeError::InvalidHeader {
                name: "request target".into(),
            });
        }
        out.extend_from_slice(format!("GET {} HTTP/1.1\r\n", self.target).as_bytes());
        let mut push = |name: &str, value: &str| -> Result<(), HandshakeError> {
            check_header(name, value)?;
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            Ok(())
        };
        push("Host", &self.host)?;
        push("Upgrade", "websocket")?;
        push("Connection", "Upgrade")?;
        push("Sec-WebSocket-Key", &self.key)?;
        push("Sec-WebSocket-Version", "13")?;
        if !self.protocols.is_empty() {
            for p in &self.protocols {
                if p.is_empty() || p.contains(',') {
                    return Err(HandshakeError::InvalidHeader {
                        name: "Sec-WebSocket-Protocol".into(),
                    });
                }
            }
            push("Sec-WebSocket-Protocol", &self.protocols.join(", "))?;
        }
        if let Some(ext) = &self.extensions {
            push("Sec-WebSocket-Extensions", ext)?;
        }
        for (name, value) in &self.headers {
            push(name, value)?;
        }
        out.extend_from_slice(b"\r\n");
        Ok(out)
    }
}

/// A parsed HTTP response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names and values in order.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// Parses a complete head, as returned by [`HeadReader::head`](super::HeadReader::head).
    ///
    /// # Errors
    /// [`HandshakeError::TooManyHeaders`] past [`MAX_HEADERS`] lines,
    /// [`HandshakeError::MalformedHttp`] for anything httparse rejects.
    pub fn parse(head: &[u8]) -> Result<Self, HandshakeError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        super::head::parsed(resp.parse(head))?;
        Ok(Self {
            status: resp.code.unwrap_or(0),
            headers: super::head::owned_headers(resp.headers),
        })
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// What the server agreed to in its 101 response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accepted {
    /// The subprotocol the server chose, one of those offered.
    pub protocol: Option<String>,
    /// The extensions the server accepted, from those offered.
    pub extensions: Vec<Extension>,
}

/// Checks the server's response against the request (RFC 6455 §4.1, "the
/// client MUST validate the server's response as follows").
///
/// # Errors
/// [`HandshakeError::UnexpectedStatus`] (not 101), [`HandshakeError::ResponseNotUpgrade`],
/// [`HandshakeError::InvalidAccept`], [`HandshakeError::UnexpectedProtocol`],
/// [`HandshakeError::InvalidExtensions`], [`HandshakeError::UnexpectedExtension`]
/// or, with the `deflate` feature, [`HandshakeError::InvalidDeflateResponse`]
/// when the server's `permessage-deflate` answer fits none of the request's
/// offers (RFC 7692 §7.1). To get the agreement for a
/// [`Connection`](crate::Connection), pass the response's
/// `Sec-WebSocket-Extensions` values to
/// [`deflate::validate_response`](crate::deflate::validate_response).
pub fn validate_response(
    response: &Response,
    request: &ClientRequest,
) -> Result<Accepted, HandshakeError> {
    if response.status != 101 {
        return Err(HandshakeError::UnexpectedStatus {
            status: response.status,
        });
    }
    let upgrade = response
        .header("upgrade")
        .is_some_and(|v| has_token(v, "websocket"));
    let connection = response
        .header("connection")
        .is_some_and(|v| has_token(v, "upgrade"));
    if !upgrade || !connection {
        return Err(HandshakeError::ResponseNotUpgrade);
    }
    if response.header("sec-websocket-accept").map(str::trim)
        != Some(accept_key(request.key.as_bytes()).as_str())
    {
        return Err(HandshakeError::InvalidAccept);
    }
    let protocol = match response.header("sec-websocket-protocol").map(str::trim) {
        None | Some("") => None,
        Some(p) if request.protocols.iter().any(|o| o == p) => Some(p.to_owned()),
        Some(p) => {
            return Err(HandshakeError::UnexpectedProtocol {
                protocol: p.to_owned(),
            })
        }
    };
    let extensions = parse_extensions(
        response
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|(_, v)| v.as_str()),
    )?;
    let offered = parse_extensions(request.extensions.as_deref())?;
    if let Some(e) = extensions
        .iter()
        .find(|e| !offered.iter().any(|o| o.name == e.name))
    {
        return Err(HandshakeError::UnexpectedExtension {
            name: e.name.clone(),
        });
    }
    #[cfg(feature = "deflate")]
    crate::deflate::params::check_response_to_request(&offered, &extensions)
        .map_err(|error| HandshakeError::InvalidDeflateResponse { error })?;
    Ok(Accepted {
        protocol,
        extensions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ClientRequest {
        let mut req = ClientRequest::new("server.example.com", "/chat");
        req.key = "dGhlIHNhbXBsZSBub25jZQ==".into();
        req.protocols = vec!["chat".into(), "superchat".into()];
        req
    }

    fn response(extra: &str) -> Response {
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n{extra}\r\n"
        );
        Response::parse(head.as_bytes()).unwrap()
    }

    #[test]
    fn encodes_a_request_the_server_side_accepts() {
        let wire = request().encode().unwrap();
        let up =
            super::super::validate_request(super::super::Request::parse(&wire).unwrap()).unwrap();
        assert_eq!(up.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(up.protocols, ["chat", "superchat"]);
        assert_eq!(up.path(), "/chat");
    }

    #[test]
    fn generated_keys_are_16_random_bytes() {
        let (a, b) = (generate_key(), generate_key());
        assert_eq!(STANDARD.decode(&a).unwrap().len(), 16);
        assert_ne!(a, b);
    }

    #[test]
    fn accepts_the_sample_response_of_section_1_2() {
        let accepted =
            validate_response(&response("Sec-WebSocket-Protocol: chat\r\n"), &request()).unwrap();
        assert_eq!(accepted.protocol.as_deref(), Some("chat"));
    }

    #[test]
    fn rejects_a_wrong_accept_status_protocol_or_extension() {
        let req = request();
        let bad_accept = Response::parse(b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n").unwrap();
        assert_eq!(
            validate_response(&bad_accept, &req),
            Err(HandshakeError::InvalidAccept)
        );
        let not_found = Response::parse(b"HTTP/1.1 404 Not Found\r\n\r\n").unwrap();
        assert_eq!(
            validate_response(&not_found, &req),
            Err(HandshakeError::UnexpectedStatus { status: 404 })
        );
        assert_eq!(
            validate_response(&response("Sec-WebSocket-Protocol: other\r\n"), &req),
            Err(HandshakeError::UnexpectedProtocol {
                protocol: "other".into()
            })
        );
        assert_eq!(
            validate_response(
                &response("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
                &req
            ),
            Err(HandshakeError::UnexpectedExtension {
                name: "permessage-deflate".into()
            })
        );
    }

    #[test]
    fn header_values_with_line_breaks_are_refused() {
        let mut req = request();
        req.headers
            .push(("X-Token".into(), "a\r\nInjected: yes".into()));
        assert!(matches!(
            req.encode(),
            Err(HandshakeError::InvalidHeader { .. })
        ));
        let mut req = request();
        req.host = "evil\0host".into();
        assert!(req.encode().is_err());
    }
}
