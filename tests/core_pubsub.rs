//! Core publish/subscribe behaviour as an async-nats client sees it:
//! plain and wildcard subscriptions, queue groups spread over many
//! connections (and so over shards), request/reply, headers, no-responders,
//! auto-unsubscribe, echo off, and delivery/ordering across connections.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_nats::{Client, HeaderMap, Message, Subscriber};
use bytes::Bytes;
use common::{queued, sync, within, Server};
use futures::StreamExt;

/// Next message on `sub`, bounded; panics on timeout or end of stream.
async fn recv(sub: &mut Subscriber) -> Message {
    within("message delivery", sub.next())
        .await
        .expect("subscription ended unexpectedly")
}

/// Socket flush only (for publishers); use `sync` where the server must
/// have processed what was sent.
async fn flush(c: &Client) {
    within("flush", c.flush()).await.expect("flush");
}

#[tokio::test]
async fn publish_reaches_subscriber_in_order() {
    let s = Server::start(&[]);
    let sub_c = s.client().await;
    let pub_c = s.client().await;
    let mut sub = sub_c.subscribe("greet.plain").await.unwrap();
    sync(&sub_c).await;
    for i in 0..3 {
        pub_c
            .publish("greet.plain", format!("hello {i}").into())
            .await
            .unwrap();
    }
    // A different subject must not be delivered.
    pub_c.publish("greet.other", "nope".into()).await.unwrap();
    pub_c.publish("greet.plain", "last".into()).await.unwrap();
    flush(&pub_c).await;
    for i in 0..3 {
        let m = recv(&mut sub).await;
        assert_eq!(m.subject.as_str(), "greet.plain");
        assert_eq!(m.payload, Bytes::from(format!("hello {i}")));
        assert!(m.reply.is_none());
    }
    assert_eq!(recv(&mut sub).await.payload, "last");
}

#[tokio::test]
async fn empty_and_binary_payloads_round_trip() {
    let s = Server::start(&[]);
    let c = s.client().await;
    let mut sub = c.subscribe("bin").await.unwrap();
    sync(&c).await;
    let binary: Vec<u8> = (0..=255u8)
        .chain(b"\r\nPUB x 1\r\n".iter().copied())
        .collect();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    c.publish("bin", Bytes::new()).await.unwrap();
    c.publish("bin", binary.clone().into()).await.unwrap();
    c.publish("bin", big.clone().into()).await.unwrap();
    flush(&c).await;
    assert!(recv(&mut sub).await.payload.is_empty());
    assert_eq!(recv(&mut sub).await.payload, binary);
    assert_eq!(recv(&mut sub).await.payload, big);
}

/// Subscribers for `*`, `>` and mixed patterns, each on its own connection,
/// see exactly the subjects their pattern matches.
#[tokio::test]
async fn wildcard_subscriptions_match_like_nats() {
    let s = Server::start(&[]);
    let patterns = ["foo.*", "foo.>", "*.bar", ">", "*.>", "foo.bar"];
    let mut subs = Vec::new();
    let mut clients = Vec::new();
    for p in patterns {
        let c = s.client().await;
        let sub = c.subscribe(p).await.unwrap();
        sync(&c).await;
        subs.push(sub);
        clients.push(c);
    }
    let publisher = s.client().await;
    let published = [
        "foo.bar",
        "foo.bar.baz",
        "foo",
        "x.bar",
        "foo.x.bar",
        "bar.foo",
    ];
    for subj in published {
        publisher.publish(subj, subj.into()).await.unwrap();
    }
    // `foo.bar` matches every pattern above, so it marks the end.
    publisher.publish("foo.bar", "end".into()).await.unwrap();
    flush(&publisher).await;

    let expected: [&[&str]; 6] = [
        &["foo.bar"],
        &["foo.bar", "foo.bar.baz", "foo.x.bar"],
        &["foo.bar", "x.bar"],
        &[
            "foo.bar",
            "foo.bar.baz",
            "foo",
            "x.bar",
            "foo.x.bar",
            "bar.foo",
        ],
        &["foo.bar", "foo.bar.baz", "x.bar", "foo.x.bar", "bar.foo"],
        &["foo.bar"],
    ];
    for ((p, sub), want) in patterns.iter().zip(subs.iter_mut()).zip(expected) {
        let mut got = Vec::new();
        loop {
            let m = recv(sub).await;
            if m.subject.starts_with("_sync") {
                continue;
            }
            if m.payload == "end" {
                break;
            }
            assert_eq!(m.payload, m.subject.as_str().as_bytes());
            got.push(m.subject.to_string());
        }
        // Per-publisher order holds, so compare as sequences.
        assert_eq!(got, want, "pattern {p}");
    }
}

/// One connection with overlapping subscriptions gets one copy per
/// matching subscription (nats-server semantics), each tagged with its sid.
#[tokio::test]
async fn overlapping_subscriptions_on_one_connection_each_get_a_copy() {
    let s = Server::start(&[]);
    let c = s.client().await;
    let mut a = c.subscribe("ov.x").await.unwrap();
    let mut b = c.subscribe("ov.*").await.unwrap();
    let mut d = c.subscribe("ov.>").await.unwrap();
    sync(&c).await;
    let p = s.client().await;
    p.publish("ov.x", "1".into()).await.unwrap();
    flush(&p).await;
    for sub in [&mut a, &mut b, &mut d] {
        assert_eq!(recv(sub).await.payload, "1");
    }
}

/// Queue subscribers spread over many connections: every message goes to
/// exactly one member, several members get work, and a plain subscriber on
/// the same subject still gets everything.
#[tokio::test]
async fn queue_group_delivers_each_message_to_exactly_one_member() {
    const MEMBERS: usize = 8;
    const MSGS: usize = 400;
    let s = Server::start(&[]);
    let mut members = Vec::new();
    for _ in 0..MEMBERS {
        let c = s.client().await;
        let q = c
            .queue_subscribe("work.items", "workers".to_string())
            .await
            .unwrap();
        let done = c.subscribe("work.done").await.unwrap();
        sync(&c).await;
        members.push((c, q, done));
    }
    let plain_c = s.client().await;
    let mut plain = plain_c.subscribe("work.items").await.unwrap();
    sync(&plain_c).await;

    let publisher = s.client().await;
    for i in 0..MSGS {
        publisher
            .publish("work.items", i.to_string().into())
            .await
            .unwrap();
    }
    publisher.publish("work.done", "done".into()).await.unwrap();
    flush(&publisher).await;

    // Everything published before `work.done` reached each member's
    // connection before `work.done` did (per-publisher order), and the
    // client has already queued it, so draining without waiting is exact.
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut per_member = Vec::new();
    for (_, q, done) in members.iter_mut() {
        assert_eq!(recv(done).await.payload, "done");
        let mut n = 0;
        while let Some(m) = queued(q) {
            let i: usize = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
            *seen.entry(i).or_default() += 1;
            n += 1;
        }
        per_member.push(n);
    }
    let dups: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(dups.is_empty(), "delivered more than once: {dups:?}");
    assert_eq!(seen.len(), MSGS, "per member: {per_member:?}");
    let busy = per_member.iter().filter(|&&n| n > 0).count();
    assert!(busy >= 2, "work not spread over members: {per_member:?}");

    for i in 0..MSGS {
        assert_eq!(recv(&mut plain).await.payload, Bytes::from(i.to_string()));
    }
}

