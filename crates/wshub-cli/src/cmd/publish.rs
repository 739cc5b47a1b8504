//! `wshub publish --url URL --room ROOM MESSAGE`: one message into a hub
//! room through the hub's HTTP API, `POST /api/publish` (docs/protocol.md,
//! "HTTP API"), for scripts and backends that keep no WebSocket open.
//!
//! It prints the hub's answer (`{"room", "epoch", "offset", "duplicate"}`)
//! on stdout and exits 0; an answer other than 2xx is printed on stderr as
//! `wshub publish: 401 unauthorized: the API key is wrong` and exits 1, as
//! does a hub that cannot be reached or does not answer within
//! `--timeout`; a usage error (a bad flag, no key, MESSAGE not JSON under
//! `--json`) exits 2 before anything is sent.
//!
//! # The HTTP client: hyper, not ureq
//!
//! The TLS flags (`--ca`, `--cert`, `--key`, `--insecure`) must mean here
//! exactly what they mean for `wshub connect`, so the request has to run
//! over the rustls `ClientConfig` that [`crate::tls::client_config`] builds:
//! its roots, its `--insecure` verifier (which still checks the handshake's
//! signatures), its client certificate, and `wshub`'s X25519-first crypto
//! provider. ureq 3 (the maintained line; its MSRV fits ours) takes no
//! `ClientConfig`: it builds its own from its `TlsConfig` (roots, client
//! certificate, verification on or off, a provider), so each flag would be
//! translated a second time and could drift from `connect`'s meaning; only
//! its unversioned transport API could carry ours (ureq 2 took one, but is
//! the line before). hyper 1's client
//! connection (`hyper::client::conn::http1`) runs over any stream it is
//! given, so this module opens the TCP connection and the TLS session
//! itself, with [`tokio_rustls`] and that very `ClientConfig`, as
//! `wshub::ClientBuilder::connect` does for `wss://`, and hyper does the
//! HTTP/1.1 framing and parsing. It also runs on the tokio runtime the
//! other commands use, where `--timeout` is one `tokio::time::timeout`
//! around the whole exchange. Features: hyper `client` and `http1` only;
//! hyper-util `tokio`, for its I/O adapter; not hyper-util's pooled
//! `Client`, since one request needs no pool and no connector.

use std::io::Write;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT,
};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use url::Url;
use wshub::rustls::pki_types::ServerName;
use wshub::rustls::ClientConfig;
use wshub::ClientStream;

use crate::args::PublishArgs;

/// The environment variable holding the API key when `--api-key-file` is
/// not given.
const API_KEY_VAR: &str = "WSHUB_API_KEY";

/// The most of an answer's body read, in bytes: the hub's answers are a few
/// hundred bytes; more is not a hub speaking.
const MAX_ANSWER: usize = 1 << 20;

/// The longest piece of a non-JSON error answer quoted on stderr, in
/// characters.
const MAX_QUOTE: usize = 200;

/// Publishes `args.message` and prints the outcome. Returns the exit code:
/// 0 published, 1 refused or not reached, 2 usage error; each printed here.
///
/// # Errors
/// Only if the answer cannot be written to stdout (closed).
pub(crate) async fn run(args: PublishArgs) -> Result<i32> {
    let publish = match Publish::new(&args).await {
        Ok(publish) => publish,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(2);
        }
    };
    let url = &publish.endpoint.url;
    let (status, body) = match tokio::time::timeout(args.timeout, publish.send()).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            return Ok(1);
        }
        Err(_) => {
            eprintln!(
                "error: POST {url}: no answer within {} (--timeout)",
                humantime::format_duration(args.timeout)
            );
            return Ok(1);
        }
    };
    if !status.is_success() {
        eprintln!("{}", refusal(status, &body, url));
        return Ok(1);
    }
    match answer_line(&body) {
        Some(line) => {
            writeln!(std::io::stdout(), "{line}").context("cannot write the answer to stdout")?;
            Ok(0)
        }
        None => {
            eprintln!(
                "error: POST {url}: the answer ({status}) is not JSON: {}",
                quote(&body)
            );
            Ok(1)
        }
    }
}

