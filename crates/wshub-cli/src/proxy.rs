//! `connect` through a proxy: which one (--proxy, --socks5, else the
//! environment's `*_proxy` and `no_proxy`, resolved here and nowhere else),
//! and the tunnel through it: HTTP CONNECT (RFC 9110 §9.3.6) or SOCKS5
//! (RFC 1928, with RFC 1929 username and password).
//!
//! Both tunnels are written here rather than borrowed: HTTP CONNECT is one
//! request and a status line read with `httparse`; for SOCKS5, the crate of
//! choice (tokio-socks 0.5) pulls thiserror 1 beside the workspace's
//! thiserror 2, which deny.toml's ban on duplicate versions refuses, for
//! the 3 short messages of a CONNECT.

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;

use crate::args::ProxyArgs;

/// The proxy one connection goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    pub(crate) kind: Kind,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `user:password`, percent-decoded.
    pub(crate) credentials: Option<(String, String)>,
    /// Where it was set: `--proxy`, `--socks5` or the variable's name, for
    /// error messages.
    pub(crate) source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// HTTP CONNECT.
    Http,
    /// SOCKS5; `remote_dns`: the proxy resolves the server's name
    /// (socks5h://), else it is resolved here (socks5://).
    Socks5 { remote_dns: bool },
}

/// The proxy for a connection to `host`:`port` (`tls`: wss://), from the
/// flags, else from the environment as `var` reads it; `None`: direct.
///
/// # Errors
/// A proxy URL that is no URL, has another scheme or no host; the message
/// names the flag or variable.
pub(crate) fn for_target(
    args: &ProxyArgs,
    host: &str,
    port: u16,
    tls: bool,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<Proxy>> {
    if let Some(url) = &args.proxy {
        return parse("--proxy", url).map(Some);
    }
    if let Some(addr) = &args.socks5 {
        return parse("--socks5", &format!("socks5h://{addr}")).map(Some);
    }
    if args.no_proxy {
        return Ok(None);
    }
    // Lower case first, as curl (which takes ws:// and wss:// as http://
    // and https://) and most tools read them.
    let scheme_vars: &[&str] = if tls {
        &["https_proxy", "HTTPS_PROXY"]
    } else {
        &["http_proxy", "HTTP_PROXY"]
    };
    let found = scheme_vars
        .iter()
        .chain(&["all_proxy", "ALL_PROXY"])
        .find_map(|name| Some((*name, var(name).filter(|v| !v.trim().is_empty())?)));
    let Some((name, url)) = found else {
        return Ok(None);
    };
    let no_proxy = var("no_proxy")
        .or_else(|| var("NO_PROXY"))
        .unwrap_or_default();
    if bypasses(&no_proxy, host, port) {
        return Ok(None);
    }
    parse(name, url.trim()).map(Some)
}

/// Parses a proxy URL given by `source` (a flag or a variable's name).
fn parse(source: &str, value: &str) -> Result<Proxy> {
    let fix =
        "use http://[USER:PASSWORD@]HOST[:PORT], socks5://HOST[:PORT] or socks5h://HOST[:PORT]";
    // A bare host:port is taken as http://, as curl does.
    let with_scheme = if value.contains("://") {
        value.to_owned()
    } else {
        format!("http://{value}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| anyhow!("{source} {value:?}: {e}; {fix}"))?;
    let (kind, default_port) = match url.scheme() {
        "http" => (Kind::Http, 80),
        "socks5" => (Kind::Socks5 { remote_dns: false }, 1080),
        "socks5h" => (Kind::Socks5 { remote_dns: true }, 1080),
        "https" => {
            bail!("{source} {value:?}: TLS to the proxy itself (https://) is not supported; {fix}")
        }
        other => bail!("{source} {value:?}: unknown proxy scheme {other}://; {fix}"),
    };
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        bail!("{source} {value:?}: no host; {fix}");
    };
    // `Url` keeps IPv6 hosts in brackets; connecting wants them bare.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let credentials = (!url.username().is_empty())
        .then(|| (decode(url.username()), decode(url.password().unwrap_or(""))));
    Ok(Proxy {
        kind,
        host,
        port: url.port().unwrap_or(default_port),
        credentials,
        source: source.to_owned(),
    })
}

/// Whether `no_proxy` (comma-separated: `*`, host names, which also match
/// their subdomains, `.domain` suffixes, IP addresses; each with an optional
/// `:port`) names `host`:`port`.
fn bypasses(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    no_proxy.split(',').map(str::trim).any(|entry| {
        if entry == "*" {
            return true;
        }
        let (name, entry_port) = match entry.rsplit_once(':') {
            // `[::1]:8080`, `host:8080`; a bare IPv6 address has more colons.
            Some((name, p)) if !name.contains(':') || name.ends_with(']') => {
                match p.parse::<u16>() {
                    Ok(p) => (name, Some(p)),
                    Err(_) => (entry, None),
                }
            }
            _ => (entry, None),
        };
        if entry_port.is_some_and(|p| p != port) {
            return false;
        }
        let name = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_start_matches("*.")
            .trim_start_matches('.')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        !name.is_empty()
            && (host == name
                || host
                    .strip_suffix(&name)
                    .is_some_and(|rest| rest.ends_with('.')))
    })
}

/// Opens a TCP connection to `host`:`port` through `proxy`.
///
/// # Errors
/// The proxy cannot be reached, refuses (its status or SOCKS reply, said
/// in words), or answers what is not HTTP or SOCKS5.
pub(crate) async fn tunnel(proxy: &Proxy, host: &str, port: u16) -> Result<TcpStream> {
    let mut tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .with_context(|| {
            format!(
                "cannot reach the proxy {}:{} ({})",
                proxy.host, proxy.port, proxy.source
            )
        })?;
    let result = match proxy.kind {
        Kind::Http => http_connect(&mut tcp, proxy, host, port).await,
        Kind::Socks5 { remote_dns } => {
            socks5_connect(&mut tcp, proxy, host, port, remote_dns).await
        }
    };
    result.with_context(|| {
        format!(
            "proxy {}:{} ({}) to {host}:{port}",
            proxy.host, proxy.port, proxy.source
        )
    })?;
    Ok(tcp)
}

/// `host:port` as a request target or Host value: IPv6 in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The longest response head taken from an HTTP proxy.
const MAX_PROXY_HEAD: usize = 16 * 1024;

async fn http_connect(tcp: &mut TcpStream, proxy: &Proxy, host: &str, port: u16) -> Result<()> {
    let target = authority(host, port);
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, password)) = &proxy.credentials {
        let value = crate::config::basic_auth(&format!("{user}:{password}"));
        request.push_str(&format!("Proxy-Authorization: {value}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await?;
    // Byte by byte up to the blank line: after it the tunnel is the
    // server's, and none of its bytes may be taken here.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_PROXY_HEAD {
            bail!("the proxy's answer has no end of head in {MAX_PROXY_HEAD} bytes");
        }
        let byte = tcp.read_u8().await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                anyhow!("the proxy closed the connection without answering CONNECT")
            } else {
                e.into()
            }
        })?;
        head.push(byte);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    response
        .parse(&head)
        .map_err(|e| anyhow!("the proxy's answer is not HTTP: {e}"))?;
    let status = response.code.unwrap_or(0);
    let reason = response.reason.unwrap_or("");
    match status {
        200..=299 => Ok(()),
        407 if proxy.credentials.is_none() => bail!(
            "the proxy asks for authentication (407 {reason}); give it as http://USER:PASSWORD@HOST:PORT"
        ),
        407 => bail!("the proxy refused the credentials given (407 {reason})"),
        _ => bail!("the proxy refused CONNECT: {status} {reason}"),
    }
}