/// Two different queue groups on one subject each get every message once.
#[tokio::test]
async fn distinct_queue_groups_each_get_every_message() {
    const MSGS: usize = 100;
    let s = Server::start(&[]);
    let mut groups: Vec<Vec<(Client, Subscriber)>> = Vec::new();
    for g in ["ga", "gb"] {
        let mut members = Vec::new();
        for _ in 0..3 {
            let c = s.client().await;
            let q = c.queue_subscribe("qq", g.to_string()).await.unwrap();
            sync(&c).await;
            members.push((c, q));
        }
        groups.push(members);
    }
    let p = s.client().await;
    for i in 0..MSGS {
        p.publish("qq", i.to_string().into()).await.unwrap();
    }
    flush(&p).await;
    for members in groups.iter_mut() {
        let mut streams = futures::stream::select_all(members.iter_mut().map(|(_, q)| q));
        let mut got = HashSet::new();
        while got.len() < MSGS {
            let m = within("queue delivery", streams.next()).await.unwrap();
            assert!(got.insert(m.payload.clone()), "duplicate {:?}", m.payload);
        }
    }
}

#[tokio::test]
async fn request_reply_across_connections() {
    let s = Server::start(&[]);
    let responder = s.client().await;
    let mut svc = responder.subscribe("svc.upper").await.unwrap();
    sync(&responder).await;
    let r2 = responder.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            let reply = m.reply.expect("request without reply subject");
            let up = String::from_utf8_lossy(&m.payload).to_uppercase();
            r2.publish(reply, up.into()).await.unwrap();
        }
    });

    let requester = s.client().await;
    let reqs = (0..20).map(|i| {
        let r = requester.clone();
        async move {
            let resp = within("request", r.request("svc.upper", format!("hi {i}").into()))
                .await
                .expect("request failed");
            assert_eq!(resp.payload, Bytes::from(format!("HI {i}")));
        }
    });
    futures::future::join_all(reqs).await;
    task.abort();
}

#[tokio::test]
async fn headers_round_trip() {
    let s = Server::start(&[]);
    let sub_c = s.client().await;
    let mut sub = sub_c.subscribe("hdr").await.unwrap();
    sync(&sub_c).await;
    let pub_c = s.client().await;
    assert!(pub_c.server_info().headers, "server must announce headers");

    let mut h = HeaderMap::new();
    h.insert("X-Single", "one");
    h.append("X-Multi", "a");
    h.append("X-Multi", "b");
    pub_c
        .publish_with_headers("hdr", h, "body".into())
        .await
        .unwrap();
    // Headers with an empty payload.
    let mut h2 = HeaderMap::new();
    h2.insert("Only", "headers");
    pub_c
        .publish_with_headers("hdr", h2, Bytes::new())
        .await
        .unwrap();
    // And a plain message after headers.
    pub_c.publish("hdr", "plain".into()).await.unwrap();
    flush(&pub_c).await;

    let m = recv(&mut sub).await;
    assert_eq!(m.payload, "body");
    let hm = m.headers.expect("headers lost");
    assert_eq!(hm.get("X-Single").map(|v| v.as_str()), Some("one"));
    let multi: Vec<_> = hm
        .get_all("X-Multi")
        .map(|v| v.as_str().to_string())
        .collect();
    assert_eq!(multi, ["a", "b"]);

    let m = recv(&mut sub).await;
    assert!(m.payload.is_empty());
    assert_eq!(
        m.headers
            .expect("headers lost")
            .get("Only")
            .map(|v| v.as_str()),
        Some("headers")
    );

    let m = recv(&mut sub).await;
    assert_eq!(m.payload, "plain");
    assert!(m.headers.map(|h| h.is_empty()).unwrap_or(true));
}

#[tokio::test]
async fn request_with_headers_is_answered_with_headers() {
    let s = Server::start(&[]);
    let responder = s.client().await;
    let mut svc = responder.subscribe("svc.echo").await.unwrap();
    sync(&responder).await;
    let r2 = responder.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            let h = m.headers.clone().unwrap_or_default();
            r2.publish_with_headers(m.reply.unwrap(), h, m.payload)
                .await
                .unwrap();
        }
    });
    let requester = s.client().await;
    let mut h = HeaderMap::new();
    h.insert("Trace-Id", "abc-123");
    let resp = within(
        "request",
        requester.request_with_headers("svc.echo", h, "ping".into()),
    )
    .await
    .unwrap();
    assert_eq!(resp.payload, "ping");
    assert_eq!(
        resp.headers.unwrap().get("Trace-Id").map(|v| v.as_str()),
        Some("abc-123")
    );
    task.abort();
}

#[tokio::test]
async fn request_without_responders_fails_fast_with_no_responders() {
    let s = Server::start(&[]);
    let c = s.client().await;
    let started = std::time::Instant::now();
    let err = within("request", c.request("nobody.home", "x".into()))
        .await
        .expect_err("request to a subject without subscribers must fail");
    assert_eq!(
        err.kind(),
        async_nats::RequestErrorKind::NoResponders,
        "got {err:?}"
    );
    // The 503 status comes from the server at once, not from a client timeout.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn unsubscribe_after_n_messages() {
    let s = Server::start(&[]);
    let c = s.client().await;
    let mut sub = c.subscribe("auto").await.unwrap();
    sub.unsubscribe_after(3).await.unwrap();
    sync(&c).await;
    let p = s.client().await;
    for i in 0..5 {
        p.publish("auto", i.to_string().into()).await.unwrap();
    }
    flush(&p).await;
    for i in 0..3 {
        assert_eq!(recv(&mut sub).await.payload, Bytes::from(i.to_string()));
    }
    let end = within("end of subscription", sub.next()).await;
    assert!(end.is_none(), "got a message past the limit: {end:?}");
}

/// The server (not only the client library) stops delivering after N:
/// checked on the wire with a raw connection.
#[tokio::test]
async fn server_enforces_unsub_max_on_the_wire() {
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.handshake(r#"{"verbose":false,"pedantic":false,"protocol":1}"#)
        .await;
    // `wire.end` (unlimited) marks the end of the burst.
    raw.send("SUB wire.auto 7\r\nUNSUB 7 2\r\nSUB wire.end 8\r\nPING\r\n")
        .await;
    assert_eq!(raw.next().await.as_deref(), Some("PONG"));
    let p = s.client().await;
    for i in 0..5 {
        p.publish("wire.auto", i.to_string().into()).await.unwrap();
    }
    p.publish("wire.end", "end".into()).await.unwrap();
    flush(&p).await;
    let mut got = Vec::new();
    loop {
        let line = raw.next().await.expect("connection closed");
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[0], "MSG", "unexpected line {line:?}");
        let n: usize = parts.last().unwrap().parse().unwrap();
        let payload = raw.bytes(n + 2).await;
        if parts[1] == "wire.end" {
            break;
        }
        assert_eq!(parts[2], "7");
        got.push(String::from_utf8_lossy(&payload[..n]).into_owned());
    }
    assert_eq!(got, ["0", "1"]);
}

#[tokio::test]
async fn echo_off_suppresses_own_messages_only() {
    let s = Server::start(&[]);
    let quiet = s
        .client_with(async_nats::ConnectOptions::new().no_echo())
        .await;
    let mut quiet_sub = quiet.subscribe("echo.t").await.unwrap();
    common::sync_no_echo(&quiet).await;
    let loud = s.client().await;
    let mut loud_sub = loud.subscribe("echo.t").await.unwrap();
    sync(&loud).await;

    quiet.publish("echo.t", "from-quiet".into()).await.unwrap();
    common::sync_no_echo(&quiet).await;
    loud.publish("echo.t", "from-loud".into()).await.unwrap();
    flush(&loud).await;

    // The no-echo connection sees the other's message first and only.
    assert_eq!(recv(&mut quiet_sub).await.payload, "from-loud");
    // The echo-on connection sees both, including its own.
    let mut got = vec![
        recv(&mut loud_sub).await.payload,
        recv(&mut loud_sub).await.payload,
    ];
    got.sort();
    assert_eq!(got, [Bytes::from("from-loud"), Bytes::from("from-quiet")]);
    assert!(queued(&mut quiet_sub).is_none());
}

