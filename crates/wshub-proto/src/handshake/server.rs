//! The server side of the opening handshake (RFC 6455 §4.2): the request's
//! checks (§4.2.1), the `101` answer (§4.2.2), and the one writer of every
//! other HTTP answer.

use base64::{engine::general_purpose::STANDARD, Engine};

use super::{
    accept_key, check_header, find_header, has_token, header_list, parse_extensions, Extension,
    HandshakeError, MAX_HEADERS,
};

/// A parsed HTTP request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target as sent, e.g. `/ws?room=a`.
    pub target: String,
    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor_version: u8,
    /// Header names and values in order; values that are not UTF-8 are kept lossily.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// Parses a complete head, as returned by [`HeadReader::head`](super::HeadReader::head).
    ///
    /// # Errors
    /// [`HandshakeError::TooManyHeaders`] past [`MAX_HEADERS`] lines,
    /// [`HandshakeError::MalformedHttp`] for anything httparse rejects.
    pub fn parse(head: &[u8]) -> Result<Self, HandshakeError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        super::head::parsed(req.parse(head))?;
        Ok(Self {
            method: req.method.unwrap_or_default().to_owned(),
            target: req.path.unwrap_or_default().to_owned(),
            minor_version: req.version.unwrap_or(0),
            headers: super::head::owned_headers(req.headers),
        })
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The path part of the target, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The query part of the target, without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// Whether this asks for a WebSocket upgrade at all (`Upgrade: websocket`).
    pub fn is_upgrade(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|v| has_token(v, "websocket"))
    }
}

/// A request that passed every check of RFC 6455 §4.2.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The whole request, for routing and inspection.
    pub request: Request,
    /// `Sec-WebSocket-Key`, as sent.
    pub key: String,
    /// Subprotocols offered in `Sec-WebSocket-Protocol`, in preference order.
    pub protocols: Vec<String>,
    /// Extensions offered in `Sec-WebSocket-Extensions`, in preference order.
    pub extensions: Vec<Extension>,
}

impl UpgradeRequest {
    /// The `Origin` header, which browsers always send (§4.1, §10.2).
    pub fn origin(&self) -> Option<&str> {
        self.request.header("origin")
    }

    /// The path the client asked for, without the query.
    pub fn path(&self) -> &str {
        self.request.path()
    }
}

/// Checks a request against RFC 6455 §4.2.1.
///
/// # Errors
/// The first rule broken, checked in this order: [`HandshakeError::MethodNotGet`],
/// [`HandshakeError::HttpVersion`], [`HandshakeError::NotUpgrade`] (no
/// `Upgrade: websocket`), [`HandshakeError::MissingConnectionUpgrade`],
/// [`HandshakeError::MissingHost`], [`HandshakeError::UnsupportedVersion`],
/// [`HandshakeError::InvalidKey`], [`HandshakeError::InvalidExtensions`].
pub fn validate_request(request: Request) -> Result<UpgradeRequest, HandshakeError> {
    if request.method != "GET" {
        return Err(HandshakeError::MethodNotGet {
            method: request.method,
        });
    }
    if request.minor_version < 1 {
        return Err(HandshakeError::HttpVersion);
    }
    if !request.is_upgrade() {
        return Err(HandshakeError::NotUpgrade);
    }
    if !request
        .header("connection")
        .is_some_and(|v| has_token(v, "upgrade"))
    {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    if request.header("host").is_none() {
        return Err(HandshakeError::MissingHost);
    }
    if request.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = request
        .header("sec-websocket-key")
        .map(str::trim)
        .filter(|k| STANDARD.decode(k).is_ok_and(|raw| raw.len() == 16))
        .ok_or(HandshakeError::InvalidKey)?
        .to_owned();
    let protocols = header_list(&request.headers, "sec-websocket-protocol")
        .map(str::to_owned)
        .collect();
    let extensions = parse_extensions(
        request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|(_, v)| v.as_str()),
    )?;
    Ok(UpgradeRequest {
        request,
        key,
        protocols,
        extensions,
    })
}

