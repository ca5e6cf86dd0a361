//! TLS for client connections, with certificates made in the test (rcgen):
//! upgrade after INFO, client certificate verification, handshake-first,
//! and the command-line flags. Runs against the reference too
//! (`BROKER_EDGE_BIN=/usr/sbin/nats-server`), except handshake-first, which
//! nats-server 2.9 does not have.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{is_reference, Server};
use futures::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A CA, a server certificate for localhost/127.0.0.1, and a client
/// certificate, all as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "broker-edge test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf = |names: Vec<String>, cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(names).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) =
            leaf(vec!["localhost".into(), "127.0.0.1".into()], "server");
        let (client_cert, client_key) = leaf(vec!["client.local".into()], "client");
        // A client certificate that expired long ago, from the same CA.
        let (old_cert, old_key) = {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(vec!["old.local".to_string()]).unwrap();
            p.distinguished_name.push(DnType::CommonName, "expired");
            p.not_before = rcgen::date_time_ymd(2019, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 1, 1);
            let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let d = dir.path();
        std::fs::write(d.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(d.join("server-cert.pem"), server_cert).unwrap();
        std::fs::write(d.join("server-key.pem"), server_key).unwrap();
        std::fs::write(d.join("client-cert.pem"), client_cert).unwrap();
        std::fs::write(d.join("client-key.pem"), client_key).unwrap();
        std::fs::write(d.join("expired-cert.pem"), old_cert).unwrap();
        std::fs::write(d.join("expired-key.pem"), old_key).unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn conf(&self, extra: &str) -> String {
        format!(
            "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  {extra}\n}}\n",
            self.path("server-cert.pem"),
            self.path("server-key.pem"),
            self.path("ca.pem"),
        )
    }
}

fn tls_opts(ca: &Path) -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new()
        .add_root_certificates(ca.to_path_buf())
        .require_tls(true)
}

async fn round_trip(c: &async_nats::Client, subject: &str) {
    let mut sub = c.subscribe(subject.to_string()).await.unwrap();
    c.flush().await.unwrap();
    c.publish(subject.to_string(), "over tls".into())
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("message over TLS")
        .expect("subscription open");
    assert_eq!(m.payload.as_ref(), b"over tls");
}

async fn connect_fails(s: &Server, opts: async_nats::ConnectOptions) -> String {
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        opts.max_reconnects(0).connect(s.url()),
    )
    .await;
    match r {
        Ok(Ok(_)) => panic!("connection should have failed\n--- log ---\n{}", s.log()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".into(),
    }
}

#[tokio::test]
async fn tls_info_and_round_trip() {
    let pki = Pki::new();
    let s = Server::start_with_config(&pki.conf(""), &[]);
    let raw = s.raw().await;
    assert_eq!(raw.info["tls_required"], true, "INFO: {}", raw.info);
    let c = s.client_with(tls_opts(&pki.path("ca.pem"))).await;
    round_trip(&c, "tls.rt").await;
}

#[tokio::test]
async fn plaintext_client_cannot_talk_to_a_tls_server() {
    let pki = Pki::new();
    let s = Server::start_with_config(&pki.conf(""), &[]);
    let mut raw = s.raw().await;
    // Speaking plain protocol where a handshake is expected ends the
    // connection; nothing gets through in the clear.
    raw.send("CONNECT {\"verbose\":false}\r\nPING\r\n").await;
    let got = tokio::time::timeout(Duration::from_secs(5), raw.next()).await;
    if let Ok(Some(line)) = got {
        assert_ne!(line, "PONG", "plaintext PING answered on a TLS server");
    }
}

#[tokio::test]
async fn client_with_an_unknown_ca_is_rejected() {
    let pki = Pki::new();
    let other = Pki::new();
    let s = Server::start_with_config(&pki.conf(""), &[]);
    let e = connect_fails(&s, tls_opts(&other.path("ca.pem"))).await;
    assert!(!e.is_empty());
}

#[tokio::test]
async fn verify_requires_a_client_certificate() {
    let pki = Pki::new();
    let s = Server::start_with_config(&pki.conf("verify: true"), &[]);
    let raw = s.raw().await;
    assert_eq!(raw.info["tls_verify"], true, "INFO: {}", raw.info);
    // Without a certificate: refused, and the server says why in its log.
    connect_fails(&s, tls_opts(&pki.path("ca.pem"))).await;
    s.wait_log("TLS handshake error", Duration::from_secs(5))
        .await;
    // With one signed by the CA: accepted.
    let c = s
        .client_with(
            tls_opts(&pki.path("ca.pem"))
                .add_client_certificate(pki.path("client-cert.pem"), pki.path("client-key.pem")),
        )
        .await;
    round_trip(&c, "tls.verified").await;
}