/// Many connections (spread over shards): each subscribes to its own
/// subject and to a broadcast subject; each publishes a numbered stream to
/// its neighbour and one broadcast. Every stream arrives complete and in
/// order, and every connection gets every broadcast.
#[tokio::test]
async fn many_connections_cross_delivery_in_order() {
    const CONNS: usize = 40;
    const PER: usize = 50;
    let s = Server::start(&[]);
    let mut clients = Vec::new();
    let mut direct = Vec::new();
    let mut bcast = Vec::new();
    for i in 0..CONNS {
        let c = s.client().await;
        direct.push(c.subscribe(format!("conn.{i}")).await.unwrap());
        bcast.push(c.subscribe("all.news").await.unwrap());
        sync(&c).await;
        clients.push(c);
    }
    // Publish concurrently from all connections.
    let pubs = clients.iter().enumerate().map(|(i, c)| async move {
        let to = format!("conn.{}", (i + 1) % CONNS);
        for n in 0..PER {
            c.publish(to.clone(), format!("{i}:{n}").into())
                .await
                .unwrap();
        }
        c.publish("all.news", i.to_string().into()).await.unwrap();
        flush(c).await;
    });
    futures::future::join_all(pubs).await;

    for (i, sub) in direct.iter_mut().enumerate() {
        let from = (i + CONNS - 1) % CONNS;
        for n in 0..PER {
            let m = recv(sub).await;
            assert_eq!(
                m.payload,
                Bytes::from(format!("{from}:{n}")),
                "conn {i} stream from {from}"
            );
        }
    }
    for (i, sub) in bcast.iter_mut().enumerate() {
        let mut got = HashSet::new();
        while got.len() < CONNS {
            let m = recv(sub).await;
            assert!(
                got.insert(m.payload.clone()),
                "conn {i}: duplicate broadcast"
            );
        }
    }
}

/// Several publishers on separate connections flood one subscriber on yet
/// another connection; each publisher's messages arrive in publish order.
#[tokio::test]
async fn per_publisher_order_is_preserved() {
    const PUBS: usize = 4;
    const PER: usize = 5_000;
    let s = Server::start(&[]);
    let sub_c = s
        .client_with(async_nats::ConnectOptions::new().subscription_capacity(PUBS * PER + 16))
        .await;
    let mut sub = sub_c.subscribe("ordered").await.unwrap();
    sync(&sub_c).await;
    let mut publishers = Vec::new();
    for _ in 0..PUBS {
        publishers.push(s.client().await);
    }
    let pubs = publishers.iter().enumerate().map(|(p, c)| async move {
        for n in 0..PER {
            c.publish("ordered", format!("{p}:{n}").into())
                .await
                .unwrap();
        }
        flush(c).await;
    });
    futures::future::join_all(pubs).await;

    let mut next: BTreeMap<usize, usize> = (0..PUBS).map(|p| (p, 0)).collect();
    for _ in 0..PUBS * PER {
        let m = recv(&mut sub).await;
        let text = std::str::from_utf8(&m.payload).unwrap();
        let (p, n) = text.split_once(':').unwrap();
        let (p, n): (usize, usize) = (p.parse().unwrap(), n.parse().unwrap());
        assert_eq!(n, next[&p], "publisher {p} out of order");
        *next.get_mut(&p).unwrap() += 1;
    }
    assert!(next.values().all(|&n| n == PER));
}

/// A subscription is visible to every other connection as soon as the
/// subscriber's flush returns (single-server semantics, whatever the shard).
#[tokio::test]
async fn new_subscription_is_live_after_flush() {
    let s = Server::start(&[]);
    let publisher = s.client().await;
    for i in 0..16 {
        let c = s.client().await;
        let subject = format!("fresh.{i}");
        let mut sub = c.subscribe(subject.clone()).await.unwrap();
        sync(&c).await;
        publisher.publish(subject, "x".into()).await.unwrap();
        flush(&publisher).await;
        assert_eq!(recv(&mut sub).await.payload, "x", "subscription {i}");
    }
}

/// After UNSUB (and a flush) nothing more is delivered to that subscription,
/// while other subscribers keep receiving.
#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let s = Server::start(&[]);
    let a = s.client().await;
    let b = s.client().await;
    let mut sa = a.subscribe("un.x").await.unwrap();
    let mut sb = b.subscribe("un.x").await.unwrap();
    sync(&a).await;
    sync(&b).await;
    let p = s.client().await;
    p.publish("un.x", "1".into()).await.unwrap();
    flush(&p).await;
    assert_eq!(recv(&mut sa).await.payload, "1");
    assert_eq!(recv(&mut sb).await.payload, "1");
    sa.unsubscribe().await.unwrap();
    sync(&a).await;
    // Keep a live subscription on `a` to prove the connection still works.
    let mut marker = a.subscribe("un.marker").await.unwrap();
    sync(&a).await;
    p.publish("un.x", "2".into()).await.unwrap();
    p.publish("un.marker", "m".into()).await.unwrap();
    flush(&p).await;
    assert_eq!(recv(&mut sb).await.payload, "2");
    assert_eq!(recv(&mut marker).await.payload, "m");
    assert!(
        within("closed subscription", sa.next()).await.is_none(),
        "delivery after unsubscribe"
    );
}

/// After members unsubscribe (and their round trip returns), the remaining
/// member of a queue group gets every message: nothing is routed to a
/// member that is gone, whichever shard it was on.
#[tokio::test]
async fn queue_group_rebalances_after_members_leave() {
    let s = Server::start(&[]);
    let mut members = Vec::new();
    for _ in 0..6 {
        let c = s.client().await;
        let q = c
            .queue_subscribe("jobs.rebalance", "g".to_string())
            .await
            .unwrap();
        sync(&c).await;
        members.push((c, q));
    }
    let (keep_c, mut keep) = members.pop().unwrap();
    for (c, mut q) in members {
        q.unsubscribe().await.unwrap();
        sync(&c).await;
    }
    let p = s.client().await;
    for i in 0..100 {
        p.publish("jobs.rebalance", i.to_string().into())
            .await
            .unwrap();
    }
    flush(&p).await;
    for i in 0..100 {
        assert_eq!(
            recv(&mut keep).await.payload,
            Bytes::from(i.to_string()),
            "message {i} lost or reordered"
        );
    }
    sync(&keep_c).await;
}

/// Many requesters on many connections against a queue group of responders
/// on other connections: every request gets its own answer.
#[tokio::test]
async fn request_reply_many_requesters_and_responders() {
    let s = Server::start(&[]);
    let mut tasks = Vec::new();
    for r in 0..3 {
        let c = s.client().await;
        let mut sub = c
            .queue_subscribe("svc.add", "adders".to_string())
            .await
            .unwrap();
        sync(&c).await;
        tasks.push(tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let n: u64 = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
                c.publish(m.reply.unwrap(), format!("{} by {r}", n + 1).into())
                    .await
                    .unwrap();
            }
        }));
    }
    let mut requesters = Vec::new();
    for _ in 0..8 {
        requesters.push(s.client().await);
    }
    let all = requesters.iter().enumerate().map(|(k, c)| async move {
        for j in 0..25u64 {
            let n = k as u64 * 1000 + j;
            let resp = within("request", c.request("svc.add", n.to_string().into()))
                .await
                .expect("request failed");
            let text = String::from_utf8(resp.payload.to_vec()).unwrap();
            assert!(
                text.starts_with(&format!("{} by ", n + 1)),
                "answer {text:?} for {n}"
            );
        }
    });
    futures::future::join_all(all).await;
    for t in tasks {
        t.abort();
    }
}

