//! Hardening #15, the monitoring HTTP listener: a deadline for the request
//! head, a cap on open connections, a bounded request head, and `/connz`
//! paged inside each shard with bounded subscription lists. They pass
//! against nats-server 2.15.3 too, except the parts marked broker-edge
//! only (the reference has no connection cap, allows a 1 MiB head and
//! lists every subscription).

mod common;

use std::time::{Duration, Instant};

use common::{is_reference, Raw, Server, STEP};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const QUIET: &str = r#"{"verbose":false,"pedantic":false,"protocol":1}"#;

/// Broker Edge: monitoring connections open at once per shard.
const CAP_PER_SHARD: usize = 32;

async fn http_conn(s: &Server) -> TcpStream {
    tokio::time::timeout(STEP, TcpStream::connect(("127.0.0.1", s.http_port)))
        .await
        .expect("connect timed out")
        .expect("connect to the monitoring port")
}

/// True when the server closed `c` (EOF or reset) within `within`;
/// panics if it answered something but a refusal (503 past the cap, 400
/// for a head cut at the deadline, as the reference answers then).
async fn closed_within(c: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(within, c.read(&mut buf)).await {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => {
            let got = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(
                got.starts_with("HTTP/1.1 503 ") || got.starts_with("HTTP/1.1 400 "),
                "unexpected answer {got:?}"
            );
            true
        }
    }
}

/// The whole answer to `request` (the status line first), written while
/// it is read, so that a server that refuses early is seen answering.
async fn exchange(s: &Server, request: Vec<u8>) -> String {
    let (mut r, mut w) = http_conn(s).await.into_split();
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&request).await;
        w
    });
    let mut got = Vec::new();
    // A reset after the answer is fine: what was read is kept.
    let _ = tokio::time::timeout(STEP, r.read_to_end(&mut got)).await;
    drop(writer.await);
    String::from_utf8_lossy(&got).into_owned()
}

/// A client trickling its request head one byte a second is cut once the
/// head deadline (the reference's `ReadHeaderTimeout`, 5 s) has passed,
/// with a 400 as the reference answers, while /healthz keeps answering others all along.
/// Before: each read had its own 10 s timeout, so a byte every few
/// seconds kept the connection (and its task) forever.
#[tokio::test]
async fn slow_request_head_is_cut_at_the_deadline() {
    let s = Server::start(&[]);
    let mut slow = http_conn(&s).await;
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaa";
    let mut cut = None;
    for b in head.iter().take(15) {
        if slow.write_all(&[*b]).await.is_err() {
            cut = Some(started.elapsed());
            break;
        }
        let (status, body) = s.http("/healthz").await;
        assert_eq!(status, 200, "{body}");
        if closed_within(&mut slow, Duration::from_secs(1)).await {
            cut = Some(started.elapsed());
            break;
        }
    }
    let cut = cut.expect("a client sending a byte a second was never cut");
    assert!(
        cut >= Duration::from_secs(4) && cut <= Duration::from_secs(8),
        "cut after {cut:?}, want about 5 s"
    );
    assert_eq!(s.json("/healthz").await["status"], "ok");
}

/// Many idle monitoring connections (more than the cap) do not lock out a
/// fresh request: Broker Edge closes the oldest ones still sending their
/// head (so at most the cap stay open) and serves the new one at once; the
/// reference keeps them all. Either way none outlives the head deadline.
#[tokio::test]
async fn idle_connections_past_the_cap_do_not_lock_out_healthz() {
    const IDLE: usize = 300;
    let s = Server::start(&[]);
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(http_conn(&s).await);
    }
    let started = Instant::now();
    let (status, body) = s.http("/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "/healthz took {:?} behind {IDLE} idle connections",
        started.elapsed()
    );

    let closed = futures::future::join_all(
        idle.iter_mut()
            .map(|c| closed_within(c, Duration::from_millis(500))),
    )
    .await;
    let open = closed.iter().filter(|c| !**c).count();
    if !is_reference() {
        let shards: usize = common::shards().parse().expect("shard count");
        assert!(
            open <= CAP_PER_SHARD * shards,
            "{open} of {IDLE} idle connections open, cap {CAP_PER_SHARD} x {shards} shards"
        );
    }

    // None outlives the head deadline (5 s after it was accepted).
    let left = futures::future::join_all(
        idle.iter_mut()
            .zip(&closed)
            .filter(|(_, c)| !**c)
            .map(|(c, _)| closed_within(c, Duration::from_secs(7))),
    )
    .await;
    assert!(
        left.iter().all(|c| *c),
        "{} idle connections still open after the head deadline",
        left.iter().filter(|c| !**c).count()
    );
    assert_eq!(s.json("/healthz").await["status"], "ok");
}