#[tokio::test]
async fn handshake_first_serves_clients_that_start_with_tls() {
    if is_reference() {
        eprintln!("skipped: nats-server 2.9 has no handshake_first");
        return;
    }
    let pki = Pki::new();
    let s = Server::start_with_config(&pki.conf("handshake_first: true"), &[]);
    let c = s
        .client_with(tls_opts(&pki.path("ca.pem")).tls_first())
        .await;
    round_trip(&c, "tls.first").await;
}

/// Skip under nats-server 2.9, which has no `handshake_first` (2.10+ has;
/// run with `BROKER_EDGE_BIN=target/refs/bin/nats-server-2.15.3`).
fn skip_without_handshake_first() -> bool {
    let skip = is_reference() && !common::server_bin().to_string_lossy().contains("2.15");
    if skip {
        eprintln!("skipped: nats-server 2.9 has no handshake_first (2.10+ has)");
    }
    skip
}

/// Hardening #23: `handshake_first: 300ms` (nats' fallback delay) waits
/// that long for a client to start TLS, then sends INFO in the clear and
/// the client upgrades as usual. Both kinds of client get in: one that
/// starts with TLS, and one that waits for INFO (async-nats with TLS
/// required the normal way). `auto` is the same with 50ms.
#[tokio::test]
async fn handshake_first_with_a_fallback_delay_serves_info_first_clients() {
    if skip_without_handshake_first() {
        return;
    }
    let pki = Pki::new();
    let s = Server::start_with_config(&pki.conf("handshake_first: 300ms"), &[]);
    let ca = pki.path("ca.pem");
    // A client that waits for INFO gets it once the delay has passed.
    let started = std::time::Instant::now();
    let raw = s.raw().await;
    let waited = started.elapsed();
    assert_eq!(raw.info["tls_required"], true, "INFO: {}", raw.info);
    assert!(
        waited >= Duration::from_millis(250),
        "INFO after {waited:?}, before the 300ms fallback delay"
    );
    drop(raw);
    let info_first = s.client_with(tls_opts(&ca)).await;
    round_trip(&info_first, "tls.fallback.info").await;
    let tls_first = s.client_with(tls_opts(&ca).tls_first()).await;
    round_trip(&tls_first, "tls.fallback.first").await;

    let s = Server::start_with_config(&pki.conf("handshake_first: auto"), &[]);
    let info_first = s.client_with(tls_opts(&ca)).await;
    round_trip(&info_first, "tls.auto.info").await;
    let tls_first = s.client_with(tls_opts(&ca).tls_first()).await;
    round_trip(&tls_first, "tls.auto.first").await;
}

/// `handshake_first: true` (no delay) still refuses a client that waits
/// for INFO: the server never sends it in the clear.
#[tokio::test]
async fn handshake_first_without_a_delay_refuses_info_first_clients() {
    if skip_without_handshake_first() {
        return;
    }
    let pki = Pki::new();
    let s = Server::start_with_config(&pki.conf("handshake_first: true"), &[]);
    let mut sock = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(
        Duration::from_millis(700),
        tokio::io::AsyncReadExt::read(&mut sock, &mut buf),
    )
    .await;
    assert!(
        !matches!(got, Ok(Ok(n)) if buf[..n].starts_with(b"INFO")),
        "INFO sent in the clear with handshake_first: true: {got:?}"
    );
    connect_fails(&s, tls_opts(&pki.path("ca.pem"))).await;
    let c = s
        .client_with(tls_opts(&pki.path("ca.pem")).tls_first())
        .await;
    round_trip(&c, "tls.first.only").await;
}