/// A 1 MiB message (the default max_payload) crosses connections intact.
#[tokio::test]
async fn max_size_message_crosses_connections_intact() {
    let s = Server::start(&[]);
    let sub_c = s.client().await;
    let mut sub = sub_c.subscribe("big.one").await.unwrap();
    sync(&sub_c).await;
    let p = s.client().await;
    let max = p.server_info().max_payload;
    assert_eq!(max, 1024 * 1024);
    let body: Vec<u8> = (0..max).map(|i| (i * 7 % 253) as u8).collect();
    for _ in 0..3 {
        p.publish("big.one", body.clone().into()).await.unwrap();
    }
    flush(&p).await;
    for _ in 0..3 {
        assert!(recv(&mut sub).await.payload == body, "payload corrupted");
    }
}

/// One publisher alternating between subjects; one subscriber connection
/// with a subscription per subject sees the exact publish interleaving
/// (order is per publisher and connection, not per subject).
#[tokio::test]
async fn interleaving_across_subjects_is_preserved() {
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.handshake(r#"{"verbose":false,"pedantic":false,"protocol":1}"#)
        .await;
    raw.send("SUB il.a 1\r\nSUB il.b 2\r\nSUB il.* 3\r\nPING\r\n")
        .await;
    assert_eq!(raw.next().await.as_deref(), Some("PONG"));
    let p = s.client().await;
    let mut expected = Vec::new();
    for i in 0..300 {
        let subj = if i % 3 == 0 { "il.b" } else { "il.a" };
        p.publish(subj, i.to_string().into()).await.unwrap();
        expected.push(i.to_string());
    }
    flush(&p).await;
    // Each message arrives twice (exact sid + wildcard sid), adjacent.
    for want in &expected {
        let mut sids = Vec::new();
        for _ in 0..2 {
            let line = raw.next().await.expect("closed");
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts[0], "MSG", "line {line:?}");
            let n: usize = parts[3].parse().unwrap();
            let body = raw.bytes(n + 2).await;
            assert_eq!(&body[..n], want.as_bytes(), "order broken at {want}");
            sids.push(parts[2].to_string());
        }
        sids.sort();
        assert!(
            sids.contains(&"3".to_string()),
            "wildcard copy missing: {sids:?}"
        );
    }
}

/// Several publishers at once into a queue group spread over connections:
/// still exactly one delivery per message.
#[tokio::test]
async fn queue_group_exactly_once_with_concurrent_publishers() {
    const MEMBERS: usize = 8;
    const PUBS: usize = 4;
    const PER: usize = 250;
    let s = Server::start(&[]);
    let mut members = Vec::new();
    for _ in 0..MEMBERS {
        let c = s.client().await;
        let q = c
            .queue_subscribe("cq.items", "w".to_string())
            .await
            .unwrap();
        let done = c.subscribe("cq.done").await.unwrap();
        sync(&c).await;
        members.push((c, q, done));
    }
    let mut publishers = Vec::new();
    for _ in 0..PUBS {
        publishers.push(s.client().await);
    }
    let pubs = publishers.iter().enumerate().map(|(p, c)| async move {
        for n in 0..PER {
            c.publish("cq.items", format!("{p}:{n}").into())
                .await
                .unwrap();
        }
        c.publish("cq.done", p.to_string().into()).await.unwrap();
        flush(c).await;
    });
    futures::future::join_all(pubs).await;

    let mut seen: HashMap<Bytes, usize> = HashMap::new();
    for (_, q, done) in members.iter_mut() {
        // Once every publisher's marker is here, all their items are too.
        for _ in 0..PUBS {
            recv(done).await;
        }
        while let Some(m) = queued(q) {
            *seen.entry(m.payload).or_default() += 1;
        }
    }
    let dups = seen.values().filter(|&&n| n > 1).count();
    assert_eq!(dups, 0, "messages delivered more than once");
    assert_eq!(seen.len(), PUBS * PER, "messages lost");
}

