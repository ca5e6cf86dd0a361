//! TLS for client connections (rustls with the ring provider): building the
//! server configuration from `tls { … }` or the `--tls*` flags, and the
//! handshake with its deadline.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::options::TlsConfig;

/// nats-server's default TLS handshake timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS: missing {0} (cert_file and key_file are both required)")]
    Missing(&'static str),
    #[error("TLS: could not read {path}: {why}")]
    Read { path: String, why: String },
    #[error("TLS: no certificate found in {0}")]
    NoCert(String),
    #[error("TLS: no private key found in {0}")]
    NoKey(String),
    #[error("TLS: verify requires ca_file")]
    NoCa,
    #[error("TLS: {0}")]
    Rustls(String),
}

/// What a listener needs to speak TLS.
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub verify: bool,
    pub handshake_first: bool,
    pub timeout: Duration,
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Read {
        path: path.display().to_string(),
        why: e.to_string(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| read_err(path, e))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(path.display().to_string()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| read_err(path, e))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| read_err(path, e))?
        .ok_or_else(|| TlsError::NoKey(path.display().to_string()))
}

pub fn build(t: &TlsConfig) -> Result<Tls, TlsError> {
    let cert_file = t.cert_file.as_ref().ok_or(TlsError::Missing("cert_file"))?;
    let key_file = t.key_file.as_ref().ok_or(TlsError::Missing("key_file"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = if t.verify {
        let ca = t.ca_file.as_ref().ok_or(TlsError::NoCa)?;
        let mut roots = RootCertStore::empty();
        for c in certs(ca)? {
            roots
                .add(c)
                .map_err(|e| TlsError::Rustls(format!("{}: {e}", ca.display())))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(certs(cert_file)?, key(key_file)?)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(Tls {
        config: Arc::new(config),
        verify: t.verify,
        handshake_first: t.handshake_first,
        timeout: t.timeout.unwrap_or(DEFAULT_TIMEOUT),
    })
}