/// The headers of the `101 Switching Protocols` answer to a valid request
/// (§4.2.2), in order: `Upgrade`, `Connection`, `Sec-WebSocket-Accept`, then
/// `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions` when given, then
/// `headers` as given. [`accept_response`] writes them; a server on an HTTP
/// library (hyper) puts them in its own response.
///
/// `protocol` must be one the client offered; `extensions` is the negotiated
/// `Sec-WebSocket-Extensions` value, if any.
///
/// # Errors
/// [`HandshakeError::InvalidHeader`] if a header name is not a token or a value
/// holds CR, LF or NUL.
pub fn accept_headers(
    request: &UpgradeRequest,
    protocol: Option<&str>,
    extensions: Option<&str>,
    headers: &[(String, String)],
) -> Result<Vec<(String, String)>, HandshakeError> {
    let mut out = Vec::with_capacity(5 + headers.len());
    each_accept_header(request, protocol, extensions, headers, |name, value| {
        check_header(name, value)?;
        out.push((name.to_owned(), value.to_owned()));
        Ok(())
    })?;
    Ok(out)
}

/// The `101 Switching Protocols` answer to a valid request (§4.2.2), with
/// the headers of [`accept_headers`].
///
/// # Errors
/// As [`accept_headers`].
pub fn accept_response(
    request: &UpgradeRequest,
    protocol: Option<&str>,
    extensions: Option<&str>,
    headers: &[(String, String)],
) -> Result<Vec<u8>, HandshakeError> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    each_accept_header(request, protocol, extensions, headers, |name, value| {
        push_header(&mut out, name, value)
    })?;
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// Calls `f` with each header of a `101` answer, in order: the one list of
/// them, written by [`accept_response`] without allocating a list.
fn each_accept_header(
    request: &UpgradeRequest,
    protocol: Option<&str>,
    extensions: Option<&str>,
    headers: &[(String, String)],
    mut f: impl FnMut(&str, &str) -> Result<(), HandshakeError>,
) -> Result<(), HandshakeError> {
    f("Upgrade", "websocket")?;
    f("Connection", "Upgrade")?;
    f("Sec-WebSocket-Accept", &accept_key(request.key.as_bytes()))?;
    if let Some(protocol) = protocol {
        f("Sec-WebSocket-Protocol", protocol)?;
    }
    if let Some(extensions) = extensions {
        f("Sec-WebSocket-Extensions", extensions)?;
    }
    for (name, value) in headers {
        f(name, value)?;
    }
    Ok(())
}

