//! `/accstatz`: each account's connections and traffic over HTTP, as
//! `$SYS.REQ.ACCOUNT.PING.STATZ` reports them, with the reference's
//! `unused` parameter. The same scenario runs against the
//! binary under test and the pinned nats-server 2.15.3, and the same facts
//! are asserted of both, down to the key set of an account's entry.
//!
//! Both run with an account `APP` configured: Broker Edge has a system
//! account (`$SYS`) only once accounts exist, nats-server always.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{ref_server_2_15, Server};
use serde_json::Value;

fn accounts(v: &Value) -> Vec<String> {
    v["account_statz"]
        .as_array()
        .unwrap_or_else(|| panic!("no account_statz in {v:#}"))
        .iter()
        .map(|a| a["acc"].as_str().unwrap().to_string())
        .collect()
}

fn entry<'a>(v: &'a Value, acc: &str) -> &'a Value {
    v["account_statz"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["acc"] == acc)
        .unwrap_or_else(|| panic!("{acc} not in {v:#}"))
}

/// Every key path of `v` (objects only), for comparing shapes.
fn keys(v: &Value, at: &str, out: &mut BTreeSet<String>) {
    if let Some(m) = v.as_object() {
        for (k, x) in m {
            let p = format!("{at}/{k}");
            out.insert(p.clone());
            keys(x, &p, out);
        }
    }
}

/// Runs the scenario; returns the key paths of `$G`'s entry.
async fn scenario(s: &Server) -> BTreeSet<String> {
    let what = s.bin.display().to_string();
    let v = s.json("/accstatz").await;
    assert_eq!(accounts(&v), Vec::<String>::new(), "{what}: {v:#}");
    let v = s.json("/accstatz?unused=1").await;
    let mut all = accounts(&v);
    all.sort();
    assert_eq!(all, ["$G", "$SYS", "APP"], "{what}");

    let mut c = s.raw().await;
    c.handshake(r#"{"verbose":false,"pedantic":false,"protocol":1}"#)
        .await;
    c.send("SUB a 1\r\nPUB a 2\r\nhi\r\nPING\r\n").await;
    // The message back (past the reference's second INFO), then PONG.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let l = c.next().await.expect("connection open");
        if l == "PONG" {
            break;
        }
        assert!(Instant::now() < deadline, "{what}: no PONG");
    }
    let v = s.json("/accstatz").await;
    assert_eq!(accounts(&v), ["$G"], "{what}: {v:#}");
    let g = entry(&v, "$G");
    assert_eq!(g["name"], "$G", "{what}");
    assert_eq!(g["conns"], 1, "{what}: {g}");
    assert!(g["total_conns"].as_u64().unwrap() >= 1, "{what}: {g}");
    for dir in ["sent", "received"] {
        assert_eq!(g[dir]["msgs"], 1, "{what} {dir}: {g}");
        assert_eq!(g[dir]["bytes"], 2, "{what} {dir}: {g}");
    }
    assert_eq!(g["slow_consumers"], 0, "{what}");

    // Over HTTP the reference takes no account filter (the system
    // account's request does): `accounts=` changes nothing.
    let v = s.json("/accstatz?accounts=$SYS").await;
    assert_eq!(accounts(&v), ["$G"], "{what}: {v:#}");

    let (status, body) = s.http("/accstatz?unused=bogus").await;
    assert_eq!(status, 400, "{what}: {body}");
    assert!(
        body.contains("Error decoding boolean for 'unused'"),
        "{what}: {body}"
    );
    let v = s.json("/accstatz").await;
    let mut shape = BTreeSet::new();
    keys(entry(&v, "$G"), "", &mut shape);
    drop(c);
    shape
}

#[tokio::test]
async fn accstatz_as_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("s.conf");
    std::fs::write(&conf, "accounts { APP: {} }\n").unwrap();
    let conf = conf.to_str().unwrap();
    let ours = scenario(&Server::start(&["-c", conf])).await;
    let theirs = scenario(&Server::start_bin(&ref_server_2_15(), &["-c", conf])).await;
    assert_eq!(ours, theirs, "key paths of an account's entry");
}
