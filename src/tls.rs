//! TLS for client connections (rustls with the ring provider): building the
//! server configuration from `tls { … }` or the `--tls*` flags, the
//! handshake with its deadline, and the client configuration of a
//! soliciting leaf node ([`client_config`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::options::{RemoteTls, TlsConfig};

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
    #[error("TLS: {0} is not supported by this build of Broker Edge yet: remove it")]
    Unsupported(String),
    #[error("TLS: unsupported min_version {0:?} (1.2 or 1.3)")]
    MinVersion(String),
}

/// What a listener needs to speak TLS.
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub verify: bool,
    pub handshake_first: bool,
    /// With `handshake_first`: how long to wait for the client to start
    /// TLS before sending INFO first after all (`None`: TLS first only).
    pub fallback: Option<Duration>,
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
    // Honour or refuse: options not built are named at start-up instead
    // of being ignored (a pin that is not checked is worse than none).
    let refused = [
        ("verify_and_map", t.verify_and_map),
        ("cipher_suites", !t.cipher_suites.is_empty()),
        ("curve_preferences", !t.curve_preferences.is_empty()),
        ("pinned_certs", !t.pinned_certs.is_empty()),
    ];
    if let Some((name, _)) = refused.iter().find(|(_, on)| *on) {
        return Err(TlsError::Unsupported(name.to_string()));
    }
    if let Some(name) = t.unsupported.first() {
        return Err(TlsError::Unsupported(name.clone()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match t.min_version.as_deref() {
        None | Some("1.2") => rustls::DEFAULT_VERSIONS,
        Some("1.3") => &[&rustls::version::TLS13],
        Some(v) => return Err(TlsError::MinVersion(v.to_string())),
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
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
        fallback: t.handshake_first_fallback.filter(|_| t.handshake_first),
        timeout: t.timeout.unwrap_or(DEFAULT_TIMEOUT),
    })
}

/// The client side of a soliciting leaf (a remote's `tls { }`): the hub's
/// certificate is checked against `ca_file` (this build carries no system
/// roots, so without `ca_file` only `insecure: true` is accepted), a
/// client certificate is offered when `cert_file`/`key_file` are given,
/// and `insecure` skips checking the hub's certificate (its handshake
/// signatures are still checked). The server name to check is the URL's
/// host, given when connecting.
pub fn client_config(t: &RemoteTls) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| TlsError::Rustls(e.to_string()).to_string())?;
    let builder = if t.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoServerVerification(provider)))
    } else {
        let ca = t.ca_file.as_ref().ok_or_else(|| {
            "TLS: a remote leafnode needs ca_file to verify the hub (no system roots in this build), or insecure: true"
                .to_string()
        })?;
        let mut roots = RootCertStore::empty();
        for c in certs(ca).map_err(|e| e.to_string())? {
            roots
                .add(c)
                .map_err(|e| format!("TLS: {}: {e}", ca.display()))?;
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(
                certs(c).map_err(|e| e.to_string())?,
                key(k).map_err(|e| e.to_string())?,
            )
            .map_err(|e| TlsError::Rustls(e.to_string()).to_string())?,
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => return Err(TlsError::Missing("key_file").to_string()),
        (None, Some(_)) => return Err(TlsError::Missing("cert_file").to_string()),
    };
    Ok(Arc::new(config))
}

/// `insecure: true`: any certificate is accepted as the hub's; the
/// handshake's signatures are verified with it all the same.
#[derive(Debug)]
struct NoServerVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoServerVerification {
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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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

#[cfg(test)]
mod tests;
