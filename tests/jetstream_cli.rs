//! The pinned `nats` CLI (natscli 0.5.0, `target/refs/bin/nats` from
//! `scripts/install-refs`) driving a stream through its life against the
//! server under test: add, publish (core and JetStream), info, ls, get,
//! purge, rm, backup/restore, account info, `server check jetstream`.
//!
//! Checked against nats-server 2.15.3:
//!
//!     BROKER_EDGE_BIN=$PWD/target/refs/bin/nats-server-2.15.3 \
//!         cargo test -p broker-edge --test jetstream_cli
//!
//! `nats server ping` is not covered here: it needs a system user
//! (`$SYS.REQ.SERVER.PING`; without one nats-server 2.15.3 answers 503 and
//! the CLI exits 1, "ensure a system account is used"); `tests/system.rs`
//! drives it and the other `nats server` commands with one.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::Server;

use common::cli::{nats, nats_ok};

async fn stream_state(s: &Server, home: &std::path::Path, name: &str) -> Value {
    nats_ok(s, home, &["stream", "info", name, "--json"])
        .await
        .json()["state"]
        .clone()
}

#[tokio::test]
async fn cli_stream_lifecycle() {
    let s = Server::start_js(&[]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();

    let out = nats_ok(
        &s,
        h,
        &[
            "stream",
            "add",
            "ORDERS",
            "--subjects",
            "orders.>",
            "--storage",
            "file",
            "--defaults",
        ],
    )
    .await;
    assert!(
        out.stdout.contains("Stream ORDERS was created"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Subjects: orders.>"), "{}", out.stdout);
    assert!(out.stdout.contains("Storage: File"), "{}", out.stdout);

    // Core publishes (no acks): stored all the same.
    let out = nats_ok(&s, h, &["pub", "orders.new", "hello", "--count", "5"]).await;
    assert_eq!(
        out.stdout.matches("Published 5 bytes").count()
            + out.stderr.matches("Published 5 bytes").count(),
        5,
        "{}{}",
        out.stdout,
        out.stderr
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = stream_state(&s, h, "ORDERS").await;
        if st["messages"] == 5 {
            assert_eq!(st["first_seq"], 1, "{st}");
            assert_eq!(st["last_seq"], 5, "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "5 messages never stored: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A JetStream publish reports the stream and sequence.
    let out = nats_ok(&s, h, &["pub", "orders.paid", "paid-1", "--jetstream"]).await;
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("Stored in Stream: ORDERS Sequence: 6"),
        "{text}"
    );

    let info = nats_ok(&s, h, &["stream", "info", "ORDERS", "--json"])
        .await
        .json();
    assert_eq!(info["config"]["name"], "ORDERS");
    assert_eq!(info["config"]["subjects"][0], "orders.>");
    assert_eq!(info["config"]["storage"], "file");
    assert_eq!(info["state"]["messages"], 6, "{info}");
    assert_eq!(info["state"]["num_subjects"], 2, "{info}");

    let names = nats_ok(&s, h, &["stream", "ls", "--names"]).await;
    assert_eq!(
        names.stdout.split_whitespace().collect::<Vec<_>>(),
        ["ORDERS"]
    );
    let ls = nats_ok(&s, h, &["stream", "ls"]).await;
    assert!(ls.stdout.contains("ORDERS"), "{}", ls.stdout);
    let ls = nats_ok(&s, h, &["stream", "ls", "--json"]).await.json();
    assert_eq!(ls, serde_json::json!(["ORDERS"]));

    let got = nats_ok(&s, h, &["stream", "get", "ORDERS", "1", "--json"])
        .await
        .json();
    assert_eq!(got["subject"], "orders.new", "{got}");
    assert_eq!(got["seq"], 1, "{got}");
    assert_eq!(got["data"], "aGVsbG8=", "hello in base64: {got}");
    let got = nats_ok(&s, h, &["stream", "get", "ORDERS", "6"]).await;
    assert!(
        got.stdout.contains("on Subject orders.paid"),
        "{}",
        got.stdout
    );
    assert!(got.stdout.contains("paid-1"), "{}", got.stdout);
    let missing = nats(&s, h, &["stream", "get", "ORDERS", "99"]).await;
    assert!(!missing.ok, "get 99 should fail: {}", missing.stdout);
    assert!(
        missing.stderr.contains("no message found (10037)"),
        "{}",
        missing.stderr
    );

    let out = nats_ok(&s, h, &["stream", "purge", "ORDERS", "-f"]).await;
    assert!(out.stdout.contains("Messages: 0"), "{}", out.stdout);
    let st = stream_state(&s, h, "ORDERS").await;
    assert_eq!(st["messages"], 0, "{st}");
    assert_eq!(st["first_seq"], 7, "{st}");
    assert_eq!(st["last_seq"], 6, "{st}");

    nats_ok(&s, h, &["stream", "rm", "ORDERS", "-f"]).await;
    let names = nats_ok(&s, h, &["stream", "ls", "--names"]).await;
    assert_eq!(names.stdout.trim(), "", "no streams left");
    // (`stream info` of an unknown stream goes on to offer a picker, which
    // fails without a terminal.)
    let gone = nats(&s, h, &["stream", "info", "ORDERS", "--json"]).await;
    assert!(!gone.ok, "info after rm should fail: {}", gone.stdout);
    let raw = nats_ok(&s, h, &["req", "$JS.API.STREAM.INFO.ORDERS", "", "--raw"]).await;
    let raw: Value = serde_json::from_str(raw.stdout.trim()).unwrap();
    assert_eq!(raw["error"]["err_code"], 10059, "{raw}");
}

#[tokio::test]
async fn cli_account_info_and_jetstream_check() {
    let s = Server::start_js(&[]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    for (name, subj) in [("A1", "a1.>"), ("A2", "a2.>")] {
        nats_ok(
            &s,
            h,
            &["stream", "add", name, "--subjects", subj, "--defaults"],
        )
        .await;
    }
    nats_ok(&s, h, &["pub", "a1.x", "data", "--jetstream"]).await;

    let out = nats_ok(&s, h, &["account", "info"]).await;
    let t = &out.stdout;
    assert!(t.contains("JetStream Account Information"), "{t}");
    assert!(t.contains("Streams: 2"), "{t}");
    assert!(t.contains("Consumers: 0"), "{t}");
    assert!(t.contains("Headers Supported: true"), "{t}");

    let out = nats_ok(&s, h, &["server", "check", "jetstream"]).await;
    assert!(out.stdout.starts_with("OK JetStream"), "{}", out.stdout);
    assert!(out.stdout.contains("streams=2"), "{}", out.stdout);
    assert!(out.stdout.contains("consumers=0"), "{}", out.stdout);
}

/// `nats stream backup` / `restore` use `$JS.API.STREAM.SNAPSHOT` and
/// `$JS.API.STREAM.RESTORE` (chunked, s2-compressed tar). Not skipped for
/// broker-edge: the snapshot API is part of the JetStream API group.
#[tokio::test]
async fn cli_stream_backup_and_restore() {
    let s = Server::start_js(&[]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    nats_ok(
        &s,
        h,
        &["stream", "add", "BK", "--subjects", "bk.*", "--defaults"],
    )
    .await;
    for i in 1..=4 {
        let body = format!("m{i}");
        nats_ok(&s, h, &["pub", &format!("bk.{i}"), &body, "--jetstream"]).await;
    }
    nats_ok(&s, h, &["stream", "rmm", "BK", "2", "-f"]).await;
    let before = nats_ok(&s, h, &["stream", "info", "BK", "--json"])
        .await
        .json();
    assert_eq!(before["state"]["messages"], 3, "{before}");

    let dir = home.path().join("backup");
    let dir_s = dir.to_str().unwrap();
    let out = nats_ok(&s, h, &["stream", "backup", "BK", dir_s]).await;
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("Starting backup of Stream \"BK\""),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert!(dir.join("backup.json").is_file());
    // The CLI names the data file by the server's version: `stream.arc.s2`
    // from 2.15 (the reference's archive), `stream.tar.s2` below (Broker
    // Edge reports 2.10 and sends a tar archive of its own log).
    assert!(
        dir.join("stream.arc.s2").is_file() || dir.join("stream.tar.s2").is_file(),
        "no data file in {}",
        dir.display()
    );
    let meta: Value =
        serde_json::from_slice(&std::fs::read(dir.join("backup.json")).unwrap()).unwrap();
    assert_eq!(meta["config"]["name"], "BK", "{meta}");

    nats_ok(&s, h, &["stream", "rm", "BK", "-f"]).await;
    assert!(!nats(&s, h, &["stream", "info", "BK", "--json"]).await.ok);

    nats_ok(&s, h, &["stream", "restore", dir_s]).await;
    let after = nats_ok(&s, h, &["stream", "info", "BK", "--json"])
        .await
        .json();
    assert_eq!(after["config"]["subjects"], before["config"]["subjects"]);
    for k in ["messages", "first_seq", "last_seq", "num_deleted"] {
        assert_eq!(after["state"][k], before["state"][k], "state.{k}: {after}");
    }
    let got = nats_ok(&s, h, &["stream", "get", "BK", "3", "--json"])
        .await
        .json();
    assert_eq!(got["subject"], "bk.3", "{got}");
    assert_eq!(got["data"], "bTM=", "m3 in base64: {got}");
    assert!(!nats(&s, h, &["stream", "get", "BK", "2"]).await.ok);
    // The restored stream takes new messages after the old ones.
    let out = nats_ok(&s, h, &["pub", "bk.5", "m5", "--jetstream"]).await;
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("Sequence: 5"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}
