//! TLS with [rustls] (the `rustls` feature, on by default): the client's
//! default configuration for `wss://`, and a server's certificate loading.
//!
//! Cryptography is rustls' **ring** provider: aws-lc-rs, rustls' default,
//! needs cmake and a C compiler able to build it (clang on some targets) at
//! build time; ring builds with the C compiler `cc` finds.
//!
//! Which roots a client trusts when it is given no
//! [`rustls::ClientConfig`] is a feature of this crate, as in
//! the rest of the ecosystem:
//!
//! | feature | roots | |
//! |---|---|---|
//! | `rustls-native-roots` (default) | the operating system's store, [`native_roots()`] | follows the OS's updates and a company's own CA installed there |
//! | `rustls-webpki-roots` | Mozilla's, compiled in, [`webpki_roots()`] | for images without a CA bundle (`FROM scratch`); updated with the crate |
//! | both | both | |
//! | `rustls` alone | none: `wss://` needs [`ClientBuilder::tls_config`](crate::ClientBuilder::tls_config), else [`Error::TlsNoRoots`](crate::Error::TlsNoRoots) | |
//!
//! The system's roots are read once per process by [rustls-native-certs]
//! (on Debian, the `ca-certificates` bundle under `/etc/ssl/certs`). It was
//! chosen over
//! rustls-platform-verifier because the latter hands verification to the
//! platform's verifier (Security.framework, CryptoAPI, Android's
//! `X509TrustManager`) and on Linux falls back to this same store: on our
//! Linux servers it would add a layer and dependencies for the same roots,
//! while `rustls-native-certs` keeps every check (expiry, name, chain) in
//! webpki, whose errors read the same everywhere. Revocation (OCSP, CRLs) is
//! not checked either way on Linux.
//!
//! A server loads its certificate chain and key from PEM files:
//!
//! ```no_run
//! # fn run() -> Result<(), wshub::tls::TlsConfigError> {
//! let config = wshub::tls::server_config("cert.pem".as_ref(), "key.pem".as_ref())?;
//! let acceptor = tokio_rustls::TlsAcceptor::from(config);
//! # drop(acceptor); Ok(()) }
//! ```
//!
//! [rustls-native-certs]: https://docs.rs/rustls-native-certs

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The Application-Layer Protocol Negotiation id both sides offer: the
/// opening handshake is HTTP/1.1 (RFC 6455 §4.1; RFC 7301).
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// rustls' ring provider: every cipher suite and key exchange it supports,
/// the key exchanges in the order X25519, P-256, P-384 (no post-quantum
/// hybrid such as X25519MLKEM768).
///
/// The order counts on the client side: a client sends its key share for
/// the first, and a server (rustls or OpenSSL) takes the client's first
/// group that it supports. rustls 0.23.48
/// lists P-384 first in the ring provider, and ring's P-384 has no assembly:
/// with it first, `perf` put about 80% of `wshub serve`'s CPU time in
/// ring's P-384 code during wss handshakes (`bench/compare`'s
/// `wss-connect-50`, where `wshub bench` is the client), and as much of the
/// client's. Browsers offer X25519 first.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::kx_group;
    // rustls 0.23.48 deprecated this for the missing post-quantum key
    // exchange; aws-lc-rs, which has it, needs cmake and clang to build.
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    Arc::new(provider)
}

/// A client configuration trusting `roots`, TLS 1.2 and 1.3, ALPN
/// `http/1.1`, no client certificate. Start from this to add roots or a
/// client certificate, then hand it to
/// [`ClientBuilder::tls_config`](crate::ClientBuilder::tls_config).
pub fn client_config(roots: RootCertStore) -> ClientConfig {
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    config
}

/// The roots of the operating system's store ([rustls-native-certs]), read
/// on first use and kept for the life of the process. Certificates the
/// store holds but webpki cannot parse are skipped; if none is usable,
/// every server fails verification with "invalid peer certificate:
/// UnknownIssuer" and a warning is logged once.
///
/// [rustls-native-certs]: https://docs.rs/rustls-native-certs
#[cfg(feature = "rustls-native-roots")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls-native-roots")))]
pub fn native_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!(
                errors = ?found.errors,
                ignored,
                "no usable root certificate in the system store: wss:// servers cannot be verified (install ca-certificates, or pass a ClientConfig)"
            );
        }
        roots
    })
}

