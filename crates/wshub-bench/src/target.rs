//! The server under test: a `ws://` URL resolved once to a socket address.

use std::net::{SocketAddr, ToSocketAddrs};

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
        let wshub::WsUrl {
            host,
            port,
            tls,
            authority,
            resource,
        } = wshub::WsUrl::parse(url).map_err(|e| match e {
            wshub::Error::InvalidUrl { reason, .. } => invalid(reason),
            _ => invalid("not a ws:// URL"),
        })?;
        if tls {
            return Err(invalid("wss:// (TLS) is not supported yet; use ws://"));
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
