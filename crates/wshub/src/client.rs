//! The client side: URL, TCP connect, TLS for `wss://`, opening handshake
//! (RFC 6455 §4.1).

use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
#[cfg(feature = "deflate")]
use wshub_proto::deflate;
use wshub_proto::handshake::{validate_response, ClientRequest, Response, DEFAULT_MAX_HEAD_LEN};
use wshub_proto::Role;

use crate::error::HttpResponse;
use crate::websocket::HandshakeInfo;
use crate::{ClientStream, Error, WebSocket, WebSocketConfig};

/// A parsed `ws://` or `wss://` URL: where to connect and what to ask for
/// (RFC 6455 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// Host name or address to connect to (IPv6 without brackets).
    pub host: String,
    /// TCP port; 80 (`ws://`) or 443 (`wss://`) when the URL has none.
    pub port: u16,
    /// Whether the URL is `wss://`: TLS, with `host` as the server name
    /// (SNI) and the name its certificate must be valid for.
    pub tls: bool,
    /// `Host` header value: host, and `:port` when the URL names one.
    pub authority: String,
    /// Request target: path (at least `/`) and query.
    pub resource: String,
}

impl WsUrl {
    /// Parses `url`.
    ///
    /// The URL is read as RFC 3986 says, by `http::Uri`: a host name
    /// outside ASCII must be given in its punycode form (`xn--…`), and
    /// characters a URL may not hold (spaces, for one) percent-encoded.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for anything but
    /// `ws://host[:port][/path][?query]` or the same with `wss://` (a
    /// `#fragment` included, RFC 6455 §3). A `wss://` URL parses even
    /// without the `rustls` feature; connecting to it then fails.
    pub fn parse(url: &str) -> Result<Self, Error> {
        parse_url(url)
    }
}

type Target = WsUrl;

pub(crate) fn parse_url(url: &str) -> Result<Target, Error> {
    let invalid = |reason| Error::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    // "Fragment identifiers are meaningless in the context of WebSocket URIs
    // and MUST NOT be used" (RFC 6455 §3).
    if url.contains('#') {
        return Err(invalid("a WebSocket URL has no #fragment"));
    }
    let parsed: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    let tls = match parsed.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("ws") => false,
        Some(s) if s.eq_ignore_ascii_case("wss") => true,
        Some(_) => return Err(invalid("the scheme must be ws:// or wss://")),
        None => return Err(invalid("not a URL")),
    };
    let Some(authority) = parsed.authority() else {
        return Err(invalid("missing host"));
    };
    // `Authority::host` keeps an IPv6 address's brackets; the Host header
    // keeps them too, the socket address does not. Host names compare
    // case-insensitively (RFC 3986 §3.2.2): lower-cased, as browsers send
    // them.
    let host_str = authority.host().to_ascii_lowercase();
    if host_str.is_empty() {
        return Err(invalid("missing host"));
    }
    let host = host_str
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(&host_str)
        .to_owned();
    let default_port = if tls { 443 } else { 80 };
    // The Host header names the port only when the URL does and it is not
    // the scheme's default (RFC 6455 §4.1, item 4).
    let (port, authority) = match authority.port_u16() {
        Some(p) if p != default_port => (p, format!("{host_str}:{p}")),
        _ => (default_port, host_str),
    };
    let mut resource = parsed.path().to_owned();
    if resource.is_empty() {
        resource.push('/');
    }
    if let Some(q) = parsed.query() {
        resource.push('?');
        resource.push_str(q);
    }
    Ok(Target {
        host,
        port,
        tls,
        authority,
        resource,
    })
}