/// Mozilla's root certificates as the [webpki-roots] crate compiles them
/// in: the same on every machine, whatever its CA bundle.
///
/// [webpki-roots]: https://docs.rs/webpki-roots
#[cfg(feature = "rustls-webpki-roots")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls-webpki-roots")))]
pub fn webpki_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    })
}

/// The configuration a `wss://` connection uses when none was given:
/// [`client_config`] of the roots the features build in (the table of the
/// module's documentation), built once; `None` with no roots built in.
pub(crate) fn default_client_config() -> Option<Arc<ClientConfig>> {
    static CONFIG: OnceLock<Option<Arc<ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            #[allow(unused_mut)]
            let mut roots = RootCertStore::empty();
            #[cfg(feature = "rustls-native-roots")]
            roots.roots.extend(native_roots().roots.iter().cloned());
            #[cfg(feature = "rustls-webpki-roots")]
            roots.roots.extend(webpki_roots().roots.iter().cloned());
            let built_in = cfg!(any(
                feature = "rustls-native-roots",
                feature = "rustls-webpki-roots"
            ));
            built_in.then(|| Arc::new(client_config(roots)))
        })
        .clone()
}

/// `config` with ALPN `http/1.1` when it offers no protocol; as it is
/// otherwise.
pub(crate) fn with_alpn(config: Arc<ClientConfig>) -> Arc<ClientConfig> {
    if !config.alpn_protocols.is_empty() {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Arc::new(config)
}

/// Why a certificate chain, key or root could not be loaded. Each names
/// the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not PEM, or a PEM block in it is damaged.
    #[error("{} is not valid PEM", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser found.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The file holds no `CERTIFICATE` block.
    #[error("{} holds no certificate (a PEM block BEGIN CERTIFICATE)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no private key block.
    #[error("{} holds no private key (a PEM block BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY)", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is not the one of the chain's first certificate.
    #[error("the private key in {} does not match the first certificate of {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate chain's file.
        cert: PathBuf,
        /// The key's file.
        key: PathBuf,
    },
    /// rustls refused the key or a certificate: an unsupported key type, or
    /// a root webpki cannot parse.
    #[error("{} cannot be used", path.display())]
    Rejected {
        /// The file of the key (or, for a root, of the certificate).
        path: PathBuf,
        /// What rustls found.
        #[source]
        source: rustls::Error,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| TlsConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate of the PEM file `path`, in file order (for a chain:
/// the server's own first, then the intermediates).
///
/// # Errors
/// [`TlsConfigError::Read`], [`TlsConfigError::Pem`],
/// [`TlsConfigError::NoCertificate`].
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsConfigError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key of the PEM file `path`: PKCS#8, PKCS#1 (RSA) or
/// SEC1 (EC).
///
/// # Errors
/// [`TlsConfigError::Read`], [`TlsConfigError::Pem`],
/// [`TlsConfigError::NoPrivateKey`].
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| match source {
        rustls_pki_types::pem::Error::NoItemsFound => TlsConfigError::NoPrivateKey {
            path: path.to_owned(),
        },
        source => TlsConfigError::Pem {
            path: path.to_owned(),
            source,
        },
    })
}

/// The certificates of the PEM file `path` as a root store, e.g. a private
/// CA to trust besides (or instead of) [`native_roots`].
///
/// # Errors
/// As [`load_certificates`], and [`TlsConfigError::Rejected`] for a
/// certificate webpki cannot use as a trust anchor.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certificates(path)? {
        roots.add(cert).map_err(|source| TlsConfigError::Rejected {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// A server configuration with the chain of `cert_path` and the key of
/// `key_path` (both PEM): TLS 1.2 and 1.3 only, ALPN `http/1.1`, no client
/// certificates, and session resumption both ways rustls offers: its
/// stateful in-memory cache of 256 sessions (TLS 1.2 session ids) and
/// stateless tickets (TLS 1.3, and TLS 1.2 clients that ask), whose key
/// rotates every 6 hours.
///
/// # Errors
/// As [`load_certificates`] and [`load_private_key`], and
/// [`TlsConfigError::KeyMismatch`] for a key that is not the first
/// certificate's, [`TlsConfigError::Rejected`] (naming the key file) for a
/// key rustls cannot use.
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let certs = load_certificates(cert_path)?;
    let key = load_private_key(key_path)?;
    let rejected = |source| match source {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsConfigError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            }
        }
        source => TlsConfigError::Rejected {
            path: key_path.to_owned(),
            source,
        },
    };
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(rejected)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(rejected)?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(rejected)?;
    Ok(Arc::new(config))
}

