//! [`RedisConfig`]: which Redis the engine runs on (one server or a
//! cluster's seed nodes) and what its `rediss://` connections trust.

use std::time::Duration;

use super::connection;

/// [`HubConfig::redis`](crate::HubConfig::redis): run the hub's rooms on a
/// Redis server, or a Redis Cluster, shared by several hub nodes.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[[user]:password@]host:port[/db]`, or `rediss://…` for TLS:
    /// the server; on a cluster, its first seed node.
    pub url: String,
    /// A Redis Cluster's seed nodes (URLs as `url`): the engine learns the
    /// other nodes and the slot map from them. Empty: one server, `url`.
    pub cluster_seeds: Vec<String>,
    /// Where the node's subscriber connects, if not to `url`: the same
    /// Redis reached another way (a proxy that passes Pub/Sub). Default:
    /// `url`. One server only.
    pub subscriber_url: Option<String>,
    /// Certificates for `rediss://`.
    pub tls: RedisTls,
    /// How long a member's presence entry outlives its node's last renewal
    /// (every third of it): the members of a node that died leave their
    /// rooms, on every other node, this long after. Default: 30 s.
    pub presence_ttl: Duration,
}

/// Default of [`RedisConfig::presence_ttl`].
pub const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(30);

/// [`RedisConfig::tls`]: what a `rediss://` connection trusts and shows.
/// Without any of it, the server's certificate must chain to one of the
/// platform's roots.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisTls {
    /// CA certificates (PEM) trusted besides the platform's roots: a
    /// private Redis' CA.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate chain and its private key (both PEM), for a
    /// Redis that asks for one (`tls-auth-clients yes`).
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may carry a password.
        let hide = |url: &str| match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}***{}", &url[..scheme + 3], &url[at..])
            }
            _ => url.to_owned(),
        };
        f.debug_struct("RedisConfig")
            .field("url", &hide(&self.url))
            .field(
                "cluster_seeds",
                &self
                    .cluster_seeds
                    .iter()
                    .map(|u| hide(u))
                    .collect::<Vec<_>>(),
            )
            .field("subscriber_url", &self.subscriber_url.as_deref().map(hide))
            .field("tls", &self.tls)
            .field("presence_ttl", &self.presence_ttl)
            .finish()
    }
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca_pem", &self.ca_pem.as_ref().map(|pem| pem.len()))
            .field("client_identity", &self.client_identity.is_some())
            .finish()
    }
}