/// A request head over the limit is refused with 431 as Go's server
/// refuses one over `MaxHeaderBytes` (1 MiB there, 16 KiB here), and
/// malformed heads with 400; the listener keeps serving. Before: 400 for
/// an oversized head, and a header count over 32 was a 400 too.
#[tokio::test]
async fn oversized_request_head_is_refused() {
    let s = Server::start(&[]);
    let mut sizes = vec![(1 << 20) + 8 * 1024];
    if !is_reference() {
        sizes.push(64 * 1024);
    }
    for size in sizes {
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(size)
        );
        let got = exchange(&s, head.into_bytes()).await;
        assert!(
            got.starts_with("HTTP/1.1 431 "),
            "{size}-byte header: {:?}",
            &got[..got.len().min(200)]
        );
    }
    if !is_reference() {
        // A request line alone over the limit, and too many header lines.
        let line = format!("GET /healthz?{} HTTP/1.1\r\n\r\n", "x".repeat(32 * 1024));
        let got = exchange(&s, line.into_bytes()).await;
        assert!(
            got.starts_with("HTTP/1.1 431 "),
            "long request line: {got:?}"
        );
        let mut many = String::from("GET /healthz HTTP/1.1\r\n");
        for i in 0..100 {
            many.push_str(&format!("X-H{i}: v\r\n"));
        }
        many.push_str("\r\n");
        let got = exchange(&s, many.into_bytes()).await;
        assert!(got.starts_with("HTTP/1.1 431 "), "100 headers: {got:?}");
    }
    let got = exchange(&s, b"\x01\x02 nonsense\r\n\r\n".to_vec()).await;
    assert!(got.starts_with("HTTP/1.1 400 "), "garbage: {got:?}");
    assert_eq!(s.json("/healthz").await["status"], "ok");
}

/// Waits for PONG (the reference may send an INFO update first).
async fn pong(r: &mut Raw) {
    loop {
        match r.next().await.as_deref() {
            Some("PONG") => return,
            Some(l) if l.starts_with("INFO ") => continue,
            other => panic!("expected PONG, got {other:?}"),
        }
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned number: {v}"))
}

/// `/connz?subs=1` over more connections than the default limit answers
/// at most the limit (1024, as the reference's `DefaultConnListSize`, also
/// for `limit=0`), each with its subscriptions; an explicit page is the
/// same page a global sort gives; a connection's list is bounded
/// (Broker Edge: 1024 entries, its `subscriptions` count stays exact; the
/// reference lists all). Before: every shard reported every connection
/// with every subscription, and `limit=0` gave an empty page.
#[tokio::test]
async fn connz_with_subs_returns_at_most_the_limit() {
    const N: usize = 1100;
    let s = Server::start(&[]);
    let mut raws = Vec::new();
    for i in 0..N {
        let mut r = s.raw().await;
        r.send(&format!(
            "CONNECT {QUIET}\r\nSUB a.{i} 1\r\nSUB b.{i} q 2\r\n"
        ))
        .await;
        raws.push(r);
    }
    for r in &mut raws {
        r.send("PING\r\n").await;
        pong(r).await;
    }
    let mut cids: Vec<u64> = raws.iter().map(|r| u(&r.info["client_id"])).collect();
    cids.sort();

    let deadline = Instant::now() + STEP;
    let v = loop {
        let v = s.json("/connz?subs=1").await;
        if u(&v["total"]) == N as u64 {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "total never reached {N}: {}",
            v["total"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(u(&v["limit"]), 1024);
    assert_eq!(u(&v["num_connections"]), 1024);
    let conns = v["connections"].as_array().expect("connections");
    assert_eq!(conns.len(), 1024);
    let got: Vec<u64> = conns.iter().map(|c| u(&c["cid"])).collect();
    assert_eq!(got, cids[..1024], "default order is by cid");
    for c in conns {
        let list = c["subscriptions_list"]
            .as_array()
            .expect("subscriptions_list");
        assert_eq!(list.len(), 2, "{c}");
    }

    let v = s.json("/connz?subs=detail&limit=0").await;
    assert_eq!(u(&v["num_connections"]), 1024, "limit=0 is the default");

    let v = s.json("/connz?subs=1&sort=cid&offset=1000&limit=30").await;
    assert_eq!(u(&v["total"]), N as u64);
    let got: Vec<u64> = v["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .map(|c| u(&c["cid"]))
        .collect();
    assert_eq!(got, cids[1000..1030]);

    // Most subscriptions first, across shards: one connection with many.
    let big = &mut raws[N / 2];
    let mut subs = String::new();
    for i in 0..1500 {
        subs.push_str(&format!("SUB many.{i} {}\r\n", 100 + i));
    }
    subs.push_str("PING\r\n");
    big.send(&subs).await;
    pong(big).await;
    let big_cid = u(&big.info["client_id"]);
    let v = s.json("/connz?subs=1&sort=subs&limit=3").await;
    let conns = v["connections"].as_array().expect("connections");
    assert_eq!(conns.len(), 3);
    assert_eq!(u(&conns[0]["cid"]), big_cid);
    assert_eq!(u(&conns[0]["subscriptions"]), 1502);
    let listed = conns[0]["subscriptions_list"]
        .as_array()
        .expect("subscriptions_list")
        .len();
    assert_eq!(listed, if is_reference() { 1502 } else { 1024 });

    // /subsz pages the same way.
    let v = s.json("/subsz?subs=1&limit=7&offset=3").await;
    assert_eq!(v["subscriptions_list"].as_array().map(Vec::len), Some(7));
    assert!(u(&v["total"]) >= (2 * N + 1500) as u64, "{}", v["total"]);
}
