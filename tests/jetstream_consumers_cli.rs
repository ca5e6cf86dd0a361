//! The pinned `nats` CLI (natscli 0.5.0, `target/refs/bin/nats` from
//! `scripts/install-refs`) driving consumers, KV buckets and object stores:
//! `nats consumer add/info/ls/next/rm`, `nats kv add/put/get/del/history/
//! ls/watch`, `nats object add/put/get/ls/rm`.
//!
//! Checked against nats-server 2.15.3:
//!
//!     BROKER_EDGE_BIN=$PWD/target/refs/bin/nats-server-2.15.3 \
//!         cargo test -p broker-edge --test jetstream_consumers_cli

mod common;

use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;

use common::Server;

use common::cli::{command as cli, nats, nats_ok};

#[tokio::test]
async fn cli_consumer_lifecycle() {
    let s = Server::start_js(&[]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    nats_ok(
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
    for i in 1..=3 {
        nats_ok(
            &s,
            h,
            &["pub", &format!("orders.{i}"), &format!("order {i}")],
        )
        .await;
    }

    let out = nats_ok(
        &s,
        h,
        &[
            "consumer",
            "add",
            "ORDERS",
            "PULLC",
            "--pull",
            "--deliver",
            "all",
            "--ack",
            "explicit",
            "--replay",
            "instant",
            "--filter",
            "",
            "--max-deliver=-1",
            "--max-pending",
            "0",
            "--no-headers-only",
            "--backoff",
            "none",
            "--defaults",
        ],
    )
    .await;
    assert!(
        out.stdout
            .contains("Information for Consumer ORDERS > PULLC"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Pull Mode: true"), "{}", out.stdout);
    assert!(
        out.stdout.contains("Ack Policy: Explicit"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Ack Wait: 30.00s"), "{}", out.stdout);
    assert!(
        out.stdout.contains("Unprocessed Messages: 3"),
        "{}",
        out.stdout
    );

    let info = nats_ok(&s, h, &["consumer", "info", "ORDERS", "PULLC", "--json"])
        .await
        .json();
    assert_eq!(info["name"], "PULLC", "{info}");
    assert_eq!(info["stream_name"], "ORDERS", "{info}");
    assert_eq!(info["config"]["ack_policy"], "explicit", "{info}");
    assert_eq!(info["config"]["deliver_policy"], "all", "{info}");
    assert_eq!(info["config"]["max_deliver"], -1, "{info}");
    // --max-pending 0 leaves the server default.
    assert_eq!(info["config"]["max_ack_pending"], 1000, "{info}");
    assert_eq!(info["config"]["max_waiting"], 512, "{info}");
    assert_eq!(info["num_pending"], 3, "{info}");

    // A push consumer too, so that ls has two.
    nats_ok(
        &s,
        h,
        &[
            "consumer",
            "add",
            "ORDERS",
            "PUSHC",
            "--target",
            "deliver.pushc",
            "--deliver",
            "last",
            "--ack",
            "none",
            "--replay",
            "instant",
            "--filter",
            "",
            "--max-deliver=-1",
            "--max-pending",
            "0",
            "--no-headers-only",
            "--heartbeat=-1",
            "--defaults",
        ],
    )
    .await;
    let ls = nats_ok(&s, h, &["consumer", "ls", "ORDERS", "--names"]).await;
    let mut names: Vec<&str> = ls.stdout.split_whitespace().collect();
    names.sort();
    assert_eq!(names, ["PULLC", "PUSHC"], "{}", ls.stdout);
    let ls = nats_ok(&s, h, &["consumer", "ls", "ORDERS"]).await;
    assert!(ls.stdout.contains("PULLC"), "{}", ls.stdout);

    // next: two messages, acked.
    let out = nats_ok(
        &s,
        h,
        &["consumer", "next", "ORDERS", "PULLC", "--count", "2"],
    )
    .await;
    assert!(
        out.stdout
            .contains("subj: orders.1 / tries: 1 / cons seq: 1 / str seq: 1"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("order 2"), "{}", out.stdout);
    assert_eq!(
        out.stdout.matches("Acknowledged message").count(),
        2,
        "{}",
        out.stdout
    );
    // The third, not acked: delivered but pending.
    let out = nats_ok(&s, h, &["consumer", "next", "ORDERS", "PULLC", "--no-ack"]).await;
    assert!(out.stdout.contains("order 3"), "{}", out.stdout);
    let info = nats_ok(&s, h, &["consumer", "info", "ORDERS", "PULLC", "--json"])
        .await
        .json();
    assert_eq!(info["num_pending"], 0, "{info}");
    assert_eq!(info["num_ack_pending"], 1, "{info}");
    assert_eq!(info["ack_floor"]["stream_seq"], 2, "{info}");
    assert_eq!(info["delivered"]["stream_seq"], 3, "{info}");

    nats_ok(&s, h, &["consumer", "rm", "ORDERS", "PULLC", "-f"]).await;
    let ls = nats_ok(&s, h, &["consumer", "ls", "ORDERS", "--names"]).await;
    assert_eq!(ls.stdout.trim(), "PUSHC", "{}", ls.stdout);
    let out = nats(&s, h, &["consumer", "info", "ORDERS", "PULLC", "--json"]).await;
    assert!(!out.ok, "info of a removed consumer: {}", out.stdout);
    // The CLI looks the name up first and, not finding it, wants a
    // terminal to pick one: "could not select Consumer: cannot pick a
    // Consumer without a terminal and no Consumer name supplied".
    assert!(
        out.stderr.contains("could not select Consumer"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
}

/// `nats kv watch` in the background while another CLI writes: every
/// change shows up, in order.
#[tokio::test]
async fn cli_kv() {
    let s = Server::start_js(&[]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let out = nats_ok(&s, h, &["kv", "add", "CONFIG", "--history", "5"]).await;
    assert!(
        out.stdout
            .contains("Information for Key-Value Store Bucket CONFIG"),
        "{}",
        out.stdout
    );

    let mut watch = cli(&s, h, &["kv", "watch", "CONFIG"])
        .spawn()
        .expect("spawn nats kv watch");
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    // Let the watcher subscribe: it prints nothing for an empty bucket, so
    // wait until the server shows its consumer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = nats_ok(&s, h, &["stream", "info", "KV_CONFIG", "--json"]).await;
        if out.json()["state"]["consumer_count"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "kv watch never subscribed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    nats_ok(&s, h, &["kv", "put", "CONFIG", "color", "red"]).await;
    nats_ok(&s, h, &["kv", "put", "CONFIG", "color", "blue"]).await;
    nats_ok(&s, h, &["kv", "put", "CONFIG", "shape", "circle"]).await;
    let out = nats_ok(&s, h, &["kv", "get", "CONFIG", "color", "--raw"]).await;
    assert_eq!(out.stdout.trim(), "blue");
    let out = nats_ok(&s, h, &["kv", "get", "CONFIG", "color"]).await;
    assert!(
        out.stdout.contains("CONFIG > color revision: 2"),
        "{}",
        out.stdout
    );
    nats_ok(&s, h, &["kv", "del", "CONFIG", "color", "-f"]).await;
    let out = nats(&s, h, &["kv", "get", "CONFIG", "color"]).await;
    assert!(!out.ok, "get of a deleted key: {}", out.stdout);

    let out = nats_ok(&s, h, &["kv", "history", "CONFIG", "color"]).await;
    let rows: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("│ color"))
        .collect();
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    assert!(
        rows[0].contains("PUT") && rows[0].contains("red"),
        "{}",
        out.stdout
    );
    assert!(
        rows[1].contains("PUT") && rows[1].contains("blue"),
        "{}",
        out.stdout
    );
    assert!(rows[2].contains("DELETE"), "{}", out.stdout);

    let out = nats_ok(&s, h, &["kv", "ls", "--names"]).await;
    assert_eq!(out.stdout.trim(), "CONFIG", "{}", out.stdout);
    let out = nats_ok(&s, h, &["kv", "ls", "CONFIG"]).await;
    assert!(out.stdout.contains("shape"), "{}", out.stdout);
    assert!(!out.stdout.contains("color"), "{}", out.stdout);

    // The watcher's lines: every change, in order.
    let want = [
        "PUT CONFIG > color: red",
        "PUT CONFIG > color: blue",
        "PUT CONFIG > shape: circle",
        "DELETE CONFIG > color",
    ];
    let mut got = Vec::new();
    let read = async {
        while got.len() < want.len() {
            match lines.next_line().await {
                Ok(Some(l)) if !l.trim().is_empty() => got.push(l),
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    let _ = watch.kill().await;
    assert_eq!(got.len(), want.len(), "watch output: {got:#?}");
    for (line, w) in got.iter().zip(want) {
        assert!(
            line.ends_with(w),
            "watch line {line:?}, want {w:?}: {got:#?}"
        );
    }
}

#[tokio::test]
async fn cli_object_store() {
    let s = Server::start_js(&[]);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let blob: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(h.join("blob.bin"), &blob).unwrap();

    let out = nats_ok(&s, h, &["object", "add", "FILES"]).await;
    assert!(
        out.stdout
            .contains("Information for Object Store Bucket FILES"),
        "{}",
        out.stdout
    );
    let out = nats_ok(
        &s,
        h,
        &[
            "object",
            "put",
            "FILES",
            "blob.bin",
            "--name",
            "fw.bin",
            "--no-progress",
        ],
    )
    .await;
    assert!(out.stdout.contains("Chunks: 23"), "{}", out.stdout);
    assert!(out.stdout.contains("Digest: SHA-256"), "{}", out.stdout);
    nats_ok(
        &s,
        h,
        &[
            "object",
            "get",
            "FILES",
            "fw.bin",
            "--output",
            "copy.bin",
            "--no-progress",
        ],
    )
    .await;
    let copy = std::fs::read(h.join("copy.bin")).unwrap();
    assert!(copy == blob, "object round trip differs");

    let out = nats_ok(&s, h, &["object", "ls", "FILES"]).await;
    assert!(out.stdout.contains("fw.bin"), "{}", out.stdout);
    let out = nats_ok(&s, h, &["object", "ls", "--names"]).await;
    assert_eq!(out.stdout.trim(), "FILES", "{}", out.stdout);

    let out = nats_ok(&s, h, &["object", "rm", "FILES", "fw.bin", "-f"]).await;
    assert!(
        out.stdout.contains("Removed FILES > fw.bin"),
        "{}",
        out.stdout
    );
    let out = nats_ok(&s, h, &["object", "ls", "FILES"]).await;
    assert!(out.stdout.contains("No entries found"), "{}", out.stdout);
    let out = nats(
        &s,
        h,
        &[
            "object",
            "get",
            "FILES",
            "fw.bin",
            "--output",
            "gone.bin",
            "--no-progress",
        ],
    )
    .await;
    assert!(!out.ok, "get of a removed object: {}", out.stdout);
}