/// Where the API is: `--url` checked, its scheme mapped to HTTP.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    /// `https` (TLS), not `http`.
    tls: bool,
    /// The host to connect to and to name in TLS (SNI): a DNS name or an
    /// IP address, without the brackets of an IPv6 one.
    host: String,
    /// The URL's port, or its scheme's (80 or 443).
    port: u16,
    /// The `Host` header: the URL's host, and its port unless it is the
    /// scheme's.
    authority: String,
    /// The request target: the URL's path without trailing slashes (and,
    /// in a `ws://` or `wss://` URL, without a final `/ws`, the hub's
    /// WebSocket route), then `/api/publish`.
    path: String,
    /// The whole URL requested, `http://` or `https://`, for messages.
    url: String,
}

impl Endpoint {
    /// `--url` as the API's endpoint. `ws://` and `wss://` (the hub's URL,
    /// as users paste it) are taken as `http://` and `https://`.
    ///
    /// # Errors
    /// A message naming `--url` if `raw` is not an absolute URL of one of
    /// those schemes, has no host, or has credentials, a query or a fragment.
    fn parse(raw: &str) -> Result<Self> {
        let example = "e.g. http://127.0.0.1:8080";
        let mut url = Url::parse(raw).map_err(|e| anyhow!("--url {raw}: {e} ({example})"))?;
        // The hub's WebSocket URL as its README shows it, ws://host/ws:
        // its /ws route is not part of the API's base.
        let pasted_hub_route = matches!(url.scheme(), "ws" | "wss");
        let tls = match url.scheme() {
            "http" | "ws" => false,
            "https" | "wss" => true,
            other => bail!("--url {raw}: the scheme is {other:?}; use http:// or https:// (ws:// and wss:// are taken as those), {example}"),
        };
        if url.query().is_some() || url.fragment().is_some() {
            bail!("--url {raw}: the hub's base URL takes no query or fragment");
        }
        if !url.username().is_empty() || url.password().is_some() {
            bail!("--url {raw}: credentials in the URL are not used; the key goes in --api-key-file or {API_KEY_VAR}");
        }
        url.set_scheme(if tls { "https" } else { "http" })
            .expect("ws, wss, http and https are all special schemes, so one can become another");
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => bail!("--url {raw}: no host ({example})"),
        };
        let port = url
            .port_or_known_default()
            .expect("http and https have default ports");
        let host_str = url.host_str().expect("the host is there, checked above");
        let authority = match url.port() {
            Some(port) => format!("{host_str}:{port}"),
            None => host_str.to_owned(),
        };
        let mut base = url.path().trim_end_matches('/');
        if pasted_hub_route {
            base = base.strip_suffix("/ws").unwrap_or(base);
        }
        let path = format!("{base}/api/publish");
        Ok(Self {
            url: format!("{}://{authority}{path}", url.scheme()),
            tls,
            host,
            port,
            authority,
            path,
        })
    }
}

/// One publish, ready to send: everything that can be wrong with the
/// command line has been found before the hub is contacted.
#[derive(Debug)]
struct Publish {
    endpoint: Endpoint,
    /// `Bearer <key>`, marked sensitive.
    authorization: HeaderValue,
    /// The JSON request body.
    body: Bytes,
    /// With `https`: the client configuration and the server's name.
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

impl Publish {
    /// Checks the arguments and builds the request; reads stdin for
    /// MESSAGE `-`.
    ///
    /// # Errors
    /// A message naming what to fix: the URL, the key (neither
    /// `--api-key-file` nor `WSHUB_API_KEY`, an unreadable file, a key that
    /// cannot be a header), the TLS files, MESSAGE not JSON under `--json`
    /// or stdin not UTF-8.
    async fn new(args: &PublishArgs) -> Result<Self> {
        let endpoint = Endpoint::parse(&args.url)?;
        let authorization = authorization(args)?;
        // Called for http:// too, as `connect` does for ws://: the files
        // are checked and --insecure warns whatever the scheme.
        let configured = crate::tls::client_config(&args.tls)?;
        let tls = if endpoint.tls {
            let config = configured.unwrap_or_else(|| {
                Arc::new(wshub::tls::client_config(
                    wshub::tls::native_roots().clone(),
                ))
            });
            let name = ServerName::try_from(endpoint.host.clone()).map_err(|_| {
                anyhow!(
                    "--url {}: {} is not a valid TLS server name",
                    args.url,
                    endpoint.host
                )
            })?;
            Some((config, name))
        } else {
            None
        };
        let message = message(args).await?;
        let mut body = Map::new();
        body.insert("room".into(), Value::String(args.room.clone()));
        body.insert("message".into(), message);
        if let Some(from) = &args.from {
            body.insert("from".into(), Value::String(from.clone()));
        }
        if let Some(key) = &args.idempotency_key {
            body.insert("idempotency_key".into(), Value::String(key.clone()));
        }
        let body = serde_json::to_vec(&Value::Object(body)).expect("a JSON value serialises");
        Ok(Self {
            endpoint,
            authorization,
            body: Bytes::from(body),
            tls,
        })
    }