/// A complete HTTP/1.1 response other than `101`, ending the connection:
/// the status line, `headers` as given, then `Content-Type: content_type`,
/// `Content-Length` and `Connection: close`, then `body`.
///
/// The one writer of every non-101 answer: a refused handshake, or a plain
/// HTTP route of a server that also speaks WebSocket. A 426 also carries
/// `Upgrade: websocket` and `Sec-WebSocket-Version: 13`, as RFC 6455 §4.4
/// asks of a server refusing the version a client offered.
///
/// ```
/// let wire = wshub_proto::handshake::http_response(404, &[], "text/plain; charset=utf-8", b"not found\n")?;
/// assert!(wire.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
/// assert!(wire.ends_with(b"Content-Length: 10\r\nConnection: close\r\n\r\nnot found\n"));
/// # Ok::<(), wshub_proto::handshake::HandshakeError>(())
/// ```
///
/// # Errors
/// [`HandshakeError::InvalidHeader`] if a header name is not a token or a
/// value (`content_type` included) holds CR, LF or NUL.
pub fn http_response(
    status: u16,
    headers: &[(String, String)],
    content_type: &str,
    body: &[u8],
) -> Result<Vec<u8>, HandshakeError> {
    let mut out = Vec::with_capacity(160 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    if status == 426 {
        out.extend_from_slice(b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
    }
    for (name, value) in headers {
        push_header(&mut out, name, value)?;
    }
    push_header(&mut out, "Content-Type", content_type)?;
    out.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    Ok(out)
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) -> Result<(), HandshakeError> {
    check_header(name, value)?;
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// The standard reason phrase of an HTTP status.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The sample request of RFC 6455 §1.2.
    const SAMPLE: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn parse(s: &str) -> Result<UpgradeRequest, HandshakeError> {
        validate_request(Request::parse(s.as_bytes())?)
    }

    #[test]
    fn accepts_the_sample_request_of_section_1_2() {
        let up = parse(SAMPLE).unwrap();
        assert_eq!(up.path(), "/chat");
        assert_eq!(up.origin(), Some("http://example.com"));
        assert_eq!(up.protocols, ["chat", "superchat"]);
        let resp =
            String::from_utf8(accept_response(&up, Some("chat"), None, &[]).unwrap()).unwrap();
        assert!(resp.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(resp.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(resp.contains("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(resp.ends_with("\r\n\r\n"));
    }

    #[test]
    fn connection_and_upgrade_tokens_are_case_insensitive_and_listed() {
        let req = SAMPLE
            .replace("Connection: Upgrade", "connection: keep-alive, UPGRADE")
            .replace("Upgrade: websocket", "upgrade: WebSocket");
        assert!(parse(&req).is_ok());
    }

    #[test]
    fn each_broken_rule_has_its_error_and_status() {
        let cases: [(String, HandshakeError, u16); 8] = [
            (
                SAMPLE.replace("GET", "POST"),
                HandshakeError::MethodNotGet {
                    method: "POST".into(),
                },
                405,
            ),
            (
                SAMPLE.replace("HTTP/1.1", "HTTP/1.0"),
                HandshakeError::HttpVersion,
                505,
            ),
            (
                SAMPLE.replace("Upgrade: websocket\r\n", ""),
                HandshakeError::NotUpgrade,
                426,
            ),
            (
                SAMPLE.replace("Connection: Upgrade", "Connection: close"),
                HandshakeError::MissingConnectionUpgrade,
                400,
            ),
            (
                SAMPLE.replace("Host: server.example.com\r\n", ""),
                HandshakeError::MissingHost,
                400,
            ),
            (
                SAMPLE.replace("Version: 13", "Version: 8"),
                HandshakeError::UnsupportedVersion,
                426,
            ),
            (
                SAMPLE.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
                HandshakeError::InvalidKey,
                400,
            ),
            (
                SAMPLE.replace("Origin", "Sec-WebSocket-Extensions: ;bad\r\nOrigin"),
                HandshakeError::InvalidExtensions,
                400,
            ),
        ];
        for (req, err, status) in cases {
            assert_eq!(parse(&req), Err(err.clone()), "{req}");
            assert_eq!(err.status(), status);
        }
    }

    #[test]
    fn a_426_tells_the_version_this_server_speaks() {
        let resp = String::from_utf8(
            http_response(426, &[], "text/plain", b"use a WebSocket client\n").unwrap(),
        )
        .unwrap();
        assert!(resp.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(resp.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(resp.contains("Content-Length: 23\r\n"));
    }

    #[test]
    fn an_http_response_carries_its_headers_type_and_body() {
        let headers = [("Cache-Control".to_string(), "no-store".to_string())];
        let resp = http_response(200, &headers, "text/html; charset=utf-8", b"<p>hi</p>").unwrap();
        assert_eq!(
            String::from_utf8(resp).unwrap(),
            "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Length: 9\r\nConnection: close\r\n\r\n<p>hi</p>"
        );
        assert!(matches!(
            http_response(200, &[], "text/plain\r\nX-Evil: 1", b""),
            Err(HandshakeError::InvalidHeader { .. })
        ));
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut req = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            req.push_str(&format!("X-{i}: v\r\n"));
        }
        req.push_str("\r\n");
        let err = Request::parse(req.as_bytes()).unwrap_err();
        assert_eq!(err, HandshakeError::TooManyHeaders { limit: MAX_HEADERS });
        assert_eq!(err.status(), 431);
    }

    #[test]
    fn garbage_is_malformed_http() {
        assert_eq!(
            Request::parse(b"\x16\x03\x01garbage\r\n\r\n"),
            Err(HandshakeError::MalformedHttp)
        );
    }

    #[test]
    fn response_headers_with_crlf_are_refused() {
        let up = parse(SAMPLE).unwrap();
        let bad = [("X-Evil".to_string(), "a\r\nSet-Cookie: x".to_string())];
        assert!(matches!(
            accept_response(&up, None, None, &bad),
            Err(HandshakeError::InvalidHeader { .. })
        ));
    }
}
