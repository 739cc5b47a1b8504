//! The server under test: a `ws://` URL resolved once to a socket address.

use std::net::{SocketAddr, ToSocketAddrs};

use url::{Host, Url};

use crate::Error;

/// Where every connection goes and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The resolved address (the first one the resolver gives).
    pub(crate) addr: SocketAddr,
    /// `Host` header value: host, and `:port` when not 80.
    pub(crate) authority: String,
    /// Request target: path and query.
    pub(crate) resource: String,
}

impl Target {
    /// Parses and resolves `url`.
    pub(crate) fn resolve(url: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = Url::parse(url).map_err(|_| invalid("not a URL"))?;
        match parsed.scheme() {
            "ws" => {}
            "wss" => return Err(invalid("wss:// (TLS) is not supported yet; use ws://")),
            _ => return Err(invalid("the scheme must be ws://")),
        }
        if parsed.fragment().is_some() {
            return Err(invalid("a WebSocket URL has no #fragment (RFC 6455 §3)"));
        }
        let host = match parsed.host() {
            Some(Host::Domain(d)) => d.to_owned(),
            Some(Host::Ipv4(a)) => a.to_string(),
            Some(Host::Ipv6(a)) => a.to_string(),
            None => return Err(invalid("missing host")),
        };
        let port = parsed.port().unwrap_or(80);
        let host_str = parsed.host_str().unwrap_or_default();
        let authority = match parsed.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.to_owned(),
        };
        let mut resource = parsed.path().to_owned();
        if resource.is_empty() {
            resource.push('/');
        }
        if let Some(q) = parsed.query() {
            resource.push('?');
            resource.push_str(q);
        }
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .and_then(|mut addrs| {
                addrs.next().ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no address found")
                })
            })
            .map_err(|source| Error::Resolve {
                host: format!("{host}:{port}"),
                source,
            })?;
        Ok(Self {
            addr,
            authority,
            resource,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_addresses_and_keeps_path_and_query() {
        let t = Target::resolve("ws://127.0.0.1:9300/echo?x=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9300".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:9300");
        assert_eq!(t.resource, "/echo?x=1");
        let t = Target::resolve("ws://[::1]").unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.resource, "/");
    }

    #[test]
    fn refuses_other_schemes() {
        for bad in ["http://a/", "wss://a/", "ws://a/#f", "nonsense"] {
            assert!(
                matches!(Target::resolve(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }
}
