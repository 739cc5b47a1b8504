//! TLS flags checked into configurations: `serve --tls-cert/--tls-key`
//! (and their reload on SIGHUP), and the client side's `--ca`, `--cert`,
//! `--key` and `--insecure` (`connect`, `bench`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use wshub::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use wshub::rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use wshub::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use wshub::rustls::{self, ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use wshub::tls::TlsConfigError;
use wshub_hub::ServerTls;

use crate::args::{ClientTlsArgs, ServeTlsArgs};

/// The server configuration of `--tls-cert` and `--tls-key`, or `None`
/// without them.
pub(crate) fn server_tls(args: &ServeTlsArgs) -> Result<Option<ServerTls>> {
    match (&args.tls_cert, &args.tls_key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(ServerTls::new(load_server(cert, key)?))),
        (Some(_), None) => anyhow::bail!("--tls-cert needs --tls-key: give both or neither"),
        (None, Some(_)) => anyhow::bail!("--tls-key needs --tls-cert: give both or neither"),
    }
}

/// The chain and key as a server configuration; an error names the flag
/// and the file.
fn load_server(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    wshub::tls::server_config(cert, key).map_err(|e| {
        let (flag, path) = if file_of(&e) == Some(key) {
            ("--tls-key", key)
        } else {
            ("--tls-cert", cert)
        };
        anyhow::Error::new(e).context(format!("{flag} {}", path.display()))
    })
}

/// The file an error is about; for a mismatch, the key.
fn file_of(e: &TlsConfigError) -> Option<&Path> {
    match e {
        TlsConfigError::Read { path, .. }
        | TlsConfigError::Pem { path, .. }
        | TlsConfigError::NoCertificate { path }
        | TlsConfigError::NoPrivateKey { path }
        | TlsConfigError::Rejected { path, .. } => Some(path),
        TlsConfigError::KeyMismatch { key, .. } => Some(key),
        _ => None,
    }
}

/// On each SIGHUP, loads `--tls-cert` and `--tls-key` again and serves them
/// to new handshakes; open connections keep theirs. A file that cannot be
/// loaded is logged and the configuration in use is kept.
#[cfg(unix)]
pub(crate) fn reload_on_sighup(args: &ServeTlsArgs, tls: ServerTls) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let (Some(cert), Some(key)) = (args.tls_cert.clone(), args.tls_key.clone()) else {
        return Ok(());
    };
    let mut hangups = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            // A blocking read of two small files; rare, so on the runtime.
            match load_server(&cert, &key) {
                Ok(config) => {
                    tls.replace(config);
                    tracing::info!(cert = %cert.display(), key = %key.display(), "SIGHUP: TLS certificate and key reloaded");
                }
                Err(e) => tracing::error!(
                    error = format!("{e:#}"),
                    "SIGHUP: TLS certificate and key not reloaded; the previous ones stay in use"
                ),
            }
        }
    });
    Ok(())
}

/// The client configuration of `--ca`, `--cert`, `--key` and `--insecure`,
/// or `None` when none is given (the library's default: the system's
/// roots). `--insecure` prints its warning here.
pub(crate) fn client_config(args: &ClientTlsArgs) -> Result<Option<Arc<ClientConfig>>> {
    if args.ca.is_none() && args.cert.is_none() && !args.insecure {
        return Ok(None);
    }
    let provider = wshub::tls::crypto_provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3");
    let builder = if args.insecure {
        eprintln!(
            "warning: --insecure: the server's certificate is not verified; anyone on the path can read and change this connection"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    } else {
        let roots = match &args.ca {
            Some(ca) => {
                wshub::tls::load_roots(ca).with_context(|| format!("--ca {}", ca.display()))?
            }
            None => wshub::tls::native_roots().clone(),
        };
        builder.with_root_certificates(roots)
    };
    let mut config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let chain = wshub::tls::load_certificates(cert)
                .with_context(|| format!("--cert {}", cert.display()))?;
            let key_der = wshub::tls::load_private_key(key)
                .with_context(|| format!("--key {}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .with_context(|| format!("--key {}: not usable with --cert", key.display()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => anyhow::bail!("--cert and --key go together: give both or neither"),
    };
    config.alpn_protocols = vec![wshub::tls::ALPN_HTTP_1_1.to_vec()];
    Ok(Some(Arc::new(config)))
}

/// `--insecure`: any certificate is accepted, whoever issued it, whatever
/// its dates and names. The handshake's signatures are still checked, so
/// the server must hold the key of the certificate it sent.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
