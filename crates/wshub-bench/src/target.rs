//! The server under test: a `ws://` or `wss://` URL resolved once to a
//! socket address.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use wshub::rustls::client::Resumption;
use wshub::rustls::pki_types::ServerName;
use wshub::rustls::ClientConfig;

use crate::{Error, TlsResumption};

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
    resumption: TlsResumption,
}

impl Target {
    /// Parses and resolves `url`; a `wss://` one uses `tls`, or the system's
    /// roots without it, and resumes sessions as `resumption` says.
    pub(crate) fn resolve(
        url: &str,
        tls: Option<&Arc<ClientConfig>>,
        resumption: TlsResumption,
    ) -> Result<Self, Error> {
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
            let mut config = tls.cloned().unwrap_or_else(|| {
                Arc::new(wshub::tls::client_config(
                    wshub::tls::native_roots().clone(),
                ))
            });
            if resumption == TlsResumption::Off {
                Arc::make_mut(&mut config).resumption = Resumption::disabled();
            }
            Some(TargetTls {
                config,
                server_name,
                resumption,
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

impl Target {
    /// The target as one client that reconnects sees it: under
    /// [`TlsResumption::PerConnection`], with a session cache of its own;
    /// otherwise the same as `self`.
    pub(crate) fn for_one_client(&self) -> Self {
        let mut target = self.clone();
        if let Some(tls) = &mut target.tls {
            if tls.resumption == TlsResumption::PerConnection {
                let mut config = ClientConfig::clone(&tls.config);
                // One server name; rustls keeps up to 8 tickets for it.
                config.resumption = Resumption::in_memory_sessions(1);
                tls.config = Arc::new(config);
            }
        }
        target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_addresses_and_keeps_path_and_query() {
        let t = Target::resolve(
            "ws://127.0.0.1:9300/echo?x=1",
            None,
            TlsResumption::default(),
        )
        .unwrap();
        assert_eq!(t.addr, "127.0.0.1:9300".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:9300");
        assert_eq!(t.resource, "/echo?x=1");
        let t = Target::resolve("ws://[::1]", None, TlsResumption::default()).unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.resource, "/");
    }

    #[test]
    fn each_client_gets_its_own_session_cache_only_under_per_connection() {
        let base = Arc::new(wshub::tls::client_config(
            wshub::rustls::RootCertStore::empty(),
        ));
        let own = |resumption| {
            let target = Target::resolve("wss://127.0.0.1:9300/", Some(&base), resumption).unwrap();
            let client = target.for_one_client();
            !Arc::ptr_eq(&target.tls.unwrap().config, &client.tls.unwrap().config)
        };
        // A config of its own (its own cache) per client, or the run's one.
        assert!(own(TlsResumption::PerConnection));
        assert!(!own(TlsResumption::Shared));
        assert!(!own(TlsResumption::Off));
        // `Off` changes the run's config; the others keep the caller's.
        let kept = |resumption| {
            let target = Target::resolve("wss://127.0.0.1:9300/", Some(&base), resumption).unwrap();
            Arc::ptr_eq(&base, &target.tls.unwrap().config)
        };
        assert!(kept(TlsResumption::PerConnection));
        assert!(kept(TlsResumption::Shared));
        assert!(!kept(TlsResumption::Off));
    }

    #[test]
    fn refuses_other_schemes() {
        for bad in ["http://a/", "ws://a/#f", "nonsense"] {
            assert!(
                matches!(
                    Target::resolve(bad, None, TlsResumption::default()),
                    Err(Error::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
    }
}
