//! [`client_config`] against [`build`], handshaking in memory.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::{ClientConnection, ServerConnection};

use super::*;

/// Two CAs (the second one a stranger), a server certificate for
/// localhost and a client certificate from the first, as PEM files.
fn pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ca = |cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        (p.self_signed(&key).unwrap(), key)
    };
    let (ca_cert, ca_key) = ca("test CA");
    let (other, _) = ca("other CA");
    let d = dir.path();
    for (name, host) in [("server", "localhost"), ("client", "leaf.local")] {
        let key = KeyPair::generate().unwrap();
        let p = CertificateParams::new(vec![host.to_string()]).unwrap();
        let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
        std::fs::write(d.join(format!("{name}-cert.pem")), cert.pem()).unwrap();
        std::fs::write(d.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }
    std::fs::write(d.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(d.join("other-ca.pem"), other.pem()).unwrap();
    dir
}

/// Runs a handshake between the two ends in memory.
fn handshake(client: Arc<ClientConfig>, server: Arc<ServerConfig>) -> Result<(), rustls::Error> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = ClientConnection::new(client, name).unwrap();
    let mut s = ServerConnection::new(server).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        s.process_new_packets()?;
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

fn server(dir: &tempfile::TempDir, verify: bool) -> Arc<ServerConfig> {
    let p = |n: &str| Some(dir.path().join(n));
    build(&TlsConfig {
        cert_file: p("server-cert.pem"),
        key_file: p("server-key.pem"),
        ca_file: p("ca.pem"),
        verify,
        ..TlsConfig::default()
    })
    .unwrap()
    .config
}

#[test]
fn client_config_verifies_the_hub_against_ca_file() {
    let dir = pki();
    let p = |n: &str| Some::<PathBuf>(dir.path().join(n));
    let ok = client_config(&RemoteTls {
        ca_file: p("ca.pem"),
        ..RemoteTls::default()
    })
    .unwrap();
    handshake(ok, server(&dir, false)).unwrap();
    // A hub whose certificate the CA did not sign is refused…
    let stranger = client_config(&RemoteTls {
        ca_file: p("other-ca.pem"),
        ..RemoteTls::default()
    })
    .unwrap();
    assert!(handshake(stranger, server(&dir, false)).is_err());
    // …unless insecure.
    let insecure = client_config(&RemoteTls {
        ca_file: p("other-ca.pem"),
        insecure: true,
        ..RemoteTls::default()
    })
    .unwrap();
    handshake(insecure, server(&dir, false)).unwrap();
}

#[test]
fn client_config_offers_its_certificate() {
    let dir = pki();
    let p = |n: &str| Some::<PathBuf>(dir.path().join(n));
    let without = client_config(&RemoteTls {
        ca_file: p("ca.pem"),
        ..RemoteTls::default()
    })
    .unwrap();
    assert!(handshake(without, server(&dir, true)).is_err());
    let with = client_config(&RemoteTls {
        ca_file: p("ca.pem"),
        cert_file: p("client-cert.pem"),
        key_file: p("client-key.pem"),
        ..RemoteTls::default()
    })
    .unwrap();
    handshake(with, server(&dir, true)).unwrap();
}

#[test]
fn client_config_errors() {
    let e = client_config(&RemoteTls::default()).unwrap_err();
    assert!(e.contains("ca_file") && e.contains("insecure"), "{e}");
    client_config(&RemoteTls {
        insecure: true,
        ..RemoteTls::default()
    })
    .unwrap();
    let e = client_config(&RemoteTls {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..RemoteTls::default()
    })
    .unwrap_err();
    assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    let e = client_config(&RemoteTls {
        insecure: true,
        cert_file: Some("/x.pem".into()),
        ..RemoteTls::default()
    })
    .unwrap_err();
    assert!(e.contains("key_file"), "{e}");
}