impl RedisConfig {
    /// The `rediss://` certificates redis-rs takes, if any are set: the CA
    /// beside the platform's roots (redis-rs' `root_cert` replaces them,
    /// so they are given too), and the client identity.
    pub(crate) fn tls_certificates(&self) -> Option<redis::TlsCertificates> {
        if self.tls.ca_pem.is_none() && self.tls.client_identity.is_none() {
            return None;
        }
        let root_cert = self.tls.ca_pem.as_ref().map(|ca| {
            let mut roots = connection::platform_roots_pem();
            roots.extend_from_slice(ca);
            roots
        });
        Some(redis::TlsCertificates {
            client_tls: self.tls.client_identity.as_ref().map(|(cert, key)| {
                redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }
            }),
            root_cert,
        })
    }

    /// The Redis server at `url`.
    ///
    /// # Errors
    /// A message saying what is wrong with `url`, if it is not a Redis URL
    /// (`redis://host:port`, `redis://:password@host:port/db`,
    /// `rediss://…`).
    pub fn new(url: impl Into<String>) -> Result<Self, String> {
        let url = url.into();
        check_url(&url)?;
        Ok(Self {
            url,
            cluster_seeds: Vec::new(),
            subscriber_url: None,
            tls: RedisTls::default(),
            presence_ttl: DEFAULT_PRESENCE_TTL,
        })
    }

    /// Sets [`RedisConfig::presence_ttl`].
    ///
    /// # Errors
    /// If `ttl` is under 300 ms (renewals every 100 ms would busy Redis)
    /// or over a day.
    pub fn with_presence_ttl(mut self, ttl: Duration) -> Result<Self, String> {
        if !(Duration::from_millis(300)..=Duration::from_secs(86_400)).contains(&ttl) {
            return Err(format!(
                "the presence ttl must be from 300ms to 1d, not {ttl:?}"
            ));
        }
        self.presence_ttl = ttl;
        Ok(self)
    }

    /// The Redis Cluster that `seeds` (one or more of its nodes' URLs, all
    /// `redis://` or all `rediss://`, with the same password) belong to.
    ///
    /// # Errors
    /// A message saying what to fix: no seed, a seed that is not a Redis
    /// URL, or seeds that disagree on TLS or credentials.
    pub fn cluster<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> Result<Self, String> {
        let seeds: Vec<String> = seeds.into_iter().map(Into::into).collect();
        let Some(first) = seeds.first() else {
            return Err(
                "a Redis Cluster needs at least one seed node, e.g. redis://10.0.0.1:7000".into(),
            );
        };
        for seed in &seeds {
            check_url(seed)?;
        }
        redis::cluster::ClusterClient::new(seeds.iter().map(String::as_str)).map_err(|e| {
            format!("the seed nodes do not describe one cluster ({e}); give them the same scheme (redis:// or rediss://) and the same user and password")
        })?;
        Ok(Self {
            url: first.clone(),
            cluster_seeds: seeds,
            subscriber_url: None,
            tls: RedisTls::default(),
            presence_ttl: DEFAULT_PRESENCE_TTL,
        })
    }

    /// The subscriber connects to `url` instead: see
    /// [`RedisConfig::subscriber_url`].
    ///
    /// # Errors
    /// As [`RedisConfig::new`].
    pub fn with_subscriber_url(mut self, url: impl Into<String>) -> Result<Self, String> {
        self.subscriber_url = Some(Self::new(url)?.url);
        Ok(self)
    }

    /// `rediss://` trusts the CA certificates in `pem` besides the
    /// platform's roots.
    ///
    /// # Errors
    /// If `pem` holds no certificate, or one that does not parse.
    pub fn with_ca_pem(mut self, pem: Vec<u8>) -> Result<Self, String> {
        connection::parse_certificates(&pem)?;
        self.tls.ca_pem = Some(pem);
        Ok(self)
    }

    /// `rediss://` shows this client certificate chain (PEM) and proves it
    /// with `key_pem` (PEM, PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    /// If either does not parse.
    pub fn with_client_identity(
        mut self,
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
    ) -> Result<Self, String> {
        connection::parse_certificates(&cert_pem)?;
        connection::parse_private_key(&key_pem)?;
        self.tls.client_identity = Some((cert_pem, key_pem));
        Ok(self)
    }
}

/// `Ok` if `url` is a Redis URL; otherwise what to write instead.
fn check_url(url: &str) -> Result<(), String> {
    redis::Client::open(url).map(drop).map_err(|e| {
        format!("{url:?} is not a Redis URL ({e}); use redis://host:port, redis://:password@host:port/db or rediss://host:port for TLS")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_needs_seeds_that_agree_and_bad_ones_say_what_to_fix() {
        let config = RedisConfig::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]);
        let config = config.unwrap();
        assert_eq!(config.url, "redis://10.0.0.1:7000");
        assert_eq!(config.cluster_seeds.len(), 2);
        let none = RedisConfig::cluster(Vec::<String>::new()).unwrap_err();
        assert!(none.contains("at least one seed"), "{none}");
        let bad = RedisConfig::cluster(["http://10.0.0.1:7000"]).unwrap_err();
        assert!(bad.contains("redis://host:port"), "{bad}");
        let mixed =
            RedisConfig::cluster(["redis://10.0.0.1:7000", "rediss://10.0.0.2:7000"]).unwrap_err();
        assert!(mixed.contains("same scheme"), "{mixed}");
    }

    #[test]
    fn tls_files_are_checked_and_passwords_stay_out_of_debug() {
        let config = RedisConfig::new("rediss://:secret@127.0.0.1:6380").unwrap();
        assert!(!format!("{config:?}").contains("secret"), "{config:?}");
        assert!(config.tls_certificates().is_none());
        let not_pem = config.clone().with_ca_pem(b"junk".to_vec()).unwrap_err();
        assert!(not_pem.contains("PEM"), "{not_pem}");
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap();
        let with_ca = config.with_ca_pem(ca.cert.pem().into_bytes()).unwrap();
        let certs = with_ca.tls_certificates().unwrap();
        let bundle = String::from_utf8(certs.root_cert.unwrap()).unwrap();
        assert!(bundle.ends_with(&ca.cert.pem()), "the CA is in the bundle");
        let bad_key = with_ca
            .with_client_identity(ca.cert.pem().into_bytes(), b"junk".to_vec())
            .unwrap_err();
        assert!(bad_key.contains("private key"), "{bad_key}");
    }
}