/// When the only subscriber goes away, requests get a prompt no-responders
/// answer again (no stale interest left on any shard).
#[tokio::test]
async fn no_responders_again_after_the_only_subscriber_leaves() {
    let s = Server::start(&[]);
    let requester = s
        .client_with(
            async_nats::ConnectOptions::new().request_timeout(Some(Duration::from_millis(500))),
        )
        .await;
    for round in 0..3 {
        let responder = s.client().await;
        let mut svc = responder.subscribe("svc.once").await.unwrap();
        sync(&responder).await;
        let r2 = responder.clone();
        let task = tokio::spawn(async move {
            if let Some(m) = svc.next().await {
                r2.publish(m.reply.unwrap(), "yes".into()).await.unwrap();
                r2.flush().await.unwrap();
            }
        });
        let resp = within("request", requester.request("svc.once", "?".into()))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(resp.payload, "yes");
        task.await.unwrap();
        drop(responder);

        // Once the server has processed the close, no responders again. A
        // request racing the close may be lost (the reference has that
        // window too), so only stale interest that lasts is an error.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match requester.request("svc.once", "?".into()).await {
                Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => break,
                other => assert!(
                    std::time::Instant::now() < deadline,
                    "round {round}: still routed 5 s after close: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Auto-unsubscribe is exact even with several publishers on other
/// connections publishing at once.
#[tokio::test]
async fn unsub_max_is_exact_with_concurrent_publishers() {
    const PUBS: usize = 4;
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.handshake(r#"{"verbose":false,"pedantic":false,"protocol":1}"#)
        .await;
    raw.send("SUB capped 1\r\nUNSUB 1 10\r\nSUB capped.end 2\r\nPING\r\n")
        .await;
    assert_eq!(raw.next().await.as_deref(), Some("PONG"));
    let mut publishers = Vec::new();
    for _ in 0..PUBS {
        publishers.push(s.client().await);
    }
    let pubs = publishers.iter().map(|c| async move {
        for i in 0..20 {
            c.publish("capped", i.to_string().into()).await.unwrap();
        }
        c.publish("capped.end", "end".into()).await.unwrap();
        flush(c).await;
    });
    futures::future::join_all(pubs).await;
    let (mut capped, mut ends) = (0, 0);
    while ends < PUBS {
        let line = raw.next().await.expect("closed");
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[0], "MSG", "line {line:?}");
        let n: usize = parts[3].parse().unwrap();
        raw.bytes(n + 2).await;
        match parts[2] {
            "1" => capped += 1,
            "2" => ends += 1,
            sid => panic!("unknown sid {sid}"),
        }
    }
    assert_eq!(capped, 10);
}

/// Removing some of the subscriptions on a subject (on one connection or
/// on several) leaves the others receiving.
#[tokio::test]
async fn interest_survives_partial_unsubscribe() {
    let s = Server::start(&[]);
    let a = s.client().await;
    let mut a1 = a.subscribe("rc.x").await.unwrap();
    let mut a2 = a.subscribe("rc.x").await.unwrap();
    let mut others = Vec::new();
    for _ in 0..7 {
        let c = s.client().await;
        let sub = c.subscribe("rc.x").await.unwrap();
        sync(&c).await;
        others.push((c, sub));
    }
    sync(&a).await;
    a1.unsubscribe().await.unwrap();
    sync(&a).await;
    let (keep_c, mut keep) = others.pop().unwrap();
    for (c, mut sub) in others {
        sub.unsubscribe().await.unwrap();
        sync(&c).await;
    }
    let p = s.client().await;
    p.publish("rc.x", "still".into()).await.unwrap();
    flush(&p).await;
    assert_eq!(recv(&mut a2).await.payload, "still");
    assert_eq!(recv(&mut keep).await.payload, "still");
    assert!(within("closed", a1.next()).await.is_none());
    sync(&keep_c).await;
}

/// Single-server semantics across shards: once the publisher's PING is
/// answered, its messages are queued to every subscriber, so a PING the
/// subscriber sends afterwards is answered after those messages.
#[tokio::test]
async fn publisher_round_trip_implies_delivery_before_subscribers_pong() {
    let s = Server::start(&[]);
    let quiet = r#"{"verbose":false,"pedantic":false,"protocol":1}"#;
    let mut subs = Vec::new();
    for _ in 0..4 {
        let mut r = s.raw().await;
        r.handshake(quiet).await;
        r.send("SUB rt.x 1\r\nPING\r\n").await;
        assert_eq!(r.next().await.as_deref(), Some("PONG"));
        subs.push(r);
    }
    let mut p = s.raw().await;
    p.handshake(quiet).await;
    for i in 0..50 {
        p.send("PUB rt.x 1\r\nm\r\nPING\r\n").await;
        assert_eq!(p.next().await.as_deref(), Some("PONG"));
        for (k, r) in subs.iter_mut().enumerate() {
            r.send("PING\r\n").await;
            let first = r.next().await;
            assert_eq!(
                first.as_deref(),
                Some("MSG rt.x 1 1"),
                "round {i}, subscriber {k}: PONG overtook a message the publisher had flushed"
            );
            assert_eq!(r.bytes(3).await, b"m\r\n");
            assert_eq!(r.next().await.as_deref(), Some("PONG"));
        }
    }
}

/// After UNSUB and a round trip, the server sends nothing more for that
/// sid, even for messages published on other connections (checked on the
/// wire, where the client library cannot hide late deliveries).
#[tokio::test]
async fn no_delivery_on_the_wire_after_unsub_round_trip() {
    let s = Server::start(&[]);
    let quiet = r#"{"verbose":false,"pedantic":false,"protocol":1}"#;
    let mut a = s.raw().await;
    a.handshake(quiet).await;
    let mut p = s.raw().await;
    p.handshake(quiet).await;
    for i in 0..30 {
        let sid = 100 + i;
        a.send(&format!("SUB un.wire {sid}\r\nSUB un.mark 1\r\nPING\r\n"))
            .await;
        assert_eq!(a.next().await.as_deref(), Some("PONG"));
        a.send(&format!(
            "UNSUB {sid}\r\nUNSUB 1\r\nSUB un.mark 1\r\nPING\r\n"
        ))
        .await;
        assert_eq!(a.next().await.as_deref(), Some("PONG"));
        p.send("PUB un.wire 1\r\nx\r\nPUB un.mark 1\r\ny\r\nPING\r\n")
            .await;
        assert_eq!(p.next().await.as_deref(), Some("PONG"));
        assert_eq!(
            a.next().await.as_deref(),
            Some("MSG un.mark 1 1"),
            "round {i}: delivery for an unsubscribed sid"
        );
        assert_eq!(a.bytes(3).await, b"y\r\n");
        a.send("UNSUB 1\r\nPING\r\n").await;
        assert_eq!(a.next().await.as_deref(), Some("PONG"));
    }
}

/// With echo off, a publisher that is itself a queue-group member never gets
/// its own messages, and they are not lost: another member gets them all.
#[tokio::test]
async fn echo_off_queue_member_passes_own_messages_to_others() {
    let s = Server::start(&[]);
    let quiet = s
        .client_with(async_nats::ConnectOptions::new().no_echo())
        .await;
    let mut own = quiet
        .queue_subscribe("eq.work", "g".to_string())
        .await
        .unwrap();
    common::sync_no_echo(&quiet).await;
    let other_c = s.client().await;
    let mut other = other_c
        .queue_subscribe("eq.work", "g".to_string())
        .await
        .unwrap();
    sync(&other_c).await;
    for i in 0..100 {
        quiet
            .publish("eq.work", i.to_string().into())
            .await
            .unwrap();
    }
    common::sync_no_echo(&quiet).await;
    for i in 0..100 {
        assert_eq!(recv(&mut other).await.payload, Bytes::from(i.to_string()));
    }
    assert!(
        queued(&mut own).is_none(),
        "echo-off member got its own message"
    );
}

/// Thousands of distinct subscriptions: each subject is routed to exactly
/// its own sid (sublist and cross-shard interest at scale).
#[tokio::test]
async fn thousands_of_subjects_route_to_their_own_sids() {
    const N: usize = 3000;
    let s = Server::start(&[]);
    let quiet = r#"{"verbose":false,"pedantic":false,"protocol":1}"#;
    let mut sub = s.raw().await;
    sub.handshake(quiet).await;
    let mut subs = String::new();
    for i in 0..N {
        subs.push_str(&format!("SUB many.{}.s{i} {}\r\n", i % 17, i + 1));
    }
    subs.push_str("SUB many.*.wild 999999\r\nPING\r\n");
    sub.send(&subs).await;
    assert_eq!(sub.next().await.as_deref(), Some("PONG"));
    let mut p = s.raw().await;
    p.handshake(quiet).await;
    let mut pubs = String::new();
    for i in (0..N).rev() {
        pubs.push_str(&format!("PUB many.{}.s{i} 1\r\nx\r\n", i % 17));
    }
    pubs.push_str("PUB many.3.wild 1\r\nw\r\nPING\r\n");
    p.send(&pubs).await;
    assert_eq!(p.next().await.as_deref(), Some("PONG"));
    for i in (0..N).rev() {
        assert_eq!(
            sub.next().await,
            Some(format!("MSG many.{}.s{i} {} 1", i % 17, i + 1))
        );
        sub.bytes(3).await;
    }
    assert_eq!(
        sub.next().await.as_deref(),
        Some("MSG many.3.wild 999999 1")
    );
}

/// A queue member with an auto-unsubscribe limit takes at most that many;
/// once it is done the group's other member gets the rest. Nothing is lost
/// to a member that has just reached its limit, on whatever shard.
#[tokio::test]
async fn queue_member_with_unsub_max_hands_over_without_loss() {
    const MSGS: usize = 200;
    let s = Server::start(&[]);
    let quiet = r#"{"verbose":false,"pedantic":false,"protocol":1}"#;
    let mut limited = Vec::new();
    for _ in 0..3 {
        let mut r = s.raw().await;
        r.handshake(quiet).await;
        r.send("SUB qmax g 1\r\nUNSUB 1 5\r\nSUB qmax.end 2\r\nPING\r\n")
            .await;
        assert_eq!(r.next().await.as_deref(), Some("PONG"));
        limited.push(r);
    }
    let mut steady = s.raw().await;
    steady.handshake(quiet).await;
    steady
        .send("SUB qmax g 1\r\nSUB qmax.end 2\r\nPING\r\n")
        .await;
    assert_eq!(steady.next().await.as_deref(), Some("PONG"));
    let mut p = s.raw().await;
    p.handshake(quiet).await;
    let mut burst = String::new();
    for i in 0..MSGS {
        let body = i.to_string();
        burst.push_str(&format!("PUB qmax {}\r\n{body}\r\n", body.len()));
    }
    burst.push_str("PUB qmax.end 1\r\ne\r\nPING\r\n");
    p.send(&burst).await;
    assert_eq!(p.next().await.as_deref(), Some("PONG"));

    async fn collect(r: &mut common::Raw) -> Vec<String> {
        let mut got = Vec::new();
        loop {
            let line = r.next().await.expect("closed");
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts[0], "MSG", "line {line:?}");
            let n: usize = parts[3].parse().unwrap();
            let body = r.bytes(n + 2).await;
            if parts[1] == "qmax.end" {
                return got;
            }
            got.push(String::from_utf8_lossy(&body[..n]).into_owned());
        }
    }
    let mut all = Vec::new();
    for r in limited.iter_mut() {
        let got = collect(r).await;
        assert!(got.len() <= 5, "limited member got {}", got.len());
        all.extend(got);
    }
    all.extend(collect(&mut steady).await);
    // Broker Edge: a message whose chosen member (on another shard) left in
    // the meantime is handed on to a member elsewhere, one hop later, so it
    // may arrive after the end marker. Nothing may be lost, though.
    while all.len() < MSGS {
        let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(2), steady.next()).await
        else {
            break;
        };
        let n: usize = line
            .split(' ')
            .nth(3)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let body = steady.bytes(n + 2).await;
        all.push(String::from_utf8_lossy(&body[..n]).into_owned());
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(unique.len(), all.len(), "duplicates");
    assert_eq!(all.len(), MSGS, "messages lost");
}

/// A queue member that unsubscribes in the middle of a burst: whatever the
/// server routed to it before the UNSUB still reaches it, everything after
/// goes to the other member, and nothing falls in between.
#[tokio::test]
async fn queue_member_leaving_mid_burst_loses_nothing() {
    const MSGS: usize = 3000;
    let s = Server::start(&[]);
    let quiet = r#"{"verbose":false,"pedantic":false,"protocol":1}"#;
    let mut leaving = s.raw().await;
    leaving.handshake(quiet).await;
    leaving
        .send("SUB qleave g 1\r\nSUB qleave.end 2\r\nPING\r\n")
        .await;
    assert_eq!(leaving.next().await.as_deref(), Some("PONG"));
    let mut staying = s.raw().await;
    staying.handshake(quiet).await;
    staying
        .send("SUB qleave g 1\r\nSUB qleave.end 2\r\nPING\r\n")
        .await;
    assert_eq!(staying.next().await.as_deref(), Some("PONG"));

    let mut p = s.raw().await;
    p.handshake(quiet).await;
    let publisher = tokio::spawn(async move {
        for chunk in 0..30 {
            let mut burst = String::new();
            for i in chunk * 100..(chunk + 1) * 100 {
                let body = i.to_string();
                burst.push_str(&format!("PUB qleave {}\r\n{body}\r\n", body.len()));
            }
            p.send(&burst).await;
            tokio::task::yield_now().await;
        }
        p.send("PUB qleave.end 1\r\ne\r\nPING\r\n").await;
        assert_eq!(p.next().await.as_deref(), Some("PONG"));
    });

    async fn read_msg(r: &mut common::Raw) -> (String, String) {
        let line = r.next().await.expect("closed");
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[0], "MSG", "line {line:?}");
        let n: usize = parts[3].parse().unwrap();
        let body = r.bytes(n + 2).await;
        (
            parts[1].to_string(),
            String::from_utf8_lossy(&body[..n]).into_owned(),
        )
    }
    // The leaving member takes a few, then unsubscribes mid-stream.
    let mut got = Vec::new();
    loop {
        let (subj, body) = read_msg(&mut leaving).await;
        if subj == "qleave.end" {
            break;
        }
        got.push(body);
        if got.len() == 20 {
            leaving.send("UNSUB 1\r\n").await;
        }
    }
    loop {
        let (subj, body) = read_msg(&mut staying).await;
        if subj == "qleave.end" {
            break;
        }
        got.push(body);
    }
    // Broker Edge: messages routed to the leaving member's shard just before
    // it left are handed on to the other member one hop later, so they may
    // follow the end marker. None may be lost.
    while got.len() < MSGS {
        match tokio::time::timeout(std::time::Duration::from_secs(2), read_msg(&mut staying)).await
        {
            Ok((_, body)) => got.push(body),
            Err(_) => break,
        }
    }
    publisher.await.unwrap();
    let unique: HashSet<_> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "duplicates");
    assert_eq!(got.len(), MSGS, "messages lost");
}

