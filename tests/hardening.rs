//! Regression tests for the hardening issue's findings (one test per
//! finding, each failing on the code that had the fault). They pass
//! against nats-server 2.9.10 / 2.15.3 too unless marked broker-edge only.

mod common;

use common::Server;

/// Resident memory of a process (KiB), from /proc.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// #1: a connection sending only blank lines (32 MiB of `\r\n`) must not
/// grow the server's memory (the parser used to skip them without
/// consuming them, so every read re-parsed and carried all of them), and
/// the connection stays usable: a PING afterwards gets its PONG.
/// (nats-server closes such a connection instead, as an unknown
/// operation; Broker Edge keeps tolerating blank lines between
/// operations, as its parser always did.)
#[tokio::test]
async fn blank_line_flood_is_consumed() {
    ours_only!("nats-server closes the connection on blank lines");
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.handshake(r#"{"verbose":false,"pedantic":false}"#).await;
    let before = rss_kib(s.pid());
    let chunk = b"\r\n".repeat(512 * 1024); // 1 MiB
    for _ in 0..32 {
        raw.send_bytes(&chunk).await;
    }
    raw.send("PING\r\n").await;
    loop {
        let line = raw
            .line()
            .await
            .expect("connection closed during the flood");
        if line.starts_with("PONG") {
            break;
        }
    }
    let grown = rss_kib(s.pid()).saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "the server grew by {grown} KiB while reading blank lines"
    );
}
