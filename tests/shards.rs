//! broker-edge only: the `--shards N` flag. Every test here is skipped when
//! the binary under test is the reference nats-server (it has no such flag).
//! The other test files already run our binary with `--shards 4`; these
//! check other shard counts and the flag's parsing.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{run_to_exit, sync, within, Server};
use futures::StreamExt;

/// Every connection subscribes, every connection publishes once, and every
/// subscriber gets every message exactly once; a queue group spread over
/// all connections gets each message once.
async fn all_to_all(s: &Server, conns: usize) {
    let mut clients = Vec::new();
    let mut subs = Vec::new();
    let mut queues = Vec::new();
    for _ in 0..conns {
        let c = s.client().await;
        subs.push(c.subscribe("mesh").await.unwrap());
        queues.push(c.queue_subscribe("mesh", "g".to_string()).await.unwrap());
        sync(&c).await;
        clients.push(c);
    }
    for (i, c) in clients.iter().enumerate() {
        c.publish("mesh", i.to_string().into()).await.unwrap();
        c.flush().await.unwrap();
    }
    for (i, sub) in subs.iter_mut().enumerate() {
        let mut got = HashSet::new();
        while got.len() < conns {
            let m = within("mesh delivery", sub.next()).await.unwrap();
            assert!(got.insert(m.payload.clone()), "conn {i}: duplicate");
        }
    }
    let mut all = futures::stream::select_all(queues.iter_mut());
    let mut got = HashSet::new();
    while got.len() < conns {
        let m = within("queue delivery", all.next()).await.unwrap();
        assert!(
            got.insert(m.payload.clone()),
            "queue duplicate {:?}",
            m.payload
        );
    }
}

#[tokio::test]
async fn serves_with_various_shard_counts_and_flag_forms() {
    ours_only!("--shards is a broker-edge flag");
    for form in [
        &["--shards", "1"][..],
        &["--shards=2"][..],
        &["-shards", "3"][..],
        &["--shards", "8"][..],
    ] {
        let s = Server::start(form);
        all_to_all(&s, 12).await;
    }
}

#[tokio::test]
async fn invalid_shard_counts_are_rejected() {
    ours_only!("--shards is a broker-edge flag");
    for bad in ["0", "-2", "many"] {
        let port = common::free_port().to_string();
        let (status, out, err) = run_to_exit(
            &["-a", "127.0.0.1", "-p", &port, "--shards", bad],
            Duration::from_secs(10),
        )
        .await;
        assert!(!status.success(), "--shards {bad} accepted\n{out}{err}");
    }
}

/// `-DV` traces protocol lines whatever the shard count.
#[tokio::test]
async fn trace_lines_with_any_shard_count() {
    ours_only!("--shards is a broker-edge flag");
    for n in ["1", "2", "4"] {
        let s = Server::start(&["-DV", "--shards", n]);
        let c = s.client().await;
        c.publish("traced", "x".into()).await.unwrap();
        sync(&c).await;
        s.wait_log("[TRC]", Duration::from_secs(5)).await;
    }
}