/// The reference delivers a message once per queue *name*: members of group
/// `g` on `qp.*` and on `qp.x` share the work for `qp.x` (one delivery in
/// all, never one per pattern).
#[tokio::test]
async fn same_queue_name_on_different_patterns_shares_one_delivery() {
    const MSGS: usize = 60;
    let s = Server::start(&[]);
    let mut members = Vec::new();
    let mut done = Vec::new();
    let mut keep = Vec::new();
    for i in 0..4 {
        let c = s.client().await;
        let pattern = if i % 2 == 0 { "qp.*" } else { "qp.x" };
        members.push(c.queue_subscribe(pattern, "g".to_string()).await.unwrap());
        done.push(c.subscribe("qp_done").await.unwrap());
        sync(&c).await;
        keep.push(c);
    }
    let p = s.client().await;
    for i in 0..MSGS {
        p.publish("qp.x", i.to_string().into()).await.unwrap();
    }
    p.publish("qp_done", "".into()).await.unwrap();
    flush(&p).await;
    let mut seen: HashMap<Bytes, usize> = HashMap::new();
    for (q, d) in members.iter_mut().zip(done.iter_mut()) {
        recv(d).await;
        while let Some(m) = queued(q) {
            *seen.entry(m.payload).or_default() += 1;
        }
    }
    let dups = seen.values().filter(|&&n| n > 1).count();
    assert_eq!(
        dups, 0,
        "delivered once per pattern instead of once per name"
    );
    assert_eq!(seen.len(), MSGS, "messages lost");
}

/// When a subscription's auto-unsubscribe limit is reached, its interest
/// is gone at once: the next request gets no-responders, not a timeout.
#[tokio::test]
async fn interest_ends_when_unsub_max_is_reached() {
    let s = Server::start(&[]);
    let quiet = r#"{"verbose":false,"pedantic":false,"protocol":1}"#;
    let requester = s
        .client_with(
            async_nats::ConnectOptions::new().request_timeout(Some(Duration::from_secs(3))),
        )
        .await;
    for (round, sub) in ["SUB once.plain 1", "SUB once.queue g 1"]
        .iter()
        .enumerate()
    {
        let subject = sub.split(' ').nth(1).unwrap();
        let mut member = s.raw().await;
        member.handshake(quiet).await;
        member
            .send(&format!("{sub}\r\nUNSUB 1 1\r\nPING\r\n"))
            .await;
        assert_eq!(member.next().await.as_deref(), Some("PONG"));
        let req = requester.request(subject.to_string(), "q".into());
        let answer = async {
            let line = member.next().await.expect("closed");
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts[0], "MSG", "round {round}: {line:?}");
            let reply = parts[3];
            member.bytes(3).await;
            member.send(&format!("PUB {reply} 1\r\na\r\n")).await;
        };
        let (resp, ()) = futures::join!(req, answer);
        assert_eq!(resp.expect("first request").payload, "a");
        let err = within(
            "second request",
            requester.request(subject.to_string(), "q".into()),
        )
        .await
        .expect_err("the only subscription is used up");
        assert_eq!(
            err.kind(),
            async_nats::RequestErrorKind::NoResponders,
            "round {round} ({sub}): {err:?}"
        );
    }
}