/// The reference's words for a value `handshake_first` does not take.
#[tokio::test]
async fn handshake_first_bad_values_are_refused() {
    if skip_without_handshake_first() {
        return;
    }
    let pki = Pki::new();
    for (value, want) in [
        (
            "bogus",
            "field \"handshake_first\"'s value \"bogus\" is invalid",
        ),
        (
            "5",
            "field \"handshake_first\" should be a boolean or a string, got int64",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("hf.conf");
        std::fs::write(&conf, pki.conf(&format!("handshake_first: {value}"))).unwrap();
        let (status, out, err) =
            common::run_to_exit(&["-c", conf.to_str().unwrap()], Duration::from_secs(10)).await;
        assert!(!status.success(), "{value}: started");
        assert!(format!("{out}{err}").contains(want), "{value}: {out}{err}");
    }
}

#[tokio::test]
async fn tls_command_line_flags() {
    let pki = Pki::new();
    let cert = pki.path("server-cert.pem");
    let key = pki.path("server-key.pem");
    let s = Server::start(&[
        "--tls",
        "--tlscert",
        cert.to_str().unwrap(),
        &format!("--tlskey={}", key.display()),
    ]);
    let c = s.client_with(tls_opts(&pki.path("ca.pem"))).await;
    round_trip(&c, "tls.flags").await;
}

/// WebSocket over TLS (`wss://`): the websocket block's own `tls {}`.
#[tokio::test]
async fn websocket_over_tls() {
    let pki = Pki::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = format!(
        "websocket {{\n  host: 127.0.0.1\n  port: {port}\n  tls {{\n    cert_file: {:?}\n    key_file: {:?}\n  }}\n}}\n",
        pki.path("server-cert.pem"),
        pki.path("server-key.pem"),
    );
    let s = Server::start_with_config(&conf, &[]);
    s.wait_log(
        "Listening for websocket clients on wss://127.0.0.1:",
        Duration::from_secs(5),
    )
    .await;
    let ws = tokio::time::timeout(
        Duration::from_secs(10),
        async_nats::ConnectOptions::new()
            .add_root_certificates(pki.path("ca.pem"))
            .connect(format!("wss://127.0.0.1:{port}")),
    )
    .await
    .expect("wss connect timed out")
    .expect("wss connect");
    round_trip(&ws, "wss.rt").await;
    // A plain ws:// client cannot talk to it.
    let plain = tokio::time::timeout(
        Duration::from_secs(10),
        async_nats::ConnectOptions::new()
            .max_reconnects(0)
            .connect(format!("ws://127.0.0.1:{port}")),
    )
    .await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "plain websocket accepted on a wss listener"
    );
}

/// An expired client certificate is refused, with the reason in the log.
#[tokio::test]
async fn expired_client_certificate_is_rejected() {
    let pki = Pki::new();
    let s = Server::start_with_config(&pki.conf("verify: true"), &[]);
    connect_fails(
        &s,
        tls_opts(&pki.path("ca.pem"))
            .add_client_certificate(pki.path("expired-cert.pem"), pki.path("expired-key.pem")),
    )
    .await;
    s.wait_log("TLS handshake error", Duration::from_secs(5))
        .await;
    assert!(
        s.log().to_lowercase().contains("expired"),
        "log should say the certificate expired\n{}",
        s.log()
    );
}

/// TLS options this build does not implement stop start-up with an
/// `[FTL]` line naming them (they used to be accepted and ignored: a pin
/// that was never checked let any certificate in).
#[tokio::test]
async fn unimplemented_tls_options_are_refused_at_start() {
    ours_only!("nats-server implements these options");
    let pki = Pki::new();
    for (extra, name) in [
        (
            "pinned_certs: [\"a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1\"]",
            "pinned_certs",
        ),
        (
            "cipher_suites: [\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"]",
            "cipher_suites",
        ),
        ("curve_preferences: [\"X25519\"]", "curve_preferences"),
        ("verify_and_map: true", "verify_and_map"),
        ("ocsp_peer: true", "ocsp_peer"),
    ] {
        let conf = format!("listen: 127.0.0.1:-1\n{}", pki.conf(extra));
        let path = pki.path("refused.conf");
        std::fs::write(&path, conf).unwrap();
        let (st, out, err) =
            common::run_to_exit(&["-c", path.to_str().unwrap()], common::STEP).await;
        let text = format!("{out}{err}");
        assert!(!st.success(), "started with {name}: {text}");
        assert!(
            text.contains("[FTL]") && text.contains(&format!("{name} is not supported")),
            "{text}"
        );
    }
}

/// `min_version: "1.3"` is honoured: a client limited to TLS 1.2 fails the
/// handshake, a TLS 1.3 client gets through.
#[tokio::test]
async fn min_version_is_honoured() {
    if is_reference() && !common::server_bin().to_string_lossy().contains("2.15") {
        eprintln!("skipped: nats-server 2.9 does not know min_version (2.10+ does)");
        return;
    }
    let pki = Pki::new();
    let s = Server::start_with_config(&pki.conf("min_version: \"1.3\""), &[]);
    let handshake = |versions: &'static [&'static rustls::SupportedProtocolVersion]| {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(pki.path("ca.pem")).unwrap();
        for c in rustls_pemfile::certs(&mut &pem[..]) {
            roots.add(c.unwrap()).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
        let mut sock = std::net::TcpStream::connect(s.addr()).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The INFO line comes in the clear, then the upgrade.
        let mut info = Vec::new();
        let mut b = [0u8; 1];
        while !info.ends_with(b"\r\n") {
            std::io::Read::read_exact(&mut sock, &mut b).unwrap();
            info.push(b[0]);
        }
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok::<_, std::io::Error>(conn.protocol_version())
    };
    static TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    static TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let old = handshake(TLS12);
    assert!(old.is_err(), "a TLS 1.2 client got through: {old:?}");
    let new = handshake(TLS13).expect("TLS 1.3 handshake");
    assert_eq!(new, Some(rustls::ProtocolVersion::TLSv1_3));
}
