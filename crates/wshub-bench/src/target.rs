//! The server under test: a `ws://` or `wss://` URL resolved once to a
//! socket address.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use wshub::rustls::pki_types::ServerName;
use wshub::rustls::ClientConfig;

use crate::Error;

/// Where every connection goes and what it asks for.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The resolved address (the first one the resolver gives).
    pub(crate) addr: SocketAddr,
    /// `Host` header value: host, and `:port` when not 80.
    pub(crate) authority: String,
    /// Request target: path and query.
    pub(crate) resource: String,
    /// For `wss://`: what each connection's TLS handshake uses.
    pub(crate) tls: Option<TargetTls>,
}

/// The TLS side of a `wss://` target.
#[derive(Debug, Clone)]
pub(crate) struct TargetTls {
    pub(crate) config: Arc<ClientConfig>,
    /// The URL's host: SNI, and the name the certificate must be valid for.
    pub(crate) server_name: ServerName<'static>,
}

impl Target {
    /// Parses and resolves `url`; a `wss://` one uses `tls`, or the system's
    /// roots without it.
    pub(crate) fn resolve(url: &str, tls: Option<&Arc<ClientConfig>>) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let wshub::WsUrl {
            host,
            port,
            tls: tls_url,
            authority,
            resource,
        } = wshub::WsUrl::parse(url).map_err(|e| match e {
            wshub::Error::InvalidUrl { reason, .. } => invalid(reason),
            _ => invalid("not a ws:// URL"),
        })?;
        let tls = if tls_url {
            let server_name = ServerName::try_from(host.clone())
                .map_err(|_| invalid("the host is not a valid TLS server name"))?;
            let config = tls.cloned().unwrap_or_else(|| {
                Arc::new(wshub::tls::client_config(
                    wshub::tls::native_roots().clone(),
                ))
            });
            Some(TargetTls {
                config,
                server_name,
            })
        } else {
            None
        };
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
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_addresses_and_keeps_path_and_query() {
        let t = Target::resolve("ws://127.0.0.1:9300/echo?x=1", None).unwrap();
        assert_eq!(t.addr, "127.0.0.1:9300".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:9300");
        assert_eq!(t.resource, "/echo?x=1");
        let t = Target::resolve("ws://[::1]", None).unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.resource, "/");
    }

    #[test]
    fn refuses_other_schemes() {
        for bad in ["http://a/", "ws://a/#f", "nonsense"] {
            assert!(
                matches!(Target::resolve(bad, None), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }
}