/// Requests in flight while the only responder leaves its queue group each
/// get an answer or a no-responders status: none is silently dropped.
#[tokio::test]
async fn requests_racing_the_last_responder_leaving_are_never_dropped() {
    requests_racing_responder_leaving("SUB race.svc g 1").await;
}

/// The same with a plain subscription as the only responder.
#[tokio::test]
async fn requests_racing_the_only_subscriber_leaving_are_never_dropped() {
    requests_racing_responder_leaving("SUB race.svc 1").await;
}

async fn requests_racing_responder_leaving(sub: &str) {
    const REQS: usize = 200;
    let s = Server::start(&[]);
    let quiet = r#"{"verbose":false,"pedantic":false,"protocol":1}"#;
    let mut member = s.raw().await;
    member.handshake(quiet).await;
    member.send(&format!("{sub}\r\nPING\r\n")).await;
    assert_eq!(member.next().await.as_deref(), Some("PONG"));
    // The responder answers everything it is given, before and after UNSUB.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = answered.clone();
    let responder = tokio::spawn(async move {
        loop {
            let line = member.next().await.expect("responder connection closed");
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts[0], "MSG", "line {line:?}");
            let n: usize = parts[4].parse().unwrap();
            member.bytes(n + 2).await;
            member.send(&format!("PUB {} 2\r\nok\r\n", parts[3])).await;
            if count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == 20 {
                member.send("UNSUB 1\r\n").await;
            }
        }
    });
    let requester = s
        .client_with(
            async_nats::ConnectOptions::new().request_timeout(Some(Duration::from_secs(5))),
        )
        .await;
    let reqs = (0..REQS).map(|i| {
        let r = requester.clone();
        async move { r.request("race.svc", i.to_string().into()).await }
    });
    let results = futures::future::join_all(reqs).await;
    let (mut ok, mut none, mut lost) = (0, 0, 0);
    for r in results {
        match r {
            Ok(m) => {
                assert_eq!(m.payload, "ok");
                ok += 1;
            }
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => none += 1,
            Err(_) => lost += 1,
        }
    }
    responder.abort();
    let answered = answered.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        lost, 0,
        "{sub}: requests dropped: {ok} answered, {none} no-responders"
    );
    assert_eq!(ok, answered);
    assert!(ok >= 20);
}

/// The publisher's round trip covers queue deliveries too: after its PONG,
/// exactly one member has the message ahead of its own PONG.
#[tokio::test]
async fn publisher_round_trip_covers_queue_deliveries() {
    let s = Server::start(&[]);
    let quiet = r#"{"verbose":false,"pedantic":false,"protocol":1,"headers":true}"#;
    let mut members = Vec::new();
    for _ in 0..4 {
        let mut r = s.raw().await;
        r.handshake(quiet).await;
        r.send("SUB rtq.x g 1\r\nPING\r\n").await;
        assert_eq!(r.next().await.as_deref(), Some("PONG"));
        members.push(r);
    }
    let mut p = s.raw().await;
    p.handshake(quiet).await;
    for i in 0..40 {
        // Alternate plain and header messages.
        if i % 2 == 0 {
            p.send("PUB rtq.x 1\r\nm\r\nPING\r\n").await;
        } else {
            p.send("HPUB rtq.x 12 13\r\nNATS/1.0\r\n\r\nm\r\nPING\r\n")
                .await;
        }
        assert_eq!(p.next().await.as_deref(), Some("PONG"));
        let mut holders = 0;
        for r in members.iter_mut() {
            r.send("PING\r\n").await;
            let line = r.next().await.expect("closed");
            if line == "PONG" {
                continue;
            }
            holders += 1;
            let n: usize = line.rsplit(' ').next().unwrap().parse().unwrap();
            r.bytes(n + 2).await;
            assert_eq!(r.next().await.as_deref(), Some("PONG"));
        }
        assert_eq!(
            holders, 1,
            "round {i}: message held by {holders} members at PONG time"
        );
    }
}

/// Subjects are opaque bytes apart from `.`, `*`, `>` and whitespace:
/// UTF-8 and punctuation tokens work, with wildcards, across connections.
#[tokio::test]
async fn utf8_and_punctuation_subjects() {
    let s = Server::start(&[]);
    let sub_c = s.client().await;
    let mut exact = sub_c.subscribe("prüfung.主题.$x-y_z:1").await.unwrap();
    let mut wild = sub_c.subscribe("prüfung.*.>").await.unwrap();
    sync(&sub_c).await;
    let p = s.client().await;
    p.publish("prüfung.主题.$x-y_z:1", "u".into())
        .await
        .unwrap();
    p.publish("prüfung.other.a.b", "w".into()).await.unwrap();
    flush(&p).await;
    let m = recv(&mut exact).await;
    assert_eq!(m.subject.as_str(), "prüfung.主题.$x-y_z:1");
    assert_eq!(m.payload, "u");
    assert_eq!(recv(&mut wild).await.payload, "u");
    let m = recv(&mut wild).await;
    assert_eq!(m.subject.as_str(), "prüfung.other.a.b");
}

/// A burst of concurrent connects is accepted and every connection is fully
/// usable (a broadcast reaches all of them).
#[tokio::test]
async fn burst_of_concurrent_connects() {
    const N: usize = 200;
    let s = Server::start(&[]);
    let connects = (0..N).map(|_| async {
        let c = s.client().await;
        let sub = c.subscribe("burst.all").await.unwrap();
        sync(&c).await;
        (c, sub)
    });
    let mut clients = futures::future::join_all(connects).await;
    let ids: HashSet<u64> = clients
        .iter()
        .map(|(c, _)| c.server_info().client_id)
        .collect();
    assert_eq!(ids.len(), N, "client ids must be unique");
    let p = s.client().await;
    p.publish("burst.all", "hi".into()).await.unwrap();
    flush(&p).await;
    for (_, sub) in clients.iter_mut() {
        assert_eq!(recv(sub).await.payload, "hi");
    }
}

/// Fan-out of varied sizes to many connections: every copy is bit-exact
/// (payload buffers shared across shards must not be corrupted or mixed up).
#[tokio::test]
async fn fanout_payloads_are_bit_exact() {
    const SUBS: usize = 12;
    let sizes: Vec<usize> = vec![
        0, 1, 2, 3, 7, 64, 1000, 4095, 4096, 4097, 65_535, 65_536, 300_000,
    ];
    let body = |i: usize, n: usize| -> Vec<u8> {
        (0..n).map(|k| ((k * 31 + i * 17) % 251) as u8).collect()
    };
    let s = Server::start(&[]);
    let mut subs = Vec::new();
    for _ in 0..SUBS {
        let c = s.client().await;
        let sub = c.subscribe("exact.>").await.unwrap();
        sync(&c).await;
        subs.push((c, sub));
    }
    let p = s.client().await;
    for (i, n) in sizes.iter().enumerate() {
        let mut h = HeaderMap::new();
        h.insert("Idx", i.to_string().as_str());
        p.publish_with_headers(format!("exact.{i}"), h, body(i, *n).into())
            .await
            .unwrap();
    }
    flush(&p).await;
    for (k, (_, sub)) in subs.iter_mut().enumerate() {
        for (i, n) in sizes.iter().enumerate() {
            let m = recv(sub).await;
            assert_eq!(m.subject.as_str(), format!("exact.{i}"), "sub {k}");
            assert_eq!(
                m.headers
                    .as_ref()
                    .and_then(|h| h.get("Idx"))
                    .map(|v| v.as_str()),
                Some(i.to_string().as_str())
            );
            assert!(
                m.payload == body(i, *n),
                "sub {k}: payload {i} ({n} bytes) differs"
            );
        }
    }
}