/// The error inside `err` when it is rustls' (a failed handshake as
/// tokio-rustls reports it), for [`Error::Tls`](crate::Error::Tls).
pub(crate) fn classify(err: io::Error) -> crate::Error {
    if err
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>())
    {
        let inner = err.into_inner().expect("checked just above");
        return crate::Error::Tls(inner);
    }
    crate::Error::Io(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "rustls-webpki-roots")]
    #[test]
    fn webpki_roots_are_mozillas_and_in_the_default_client_config() {
        // Mozilla's program holds well over 100 roots; ISRG Root X1 (Let's
        // Encrypt) among them.
        assert!(webpki_roots().len() > 100, "{}", webpki_roots().len());
        let isrg = webpki_roots().roots.iter().any(|anchor| {
            anchor
                .subject
                .as_ref()
                .windows(b"ISRG Root X1".len())
                .any(|w| w == b"ISRG Root X1")
        });
        assert!(isrg, "ISRG Root X1 is among the roots");
        assert!(default_client_config().is_some());
    }

    /// A fresh directory under the system's temporary one, for this test;
    /// removed when dropped.
    fn scratch(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("wshub-tls-{name}-"))
            .tempdir()
            .unwrap()
    }

    /// A self-signed certificate for `localhost`: (certificate PEM, key PEM).
    fn self_signed() -> (String, String) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        (cert.cert.pem(), cert.key_pair.serialize_pem())
    }

    #[test]
    fn key_exchange_prefers_x25519() {
        let names: Vec<_> = crypto_provider()
            .kx_groups
            .iter()
            .map(|g| g.name())
            .collect();
        assert_eq!(
            names,
            [
                rustls::NamedGroup::X25519,
                rustls::NamedGroup::secp256r1,
                rustls::NamedGroup::secp384r1
            ]
        );
    }

    #[test]
    fn loads_a_chain_and_key_with_alpn_http_1_1_and_tickets() {
        let scratch = scratch("good");
        let dir = scratch.path();
        let (cert, key) = self_signed();
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        let config = server_config(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        assert!(config.ticketer.enabled());
    }

    #[test]
    fn each_error_names_the_file_and_what_is_wrong() {
        let scratch = scratch("bad");
        let dir = scratch.path();
        let (cert, key) = self_signed();
        let (other_cert, _) = self_signed();
        for (name, text) in [
            ("cert.pem", cert.as_str()),
            ("key.pem", key.as_str()),
            ("other.pem", other_cert.as_str()),
            ("empty.pem", "not pem at all\n"),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let report = |e: TlsConfigError| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        };
        let missing = server_config(&dir.join("missing.pem"), &dir.join("key.pem")).unwrap_err();
        assert!(matches!(missing, TlsConfigError::Read { .. }));
        let text = report(missing);
        assert!(
            text.starts_with("cannot read ") && text.contains("missing.pem: "),
            "{text}"
        );
        let no_cert = server_config(&dir.join("empty.pem"), &dir.join("key.pem")).unwrap_err();
        assert!(report(no_cert).contains("empty.pem holds no certificate"));
        let no_key = server_config(&dir.join("cert.pem"), &dir.join("cert.pem")).unwrap_err();
        assert!(report(no_key).contains("cert.pem holds no private key"));
        let mismatch = server_config(&dir.join("other.pem"), &dir.join("key.pem")).unwrap_err();
        let text = report(mismatch);
        assert!(
            text.contains("the private key in ")
                && text.contains("key.pem does not match the first certificate of ")
                && text.ends_with("other.pem"),
            "{text}"
        );
    }
}