    /// Connects, sends the request and reads the answer: its status and
    /// body (at most [`MAX_ANSWER`] bytes).
    ///
    /// # Errors
    /// A message naming the URL if the connection, the TLS handshake or the
    /// exchange fails, or the answer is too long.
    async fn send(&self) -> Result<(StatusCode, Bytes)> {
        let Endpoint {
            host, port, url, ..
        } = &self.endpoint;
        let tcp = TcpStream::connect((host.as_str(), *port))
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        // The head and the body may leave in two writes; do not hold the
        // second back for the first's acknowledgement.
        tcp.set_nodelay(true)
            .with_context(|| format!("cannot connect to {url}"))?;
        let stream = match &self.tls {
            Some((config, name)) => {
                let tls = wshub::tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .with_context(|| format!("TLS handshake with {url}"))?;
                ClientStream::from(tls)
            }
            None => ClientStream::from(tcp),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("POST {url}"))?;
        // The connection's task is aborted when the set is dropped: on
        // return, and when --timeout drops this future.
        let mut driver = JoinSet::new();
        driver.spawn(connection);
        let response = sender
            .send_request(self.request()?)
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    anyhow!("POST {url}: the answer ({status}) is over {MAX_ANSWER} bytes")
                } else {
                    anyhow!("POST {url}: the answer ({status}) was cut: {e}")
                }
            })?
            .to_bytes();
        Ok((status, body))
    }

    /// `POST /…/api/publish` with the key and the JSON body.
    fn request(&self) -> Result<Request<Full<Bytes>>> {
        Request::post(self.endpoint.path.as_str())
            .header(HOST, self.endpoint.authority.as_str())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_LENGTH, self.body.len())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("wshub/", env!("CARGO_PKG_VERSION")))
            // One request; the hub closes after its answer anyway.
            .header(CONNECTION, "close")
            .body(Full::new(self.body.clone()))
            .with_context(|| format!("POST {}: cannot build the request", self.endpoint.url))
    }
}

/// `Bearer <key>`: the key of `--api-key-file`, or else of
/// `WSHUB_API_KEY`, without trailing whitespace.
///
/// # Errors
/// Neither is given (or the variable is empty), the file cannot be read,
/// or the key is empty or not printable ASCII (the hub's own rule, and what
/// a header can carry).
fn authorization(args: &PublishArgs) -> Result<HeaderValue> {
    let (key, source) = match &args.api_key_file {
        Some(path) => {
            let source = format!("--api-key-file {}", path.display());
            let text = std::fs::read_to_string(path).with_context(|| source.clone())?;
            (text.trim_end().to_owned(), source)
        }
        None => match std::env::var(API_KEY_VAR) {
            Ok(key) if !key.trim_end().is_empty() => {
                (key.trim_end().to_owned(), API_KEY_VAR.to_owned())
            }
            Ok(_) | Err(std::env::VarError::NotPresent) => bail!(
                "no API key: give --api-key-file FILE, or set the {API_KEY_VAR} environment variable to the key"
            ),
            Err(std::env::VarError::NotUnicode(_)) => {
                bail!("{API_KEY_VAR}: not valid UTF-8")
            }
        },
    };
    if key.is_empty() {
        bail!("{source}: the key is empty");
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("{source}: an API key is printable ASCII without spaces");
    }
    let mut value = HeaderValue::try_from(format!("Bearer {key}"))
        .expect("`Bearer ` and printable ASCII make a valid header value");
    value.set_sensitive(true);
    Ok(value)
}

