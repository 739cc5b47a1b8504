//! The server side of TLS for the TLS peers, as tokio-rustls' documentation
//! sets it up: a `ServerConfig` from a PEM certificate chain and key, with
//! the ring provider, TLS 1.2 and 1.3, and ALPN `http/1.1`. Everything else
//! is rustls' default, session resumption included (a stateful in-memory
//! cache of 256 sessions; TLS 1.3 clients get 2 tickets into it per
//! handshake).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::args::TlsFiles;

/// Loads `files` into a server configuration, or exits with a message
/// naming the file at fault.
pub fn server_config(name: &str, files: &TlsFiles) -> Arc<ServerConfig> {
    let fail = |path: &Path, e: &dyn std::fmt::Display| -> ! {
        eprintln!("{name}: {}: {e}", path.display());
        std::process::exit(2)
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| fail(&files.cert, &e));
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap_or_else(|e| fail(&files.key, &e));
    // rustls 0.23.48 deprecated the ring provider for its missing
    // post-quantum key exchange; wshub uses it too (aws-lc-rs needs cmake
    // and clang), so both sides negotiate the same X25519.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap_or_else(|e| fail(&files.key, &e));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}