async fn socks5_connect(
    tcp: &mut TcpStream,
    proxy: &Proxy,
    host: &str,
    port: u16,
    remote_dns: bool,
) -> Result<()> {
    const VERSION: u8 = 5;
    const NO_AUTH: u8 = 0;
    const USER_PASSWORD: u8 = 2;
    // Greeting: the methods offered.
    let greeting: &[u8] = if proxy.credentials.is_some() {
        &[VERSION, 2, NO_AUTH, USER_PASSWORD]
    } else {
        &[VERSION, 1, NO_AUTH]
    };
    tcp.write_all(greeting).await?;
    let mut choice = [0u8; 2];
    tcp.read_exact(&mut choice)
        .await
        .context("no SOCKS5 answer")?;
    if choice[0] != VERSION {
        bail!("not a SOCKS5 proxy (version byte {})", choice[0]);
    }
    match (choice[1], &proxy.credentials) {
        (NO_AUTH, _) => {}
        (USER_PASSWORD, Some((user, password))) => {
            if user.len() > 255 || password.len() > 255 {
                bail!("SOCKS5 user name and password are at most 255 bytes each");
            }
            let mut auth = vec![1, user.len() as u8];
            auth.extend_from_slice(user.as_bytes());
            auth.push(password.len() as u8);
            auth.extend_from_slice(password.as_bytes());
            tcp.write_all(&auth).await?;
            let mut status = [0u8; 2];
            tcp.read_exact(&mut status).await?;
            if status[1] != 0 {
                bail!("the SOCKS5 proxy refused the user name and password");
            }
        }
        (USER_PASSWORD, None) => {
            bail!("the SOCKS5 proxy asks for a user name and password; give them as socks5h://USER:PASSWORD@HOST:PORT")
        }
        _ => bail!("the SOCKS5 proxy accepts none of the authentication methods offered"),
    }
    // CONNECT, to an address or a domain name.
    let mut request = vec![VERSION, 1, 0];
    let address = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) if remote_dns => None,
        Err(_) => Some(
            tokio::net::lookup_host((host, port))
                .await
                .with_context(|| format!("cannot resolve {host}"))?
                .next()
                .ok_or_else(|| anyhow!("{host} has no address"))?
                .ip(),
        ),
    };
    match address {
        Some(std::net::IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Some(std::net::IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        None => {
            let name = host.as_bytes();
            if name.len() > 255 {
                bail!("the host name is longer than SOCKS5's 255 bytes");
            }
            request.push(3);
            request.push(name.len() as u8);
            request.extend_from_slice(name);
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    tcp.write_all(&request).await?;
    let mut reply = [0u8; 4];
    tcp.read_exact(&mut reply).await?;
    if reply[1] != 0 {
        let why = match reply[1] {
            1 => "general failure",
            2 => "connection not allowed by its rules",
            3 => "network unreachable",
            4 => "host unreachable",
            5 => "connection refused",
            6 => "TTL expired",
            7 => "command not supported",
            8 => "address type not supported",
            _ => "unknown reply",
        };
        bail!(
            "the SOCKS5 proxy could not connect: {why} (reply {})",
            reply[1]
        );
    }
    // The bound address that follows, which nothing here needs.
    let rest = match reply[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => tcp.read_u8().await? as usize + 2,
        other => bail!("the SOCKS5 reply has an unknown address type {other}"),
    };
    let mut bound = vec![0u8; rest];
    tcp.read_exact(&mut bound).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(proxy: Option<&str>, socks5: Option<&str>, no_proxy: bool) -> ProxyArgs {
        ProxyArgs {
            proxy: proxy.map(str::to_owned),
            socks5: socks5.map(str::to_owned),
            no_proxy,
        }
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_scheme_picks_the_variable_and_all_proxy_is_the_fallback() {
        let vars = [
            ("HTTPS_PROXY", "http://secure:3128"),
            ("http_proxy", "plain:8080"),
            ("ALL_PROXY", "socks5://any"),
        ];
        let wss = for_target(&args(None, None, false), "h", 443, true, env(&vars)).unwrap();
        let wss = wss.unwrap();
        assert_eq!(
            (wss.host.as_str(), wss.port, wss.kind),
            ("secure", 3128, Kind::Http)
        );
        assert_eq!(wss.source, "HTTPS_PROXY");
        let ws = for_target(&args(None, None, false), "h", 80, false, env(&vars)).unwrap();
        assert_eq!(ws.unwrap().port, 8080);
        let only_all = [("ALL_PROXY", "socks5://any")];
        let p = for_target(&args(None, None, false), "h", 80, false, env(&only_all)).unwrap();
        let p = p.unwrap();
        assert_eq!((p.port, p.kind), (1080, Kind::Socks5 { remote_dns: false }));
        // Flags win, and --no-proxy ignores the environment.
        let p = for_target(
            &args(None, Some("s:9050"), false),
            "h",
            80,
            false,
            env(&vars),
        );
        let p = p.unwrap().unwrap();
        assert_eq!((p.port, p.kind), (9050, Kind::Socks5 { remote_dns: true }));
        assert_eq!(
            for_target(&args(None, None, true), "h", 80, false, env(&vars)).unwrap(),
            None
        );
    }

    #[test]
    fn no_proxy_matches_names_suffixes_addresses_and_ports() {
        assert!(bypasses("localhost, .internal", "db.internal", 80));
        assert!(bypasses("example.com", "api.example.com", 80));
        assert!(!bypasses("example.com", "badexample.com", 80));
        assert!(bypasses("127.0.0.1", "127.0.0.1", 9000));
        assert!(bypasses("example.com:8080", "example.com", 8080));
        assert!(!bypasses("example.com:8080", "example.com", 80));
        assert!(bypasses("[::1]:80", "::1", 80));
        assert!(bypasses("::1", "::1", 1));
        assert!(bypasses("*", "anything", 1));
        assert!(!bypasses("", "anything", 1));
        let vars = [("https_proxy", "p:1"), ("NO_PROXY", "example.com")];
        let p = for_target(
            &args(None, None, false),
            "example.com",
            443,
            true,
            env(&vars),
        );
        assert_eq!(p.unwrap(), None);
    }

    #[test]
    fn proxy_urls_carry_credentials_and_bad_ones_name_their_source() {
        let p = parse("--proxy", "http://us%40er:p%3Ass@proxy:3128").unwrap();
        assert_eq!(p.credentials, Some(("us@er".to_owned(), "p:ss".to_owned())));
        let e = parse("HTTPS_PROXY", "ftp://x").unwrap_err().to_string();
        assert!(
            e.starts_with("HTTPS_PROXY \"ftp://x\": unknown proxy scheme ftp://"),
            "{e}"
        );
        let e = parse("--proxy", "https://x").unwrap_err().to_string();
        assert!(e.contains("not supported"), "{e}");
        let e = parse("--proxy", "http://").unwrap_err().to_string();
        assert!(e.starts_with("--proxy"), "{e}");
    }
}