/// MESSAGE as the JSON value to publish: a string, or with `--json` the
/// value it spells. `-` is stdin, all of it, less one trailing newline.
///
/// # Errors
/// Stdin cannot be read or is not UTF-8; under `--json`, the text is not
/// JSON (serde_json's message says where).
async fn message(args: &PublishArgs) -> Result<Value> {
    let text = if args.message == "-" {
        let mut bytes = Vec::new();
        tokio::io::stdin()
            .read_to_end(&mut bytes)
            .await
            .context("MESSAGE -: cannot read stdin")?;
        let mut text =
            String::from_utf8(bytes).map_err(|_| anyhow!("MESSAGE -: stdin is not UTF-8 text"))?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        text
    } else {
        args.message.clone()
    };
    if !args.json {
        return Ok(Value::String(text));
    }
    serde_json::from_str(&text).map_err(|e| {
        anyhow!("--json: MESSAGE is not valid JSON: {e} (without --json it is sent as a string)")
    })
}

/// The line to print for a 2xx answer: the hub's JSON as it sent it, or
/// re-encoded on one line if it spans several; `None` if it is not JSON.
fn answer_line(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let text = std::str::from_utf8(body).ok()?.trim();
    Some(if text.contains(['\n', '\r']) {
        value.to_string()
    } else {
        text.to_owned()
    })
}

/// The line printed for an answer other than 2xx: `wshub publish: <status>
/// <error code>: <message>`, from the hub's `{"error", "message"}`. Another
/// body (a proxy's page, the hub's plain `not found` when its API is off)
/// gives the status's reason as the code and the body's first line, or for
/// 404 what to check, as the message.
fn refusal(status: StatusCode, body: &[u8], url: &str) -> String {
    let answer: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        answer
            .as_ref()
            .and_then(|a| a.get(name))
            .and_then(Value::as_str)
            .map(|s| printable(s, usize::MAX))
    };
    let reason = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase();
    let (code, message) = match field("error") {
        Some(code) => (code, field("message").unwrap_or_default()),
        None if status == StatusCode::NOT_FOUND => {
            // The hub's own URL, as its README shows it, ends in /ws.
            let hint = if url.ends_with("/ws/api/publish") {
                "; --url is the hub's base URL: drop the /ws"
            } else {
                ""
            };
            (
                reason,
                format!(
                    "no API at {url}: a hub serves it only when started with --api-key-file, and a path in --url is the prefix /api/publish is appended to{hint}"
                ),
            )
        }
        None => (reason, quote(body)),
    };
    if message.is_empty() {
        format!("wshub publish: {} {code}", status.as_u16())
    } else {
        format!("wshub publish: {} {code}: {message}", status.as_u16())
    }
}

/// The first line of `body`, at most [`MAX_QUOTE`] characters, for a
/// message on stderr.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.trim().lines().next().unwrap_or_default();
    if line.is_empty() {
        "(empty body)".to_owned()
    } else {
        printable(line, MAX_QUOTE)
    }
}

