//! `/connz?state=closed|any`: client connections kept after they closed,
//! with `stop` and `reason`, the `stop` and `reason` sort orders, and
//! `max_closed_clients`. The same scenario runs against the binary under
//! test and the pinned nats-server 2.15.3, and the same facts are
//! asserted of both (connections are told apart by their CONNECT name:
//! the servers number them differently, and each may have closed
//! connections of its own, such as the harness's readiness probe).

mod common;

use std::time::{Duration, Instant};

use common::{ref_server_2_15, server_bin, Server};
use serde_json::Value;

fn connect(name: &str) -> String {
    format!(
        r#"{{"verbose":false,"pedantic":false,"protocol":1,"name":"{name}","lang":"raw","version":"1"}}"#
    )
}

/// The next line that is not an INFO (the reference sends a second one
/// after CONNECT).
async fn reply(c: &mut common::Raw) -> Option<String> {
    loop {
        let l = c.next().await?;
        if !l.starts_with("INFO ") {
            return Some(l);
        }
    }
}

/// `c1` (two subscriptions) and `c2` close cleanly, `c3` sends an unknown
/// operation, `open` stays; in that order, a little apart.
async fn scenario(s: &Server) -> common::Raw {
    let mut c1 = s.raw().await;
    c1.handshake(&connect("c1")).await;
    c1.send("SUB a 1\r\nSUB b q 2\r\nPUB a 2\r\nhi\r\nPING\r\n")
        .await;
    assert_eq!(reply(&mut c1).await.as_deref(), Some("MSG a 1 2"));
    drop(c1);
    closed_named(s, &["c1"]).await;
    let mut c2 = s.raw().await;
    c2.handshake(&connect("c2")).await;
    drop(c2);
    closed_named(s, &["c1", "c2"]).await;
    let mut c3 = s.raw().await;
    c3.handshake(&connect("c3")).await;
    c3.send("BOGUS\r\n").await;
    while c3.next().await.is_some() {}
    closed_named(s, &["c1", "c2", "c3"]).await;
    let mut open = s.raw().await;
    open.handshake(&connect("open")).await;
    open.send("PING\r\n").await;
    assert_eq!(reply(&mut open).await.as_deref(), Some("PONG"));
    open
}

fn names(v: &Value) -> Vec<String> {
    v["connections"]
        .as_array()
        .unwrap_or_else(|| panic!("no connections in {v:#}"))
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

fn named<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {v:#}"))
}

/// Waits until the closed connections with names are exactly `want`.
async fn closed_named(s: &Server, want: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = s.json("/connz?state=closed").await;
        if names(&v) == want {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "closed connections never became {want:?}: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn closed_connections_as_the_reference(s: Server) {
    let _open = scenario(&s).await;
    let what = s.bin.display().to_string();

    let v = s.json("/connz?state=closed&subs=detail").await;
    assert_eq!(names(&v), ["c1", "c2", "c3"], "{what}");
    for n in ["c1", "c2"] {
        assert_eq!(named(&v, n)["reason"], "Client Closed", "{what}: {v:#}");
    }
    assert_eq!(
        named(&v, "c3")["reason"],
        "Protocol Violation",
        "{what}: {v:#}"
    );
    let c1 = named(&v, "c1");
    assert!(
        c1["stop"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{what}: {c1}"
    );
    assert_eq!(c1["subscriptions"], 2, "{what}: {c1}");
    assert_eq!(
        (c1["in_msgs"].as_u64(), c1["out_msgs"].as_u64()),
        (Some(1), Some(1)),
        "{what}: {c1}"
    );
    let mut listed: Vec<String> = c1["subscriptions_list_detail"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no subscription list: {c1}"))
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["subject"].as_str().unwrap(),
                d["qgroup"].as_str().unwrap_or("-")
            )
        })
        .collect();
    listed.sort();
    assert_eq!(listed, ["a -", "b q"], "{what}");

    // Most recently closed first.
    let v = s.json("/connz?state=closed&sort=stop").await;
    assert_eq!(names(&v), ["c3", "c2", "c1"], "{what}");
    let v = s.json("/connz?state=closed&sort=stop&limit=1").await;
    assert_eq!(names(&v), ["c3"], "{what}");
    // By reason: "Client Closed" before "Protocol Violation".
    let v = s.json("/connz?state=closed&sort=reason").await;
    let order = names(&v);
    assert_eq!(
        order.last().map(String::as_str),
        Some("c3"),
        "{what}: {order:?}"
    );
    // Open and closed together; open alone.
    let v = s.json("/connz?state=ANY").await;
    assert_eq!(names(&v), ["c1", "c2", "c3", "open"], "{what}");
    assert!(named(&v, "open").get("stop").is_none(), "{what}");
    assert!(v["total"].as_u64().unwrap() >= 4, "{what}: {v:#}");
    let v = s.json("/connz").await;
    assert_eq!(names(&v), ["open"], "{what}");

    for (path, words) in [
        (
            "/connz?sort=stop",
            "sort by stop only valid on closed connections",
        ),
        (
            "/connz?state=all&sort=reason",
            "sort by reason only valid on closed connections",
        ),
        ("/connz?state=bogus", "Error decoding state for bogus"),
    ] {
        let (status, body) = s.http(path).await;
        assert_eq!(status, 400, "{what} {path}: {body}");
        assert!(body.contains(words), "{what} {path}: {body}");
    }
}

#[tokio::test]
async fn closed_connections_are_listed_as_the_reference_lists_them() {
    closed_connections_as_the_reference(Server::start(&[])).await;
}

#[tokio::test]
async fn closed_connections_on_the_reference() {
    closed_connections_as_the_reference(Server::start_bin(&ref_server_2_15(), &[])).await;
}

/// `max_closed_clients`: only the newest are kept, whichever shard
/// closed them; 0 means the default (the reference has no way to keep
/// none; a negative value makes it panic, and is refused here).
async fn only_the_newest(bin: &std::path::Path) {
    for (max, want) in [(2, vec!["c2", "c3"]), (0, vec!["c1", "c2", "c3"])] {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("s.conf");
        std::fs::write(&conf, format!("max_closed_clients: {max}\n")).unwrap();
        let s = Server::start_bin(bin, &["-c", conf.to_str().unwrap()]);
        let mut open = s.raw().await;
        open.handshake(&connect("open")).await;
        for n in ["c1", "c2", "c3"] {
            let mut c = s.raw().await;
            c.handshake(&connect(n)).await;
            c.send("PING\r\n").await;
            assert_eq!(reply(&mut c).await.as_deref(), Some("PONG"));
            drop(c);
            // Each one gone before the next connects (stop order).
            let deadline = Instant::now() + Duration::from_secs(5);
            while names(&s.json("/connz").await).contains(&n.to_string()) {
                assert!(Instant::now() < deadline, "{n} never closed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let v = s.json("/connz?state=closed").await;
        assert_eq!(
            names(&v),
            want,
            "{} max_closed_clients {max}: {v:#}",
            bin.display()
        );
    }
}

#[tokio::test]
async fn max_closed_clients_keeps_the_newest() {
    only_the_newest(&server_bin()).await;
}

#[tokio::test]
async fn max_closed_clients_on_the_reference() {
    only_the_newest(&ref_server_2_15()).await;
}