/// Subscribers vanishing in the middle of a flood (their shards still have
/// messages in flight for them) do not disturb the ones that stay.
#[tokio::test]
async fn subscribers_vanishing_mid_flood() {
    const MSGS: usize = 3000;
    let s = Server::start(&[]);
    let quiet = r#"{"verbose":false,"pedantic":false,"protocol":1}"#;
    let mut stay = Vec::new();
    let mut go = Vec::new();
    for i in 0..12 {
        let mut r = s.raw().await;
        r.handshake(quiet).await;
        r.send("SUB vanish 1\r\nPING\r\n").await;
        assert_eq!(r.next().await.as_deref(), Some("PONG"));
        if i % 2 == 0 {
            stay.push(r);
        } else {
            go.push(r);
        }
    }
    let mut p = s.raw().await;
    p.handshake(quiet).await;
    let mut first = String::new();
    let mut second = String::new();
    for i in 0..MSGS {
        let body = i.to_string();
        let op = format!("PUB vanish {}\r\n{body}\r\n", body.len());
        if i < MSGS / 2 {
            first.push_str(&op);
        } else {
            second.push_str(&op);
        }
    }
    p.send(&first).await;
    drop(go);
    p.send(&second).await;
    p.send("PING\r\n").await;
    assert_eq!(p.next().await.as_deref(), Some("PONG"));
    for (k, r) in stay.iter_mut().enumerate() {
        for i in 0..MSGS {
            let body = i.to_string();
            assert_eq!(
                r.next().await,
                Some(format!("MSG vanish 1 {}", body.len())),
                "subscriber {k}, message {i}"
            );
            assert_eq!(
                r.bytes(body.len() + 2).await,
                format!("{body}\r\n").as_bytes()
            );
        }
    }
}

/// `UNSUB sid max` with max at or below what was already delivered ends the
/// subscription at once.
#[tokio::test]
async fn unsub_max_below_delivered_count_ends_at_once() {
    let s = Server::start(&[]);
    let quiet = r#"{"verbose":false,"pedantic":false,"protocol":1}"#;
    let mut raw = s.raw().await;
    raw.handshake(quiet).await;
    raw.send("SUB late 1\r\nSUB late.end 2\r\nPING\r\n").await;
    assert_eq!(raw.next().await.as_deref(), Some("PONG"));
    let p = s.client().await;
    for _ in 0..3 {
        p.publish("late", "x".into()).await.unwrap();
    }
    flush(&p).await;
    for _ in 0..3 {
        assert_eq!(raw.next().await.as_deref(), Some("MSG late 1 1"));
        raw.bytes(3).await;
    }
    raw.send("UNSUB 1 2\r\nPING\r\n").await;
    assert_eq!(raw.next().await.as_deref(), Some("PONG"));
    p.publish("late", "y".into()).await.unwrap();
    p.publish("late.end", "e".into()).await.unwrap();
    flush(&p).await;
    assert_eq!(raw.next().await.as_deref(), Some("MSG late.end 2 1"));
}

/// Regression: a request from a client with headers and no_responders on
/// (as async-nats sends them), answered by a subscription on the same
/// connection (so on the requester's own shard) while other shards hold
/// only unrelated subscriptions, was answered with a 503 no-responders
/// status as well. The requester must see the request delivered, then the
/// reply, and no 503 at all.
#[tokio::test]
async fn request_to_own_shard_responder_gets_no_503() {
    /// Everything `r` receives up to the PONG for a PING sent now:
    /// protocol lines, each followed by its payload for MSG/HMSG. (The
    /// INFO that nats-server 2.15 sends after CONNECT, `connect_info`, is
    /// skipped.)
    async fn until_pong(r: &mut common::Raw) -> Vec<String> {
        r.send("PING\r\n").await;
        let mut got = Vec::new();
        loop {
            let line = r.next().await.expect("connection closed");
            if line == "PONG" {
                return got;
            }
            if line.starts_with("INFO ") {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if matches!(f.first(), Some(&"MSG") | Some(&"HMSG")) {
                let size: usize = f.last().unwrap().parse().unwrap();
                let body = r.bytes(size + 2).await;
                got.push(line);
                got.push(String::from_utf8_lossy(&body[..size]).into_owned());
            } else {
                got.push(line);
            }
        }
    }

    let s = Server::start(&[]);
    let mut a = s.raw().await;
    a.send(concat!(
        r#"CONNECT {"verbose":false,"pedantic":false,"protocol":1,"headers":true,"no_responders":true}"#,
        "\r\nSUB svc 1\r\nSUB inbox.> 2\r\n"
    ))
    .await;
    assert_eq!(until_pong(&mut a).await, Vec::<String>::new());
    // Unrelated subscriptions on other connections (other shards with
    // --shard_fill 1).
    let mut others = Vec::new();
    for i in 0..3 {
        let mut b = s.raw().await;
        b.send(&format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"protocol\":1}}\r\nSUB other.{i} 1\r\n"
        ))
        .await;
        assert_eq!(until_pong(&mut b).await, Vec::<String>::new());
        others.push(b);
    }

    a.send("PUB svc inbox.1 2\r\nhi\r\n").await;
    assert_eq!(
        until_pong(&mut a).await,
        ["MSG svc 1 inbox.1 2", "hi"],
        "the request, and nothing else (no 503 on inbox.1)"
    );
    a.send("PUB inbox.1 5\r\nreply\r\n").await;
    assert_eq!(
        until_pong(&mut a).await,
        ["MSG inbox.1 2 5", "reply"],
        "the reply only"
    );
    // Nothing late either.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = until_pong(&mut a).await;
    assert!(got.is_empty(), "late deliveries: {got:?}");
    for (i, b) in others.iter_mut().enumerate() {
        let got = until_pong(b).await;
        assert!(got.is_empty(), "connection {i} got {got:?}");
    }
}

/// A subscriber that stops reading fills its socket: the server's writer
/// then waits for room (past its direct sends) and resumes. Every message
/// arrives once, in order and intact, when the reader comes back.
#[tokio::test]
async fn a_subscriber_that_pauses_reading_gets_every_byte_once_in_order() {
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.handshake(r#"{"verbose":false,"pedantic":false}"#).await;
    raw.send("SUB paused.x 1\r\nPING\r\n").await;
    assert_eq!(raw.next().await.as_deref(), Some("PONG"));
    let p = s.client().await;
    // 24 MiB: far more than loopback socket buffers hold, well under the
    // default max_pending.
    const N: usize = 1536;
    const SIZE: usize = 16 * 1024;
    let body = |i: usize| -> Vec<u8> {
        let mut v = vec![(i % 251) as u8; SIZE];
        v[..8].copy_from_slice(&(i as u64).to_le_bytes());
        v
    };
    for i in 0..N {
        p.publish("paused.x", body(i).into()).await.unwrap();
    }
    flush(&p).await;
    sync(&p).await;
    // Not reading for a while: the server's writes to us stall.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..N {
        let line = raw.next().await.expect("connection closed");
        assert_eq!(line, format!("MSG paused.x 1 {SIZE}"), "message {i}");
        let got = raw.bytes(SIZE + 2).await;
        assert_eq!(&got[SIZE..], b"\r\n", "message {i}");
        assert!(
            got[..SIZE] == body(i)[..],
            "message {i} corrupted or out of order"
        );
    }
    raw.send("PING\r\n").await;
    assert_eq!(raw.next().await.as_deref(), Some("PONG"), "nothing extra");
}