/// `text` with control characters (a terminal's escape sequences among
/// them) shown as `?`, cut to `max` characters.
fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap()
    }

    #[test]
    fn a_base_url_gets_api_publish_appended() {
        assert_eq!(
            endpoint("http://127.0.0.1:8080"),
            Endpoint {
                tls: false,
                host: "127.0.0.1".into(),
                port: 8080,
                authority: "127.0.0.1:8080".into(),
                path: "/api/publish".into(),
                url: "http://127.0.0.1:8080/api/publish".into(),
            }
        );
        assert_eq!(endpoint("http://127.0.0.1:8080/").path, "/api/publish");
    }

    #[test]
    fn a_path_is_the_prefix_of_the_api() {
        let e = endpoint("https://example.com/hub/");
        assert_eq!(e.path, "/hub/api/publish");
        assert_eq!(e.url, "https://example.com/hub/api/publish");
    }

    #[test]
    fn ws_and_wss_are_taken_as_http_and_https() {
        let plain = endpoint("ws://hub.example:9000");
        assert!(!plain.tls);
        assert_eq!(plain.url, "http://hub.example:9000/api/publish");
        let pasted = endpoint("ws://127.0.0.1:8080/ws");
        assert_eq!(
            pasted.url, "http://127.0.0.1:8080/api/publish",
            "the /ws route dropped"
        );
        let prefixed = endpoint("wss://hub.example/chat/ws/");
        assert_eq!(prefixed.url, "https://hub.example/chat/api/publish");
        let tls = endpoint("wss://hub.example");
        assert!(tls.tls);
        assert_eq!((tls.port, tls.authority.as_str()), (443, "hub.example"));
        assert_eq!(tls.url, "https://hub.example/api/publish");
    }

    #[test]
    fn default_ports_stay_out_of_the_host_header() {
        let e = endpoint("http://hub.example:80");
        assert_eq!((e.port, e.authority.as_str()), (80, "hub.example"));
        let e = endpoint("ws://hub.example:443");
        assert_eq!((e.port, e.authority.as_str()), (443, "hub.example:443"));
    }

    #[test]
    fn an_ipv6_host_connects_without_brackets_and_is_named_with_them() {
        let e = endpoint("http://[::1]:8080");
        assert_eq!(e.host, "::1");
        assert_eq!(e.authority, "[::1]:8080");
    }

    #[test]
    fn urls_that_cannot_name_the_api_are_refused_naming_the_flag() {
        for (url, says) in [
            ("127.0.0.1:8080", "--url 127.0.0.1:8080: relative URL"),
            ("localhost:8080", "the scheme is \"localhost\""),
            ("ftp://hub.example", "the scheme is \"ftp\""),
            ("http://hub.example/?room=a", "no query or fragment"),
            ("http://hub.example/#top", "no query or fragment"),
            ("http://user:pw@hub.example", "credentials"),
        ] {
            let e = Endpoint::parse(url).unwrap_err().to_string();
            assert!(e.starts_with("--url ") && e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn the_hubs_json_error_gives_code_and_message() {
        let body = br#"{"error":"unauthorized","message":"the API key is wrong"}"#;
        assert_eq!(
            refusal(StatusCode::UNAUTHORIZED, body, "http://h/api/publish"),
            "wshub publish: 401 unauthorized: the API key is wrong"
        );
    }

    #[test]
    fn an_error_without_a_message_ends_at_its_code() {
        assert_eq!(
            refusal(
                StatusCode::FORBIDDEN,
                br#"{"error":"forbidden"}"#,
                "http://h/"
            ),
            "wshub publish: 403 forbidden"
        );
    }

    #[test]
    fn a_plain_404_says_what_to_check() {
        let url = "http://h/hub/api/publish";
        let line = refusal(StatusCode::NOT_FOUND, b"not found", url);
        assert!(
            line.starts_with(&format!("wshub publish: 404 not found: no API at {url}:"))
                && line.contains("--api-key-file"),
            "{line}"
        );
        let line = refusal(
            StatusCode::NOT_FOUND,
            b"not found",
            "http://h/ws/api/publish",
        );
        assert!(line.ends_with("drop the /ws"), "{line}");
    }

    #[test]
    fn another_body_is_quoted_on_one_line_without_control_characters() {
        let body = b"<html>\x1b[31mbad gateway</html>\nsecond line";
        assert_eq!(
            refusal(StatusCode::BAD_GATEWAY, body, "http://h/api/publish"),
            "wshub publish: 502 bad gateway: <html>?[31mbad gateway</html>"
        );
        let long = "x".repeat(MAX_QUOTE + 1);
        assert_eq!(quote(long.as_bytes()).chars().count(), MAX_QUOTE + 1);
        assert_eq!(quote(b"  \n"), "(empty body)");
    }

    #[test]
    fn the_answer_is_printed_as_sent_on_one_line() {
        let sent = br#"{"room":"lobby","epoch":"e-1","offset":17,"duplicate":false}"#;
        assert_eq!(
            answer_line(sent).as_deref(),
            Some(std::str::from_utf8(sent).unwrap())
        );
        assert_eq!(
            answer_line(b"{\n  \"offset\": 1\n}\n").as_deref(),
            Some(r#"{"offset":1}"#)
        );
        assert_eq!(answer_line(b"published"), None);
    }
}