/// Builds a client connection: URL, headers, subprotocols, timeouts.
///
/// ```no_run
/// # async fn run() -> Result<(), wshub::Error> {
/// let ws = wshub::ClientBuilder::new("ws://127.0.0.1:8080/ws")
///     .header("Authorization", "Bearer t0ken")
///     .protocol("chat")
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    url: String,
    headers: Vec<(String, String)>,
    protocols: Vec<String>,
    config: WebSocketConfig,
    #[cfg(feature = "rustls")]
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl ClientBuilder {
    /// A client for `url` (`ws://host[:port]/path[?query]`, or `wss://`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            headers: Vec::new(),
            protocols: Vec::new(),
            config: WebSocketConfig::default(),
            #[cfg(feature = "rustls")]
            tls: None,
        }
    }

    /// The TLS configuration of a `wss://` connection: roots to trust (a
    /// private CA), a client certificate, protocol versions. Without it,
    /// the server is verified against the roots the crate's features build
    /// in ([`tls`](crate::tls): the system's by default). A `config` that
    /// offers no ALPN protocol is given `http/1.1` (in a copy). Start from
    /// [`tls::client_config`](crate::tls::client_config). Ignored for
    /// `ws://`.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls_config(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(crate::tls::with_alpn(config));
        self
    }

    /// Adds a request header. Values with CR, LF or NUL make
    /// [`ClientBuilder::connect`] fail with [`Error::Handshake`] before
    /// anything is sent.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol (`Sec-WebSocket-Protocol`), in preference order.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Bounds TCP connect, TLS handshake and opening handshake together: sets
    /// [`WebSocketConfig::handshake_timeout`] of the connection's settings.
    /// Default: that field's default, 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// Connection settings (limits, keepalive, write buffer, handshake
    /// timeout). Replaces them all, so set
    /// [`ClientBuilder::handshake_timeout`] after this, or in `config`.
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.config = config;
        self
    }

    fn request(&self, target: &Target) -> ClientRequest {
        let mut request = ClientRequest::new(target.authority.clone(), target.resource.clone());
        request.protocols = self.protocols.clone();
        request.headers = self.headers.clone();
        #[cfg(feature = "deflate")]
        {
            request.extensions = self.config.compression.as_ref().map(deflate::offer);
        }
        request
    }

    /// Connects over TCP, for `wss://` performs the TLS handshake (server
    /// name and SNI: the URL's host; ALPN `http/1.1`), and performs the
    /// opening handshake.
    ///
    /// # Errors
    /// - [`Error::InvalidUrl`] for the URL; [`Error::TlsUnsupported`] for
    ///   `wss://` without the `rustls` feature.
    /// - [`Error::Tls`] if the TLS handshake fails (certificate not
    ///   trusted, expired, not valid for the host, ...).
    /// - [`Error::Http`] when the server answers another status than 101:
    ///   its status, headers and body.
    /// - [`Error::Handshake`] for an invalid header value, or a 101 that
    ///   fails RFC 6455 §4.1 validation (no `Upgrade: websocket`, bad
    ///   `Sec-WebSocket-Accept`, unoffered subprotocol or extension).
    /// - [`Error::HandshakeTimeout`] past the handshake timeout.
    /// - [`Error::Io`] if the TCP connection fails.
    pub async fn connect(self) -> Result<WebSocket<ClientStream>, Error> {
        let (target, request) = self.prepare()?;
        let fut = async {
            let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
            self.open(tcp, &target, &request).await
        };
        tokio::time::timeout(self.config.handshake_timeout, fut)
            .await
            .map_err(|_| Error::HandshakeTimeout)?
    }

    /// As [`ClientBuilder::connect`], over a TCP connection opened already,
    /// such as a tunnel through an HTTP or SOCKS proxy: for `wss://` the TLS
    /// handshake (server name and SNI: the URL's host, whatever `tcp` is
    /// connected to), then the opening handshake. The handshake timeout
    /// bounds the two together.
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`]; [`Error::Io`] for a failure on `tcp`.
    pub async fn connect_tcp(self, tcp: TcpStream) -> Result<WebSocket<ClientStream>, Error> {
        let (target, request) = self.prepare()?;
        tokio::time::timeout(
            self.config.handshake_timeout,
            self.open(tcp, &target, &request),
        )
        .await
        .map_err(|_| Error::HandshakeTimeout)?
    }

    /// The URL and the request, checked before any socket is opened: the
    /// URL, TLS support for `wss://`, the header values.
    fn prepare(&self) -> Result<(Target, ClientRequest), Error> {
        let target = parse_url(&self.url)?;
        #[cfg(not(feature = "rustls"))]
        if target.tls {
            return Err(Error::TlsUnsupported);
        }
        let request = self.request(&target);
        request.encode()?;
        Ok((target, request))
    }

    /// TLS for `wss://`, then the opening handshake, on `tcp`.
    async fn open(
        &self,
        tcp: TcpStream,
        target: &Target,
        request: &ClientRequest,
    ) -> Result<WebSocket<ClientStream>, Error> {
        tcp.set_nodelay(true)?;
        let stream = if target.tls {
            self.start_tls(tcp, &target.host).await?
        } else {
            ClientStream::plain(tcp)
        };
        handshake(stream, request, self.url.clone(), self.config.clone()).await
    }

    #[cfg(feature = "rustls")]
    async fn start_tls(&self, tcp: TcpStream, host: &str) -> Result<ClientStream, Error> {
        let config = match &self.tls {
            Some(config) => config.clone(),
            None => crate::tls::default_client_config().ok_or(Error::TlsNoRoots)?,
        };
        let name = rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(|_| {
            Error::InvalidUrl {
                url: self.url.clone(),
                reason: "the host is not a valid TLS server name",
            }
        })?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(crate::tls::classify)?;
        Ok(ClientStream::rustls(tls))
    }

    #[cfg(not(feature = "rustls"))]
    async fn start_tls(&self, _tcp: TcpStream, _host: &str) -> Result<ClientStream, Error> {
        Err(Error::TlsUnsupported)
    }

    /// Performs the opening handshake over an already connected transport
    /// (a Unix socket, a TLS stream, an in-memory pipe), whatever the URL's
    /// scheme: no TLS is started here. No timeout applies.
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`], without the TCP and timeout cases.
    pub async fn connect_on<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        io: S,
    ) -> Result<WebSocket<S>, Error> {
        let target = parse_url(&self.url)?;
        let request = self.request(&target);
        handshake(io, &request, self.url.clone(), self.config).await
    }
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    request: &ClientRequest,
    url: String,
    config: WebSocketConfig,
) -> Result<WebSocket<S>, Error> {
    io.write_all(&request.encode()?).await?;
    io.flush().await?;
    let reader = crate::server::read_head(&mut io, DEFAULT_MAX_HEAD_LEN).await?;
    let response = Response::parse(reader.head().expect("the head is complete"))?;
    if response.status != 101 {
        let body = refusal_body(&mut io, &response, reader.remainder()).await;
        return Err(Error::Http(Box::new(HttpResponse {
            status: response.status,
            headers: response.headers,
            body,
        })));
    }
    let accepted = validate_response(&response, request)?;
    #[allow(unused_mut)]
    let mut config = config;
    #[allow(unused_mut)]
    let mut extensions = None;
    #[cfg(feature = "deflate")]
    if let Some(settings) = &config.compression {
        let values = response
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|(_, value)| value.as_str());
        // An answer we cannot hold the server to fails the connection
        // (RFC 7692 §7.1): `?` drops the transport before it is open.
        if let Some(agreement) = deflate::validate_response(values, settings)? {
            extensions = Some(agreement.response_header().into_boxed_str());
            config.protocol = std::mem::take(&mut config.protocol).deflate(Some(agreement));
        }
    }
    let info = HandshakeInfo {
        protocol: accepted.protocol.map(String::into_boxed_str),
        extensions,
        url: url.into_boxed_str(),
    };
    Ok(WebSocket::from_parts(
        io,
        Role::Client,
        config,
        info,
        reader.remainder(),
    ))
}

/// The body of a refusal: the `Content-Length` bytes (else up to the end
/// of the connection), at most [`HttpResponse::MAX_BODY`], read for at most
/// [`REFUSAL_BODY_TIME`]; what arrived by then if the server is slower.
async fn refusal_body<S: AsyncRead + Unpin>(
    io: &mut S,
    response: &Response,
    early: &[u8],
) -> Bytes {
    let wanted = response
        .header("content-length")
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(usize::MAX)
        .min(HttpResponse::MAX_BODY);
    let mut body = early[..early.len().min(wanted)].to_vec();
    let read = async {
        let mut chunk = [0u8; 4096];
        while body.len() < wanted {
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n.min(wanted - body.len())]),
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_BODY_TIME, read).await;
    Bytes::from(body)
}

/// The longest wait for a refusal's body: 2 s.
const REFUSAL_BODY_TIME: Duration = Duration::from_secs(2);

/// Connects to `url` with default settings.
///
/// # Errors
/// As [`ClientBuilder::connect`].
pub async fn connect(url: &str) -> Result<WebSocket<ClientStream>, Error> {
    ClientBuilder::new(url).connect().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ws_urls_into_host_port_and_resource() {
        let t = parse_url("ws://example.com/chat?room=a").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str()),
            ("example.com", 80, "example.com")
        );
        assert_eq!(t.resource, "/chat?room=a");
        let t = parse_url("ws://[::1]:9001").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str()),
            ("::1", 9001, "[::1]:9001")
        );
        assert_eq!(t.resource, "/");
    }

    #[test]
    fn reads_schemes_and_hosts_in_any_case_and_names_no_default_port() {
        let t = parse_url("WS://Example.COM:80/Chat").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str(), t.tls),
            ("example.com", 80, "example.com", false)
        );
        // The path is case-sensitive (RFC 3986 §6.2.2.1).
        assert_eq!(t.resource, "/Chat");
        let t = parse_url("wss://user:pw@example.com:443").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str(), t.tls),
            ("example.com", 443, "example.com", true)
        );
        let t = parse_url("ws://127.0.0.1:9001/a/b?x=1&y=%20").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str()),
            ("127.0.0.1", 9001, "127.0.0.1:9001")
        );
        assert_eq!(t.resource, "/a/b?x=1&y=%20");
    }

    #[test]
    fn parses_wss_urls_with_port_443_by_default() {
        let t = parse_url("wss://example.com/chat").unwrap();
        assert_eq!(
            (t.port, t.tls, t.authority.as_str()),
            (443, true, "example.com")
        );
        let t = parse_url("wss://example.com:8443/").unwrap();
        assert_eq!(
            (t.port, t.tls, t.authority.as_str()),
            (8443, true, "example.com:8443")
        );
        assert!(!parse_url("ws://example.com/").unwrap().tls);
    }

    #[cfg(all(
        feature = "rustls",
        not(feature = "rustls-native-roots"),
        not(feature = "rustls-webpki-roots")
    ))]
    #[tokio::test]
    async fn wss_without_built_in_roots_or_a_config_is_tls_no_roots() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("wss://{}/", listener.local_addr().unwrap());
        let result = connect(&url).await;
        assert!(matches!(result, Err(Error::TlsNoRoots)), "{result:?}");
    }

    #[cfg(not(feature = "rustls"))]
    #[tokio::test]
    async fn wss_without_the_rustls_feature_is_tls_unsupported() {
        let result = connect("wss://127.0.0.1:1/").await;
        assert!(matches!(result, Err(Error::TlsUnsupported)), "{result:?}");
    }

    #[test]
    fn refuses_other_schemes_and_fragments() {
        assert!(matches!(
            parse_url("http://a/"),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            parse_url("ws://a/#frag"),
            Err(Error::InvalidUrl { .. })
        ));
        for bad in ["not a url", "ws://", "ws:///path", "ws://a b/", "/relative"] {
            assert!(
                matches!(parse_url(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }
}
