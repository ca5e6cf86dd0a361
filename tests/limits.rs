//! Server limits set in a config file: max_payload, max_connections,
//! max_subscriptions, ping_interval/ping_max (stale connections) and
//! max_pending (slow consumers), with the reference's errors and closes.

mod common;

use std::time::Duration;

use common::{sync, within, Server};
use futures::StreamExt;

const QUIET: &str = r#"{"verbose":false,"pedantic":false,"protocol":1}"#;

#[tokio::test]
async fn max_payload_is_announced_and_enforced() {
    let s = Server::start_with_config("max_payload: 1024\n", &[]);

    // Announced in INFO, so the client library refuses bigger messages.
    let c = s.client().await;
    assert_eq!(c.server_info().max_payload, 1024);
    let err = c
        .publish("mp.x", vec![0u8; 2000].into())
        .await
        .expect_err("client must refuse a payload over max_payload");
    assert_eq!(
        err.kind(),
        async_nats::client::PublishErrorKind::MaxPayloadExceeded
    );

    // Exactly max_payload passes.
    let mut sub = c.subscribe("mp.x").await.unwrap();
    sync(&c).await;
    c.publish("mp.x", vec![7u8; 1024].into()).await.unwrap();
    let m = within("max-size message", sub.next()).await.unwrap();
    assert_eq!(m.payload.len(), 1024);

    // On the wire, one byte over is fatal.
    let mut raw = s.raw().await;
    assert_eq!(raw.info["max_payload"], 1024);
    raw.handshake(QUIET).await;
    raw.send("PUB mp.x 1025\r\n").await;
    assert_eq!(
        raw.next().await.as_deref(),
        Some("-ERR 'Maximum Payload Violation'")
    );
    raw.expect_closed(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn max_connections_rejects_the_extra_client() {
    let s = Server::start_with_config("max_connections: 2\n", &[]);
    let mut a = s.raw().await;
    let mut b = s.raw().await;
    a.handshake(QUIET).await;
    b.handshake(QUIET).await;
    let mut c = s.raw().await;
    assert_eq!(
        c.next().await.as_deref(),
        Some("-ERR 'maximum connections exceeded'")
    );
    c.expect_closed(Duration::from_secs(5)).await;
    // The first two are unaffected.
    for r in [&mut a, &mut b] {
        r.send("PING\r\n").await;
        assert_eq!(r.next().await.as_deref(), Some("PONG"));
    }
}

#[tokio::test]
async fn max_subscriptions_rejects_extra_subs_but_keeps_the_connection() {
    let s = Server::start_with_config("max_subscriptions: 2\n", &[]);
    let mut raw = s.raw().await;
    raw.handshake(QUIET).await;
    raw.send("SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n").await;
    assert_eq!(
        raw.next().await.as_deref(),
        Some("-ERR 'maximum subscriptions exceeded'")
    );
    assert_eq!(raw.next().await.as_deref(), Some("PONG"));
    // The first two subscriptions work, the rejected one does not exist.
    raw.send("PUB c 1\r\nx\r\nPUB b 1\r\ny\r\n").await;
    assert_eq!(raw.next().await.as_deref(), Some("MSG b 2 1"));
}

#[tokio::test]
async fn unanswered_pings_make_a_stale_connection() {
    let s = Server::start_with_config("ping_interval: \"200ms\"\nping_max: 1\n", &[]);
    let mut raw = s.raw().await;
    raw.handshake(QUIET).await;
    // Read lines without answering PINGs.
    let mut pings = 0;
    loop {
        match raw.line().await.as_deref() {
            Some("PING") => pings += 1,
            Some("-ERR 'Stale Connection'") => break,
            other => panic!("unexpected {other:?} while waiting for the stale error"),
        }
    }
    assert!(pings >= 1, "server never pinged");
    raw.expect_closed(Duration::from_secs(5)).await;

    // A client that answers stays connected across many intervals.
    let mut raw = s.raw().await;
    raw.handshake(QUIET).await;
    let started = std::time::Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_millis(900) {
        // `next` answers PINGs; a PONG comes back for our own PING.
        raw.send("PING\r\n").await;
        assert_eq!(raw.next().await.as_deref(), Some("PONG"));
        answered += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered > 3);
}

/// A subscriber that never reads while a publisher floods it is cut off as
/// a slow consumer; other connections are unaffected.
#[tokio::test]
async fn slow_consumer_is_disconnected() {
    let s = Server::start_with_config(
        // 16 MiB against 1 MiB of max_pending: far larger, with room for a
        // reader that the loaded test machine schedules late now and then
        // (the stall budget is the reference's 10 ms per read).
        "max_payload: 65536\nmax_pending: 1048576\nwrite_deadline: \"10s\"\n",
        &[],
    );
    let mut slow = s.raw().await;
    slow.handshake(QUIET).await;
    slow.send("SUB flood 1\r\nPING\r\n").await;
    assert_eq!(slow.next().await.as_deref(), Some("PONG"));
    let publisher = s.client().await;
    let chunk: bytes::Bytes = vec![b'x'; 64 * 1024].into();
    // 32 MiB is far beyond socket buffers plus max_pending.
    let flood = async {
        for _ in 0..512 {
            publisher.publish("flood", chunk.clone()).await.unwrap();
        }
        publisher.flush().await.unwrap();
    };
    within("flood", flood).await;
    sync(&publisher).await;

    s.wait_log("Slow Consumer", Duration::from_secs(10)).await;
    let varz = s.json("/varz").await;
    assert!(
        varz["slow_consumers"].as_u64().unwrap_or(0) >= 1,
        "varz slow_consumers: {}",
        varz["slow_consumers"]
    );
    // The slow connection is closed: draining it ends in EOF/reset.
    slow.expect_closed(Duration::from_secs(10)).await;
    // The publisher is fine.
    sync(&publisher).await;
}

/// The connection limit is global (all shards), and closing a connection
/// frees a slot.
#[tokio::test]
async fn max_connections_is_global_and_slots_are_freed() {
    let s = Server::start_with_config("max_connections: 10\n", &[]);
    let mut conns = Vec::new();
    for _ in 0..10 {
        let mut r = s.raw().await;
        r.handshake(QUIET).await;
        conns.push(r);
    }
    let mut extra = s.raw().await;
    assert_eq!(
        extra.next().await.as_deref(),
        Some("-ERR 'maximum connections exceeded'")
    );
    drop(conns.pop());
    // Once the server has processed the close, a new client fits again.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut r = s.raw().await;
        r.send(&format!("CONNECT {QUIET}\r\nPING\r\n")).await;
        match r.next().await.as_deref() {
            Some("PONG") => break,
            Some("-ERR 'maximum connections exceeded'") => {
                assert!(std::time::Instant::now() < deadline, "slot never freed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A slow consumer is cut off without holding back a fast subscriber on
/// another connection, which gets every message in order. (The fast
/// subscriber reads on its own thread, as a subscriber in another process
/// would: on the publisher's thread it would only read when publishing
/// yields, and look stuck to the server.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_does_not_hurt_fast_subscribers() {
    // 64 MiB: well past socket buffers plus max_pending. The fast reader
    // has 64 messages of slack (max_pending 4 MiB), so a moment without
    // CPU on a loaded test machine does not make it look stuck.
    const MSGS: usize = 1024;
    let s = Server::start_with_config(
        "max_payload: 65536\nmax_pending: 4194304\nwrite_deadline: \"2s\"\n",
        &[],
    );
    let mut slow = s.raw().await;
    slow.handshake(QUIET).await;
    slow.send("SUB flood2 1\r\nPING\r\n").await;
    assert_eq!(slow.next().await.as_deref(), Some("PONG"));
    let fast_c = s
        .client_with(async_nats::ConnectOptions::new().subscription_capacity(MSGS + 8))
        .await;
    let mut fast = fast_c.subscribe("flood2").await.unwrap();
    sync(&fast_c).await;
    let publisher = s.client().await;
    let reader = tokio::spawn(async move {
        for i in 0..MSGS {
            let m = within(&format!("fast delivery of message {i}"), fast.next())
                .await
                .unwrap();
            assert_eq!(m.payload.len(), 64 * 1024);
            assert_eq!(&m.payload[..8], format!("{i:08}").as_bytes(), "order");
        }
    });
    for i in 0..MSGS {
        let mut body = vec![b'.'; 64 * 1024];
        body[..8].copy_from_slice(format!("{i:08}").as_bytes());
        within("publish", publisher.publish("flood2", body.into()))
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    reader.await.expect("fast subscriber");
    // The one that never read was cut off (checked before draining it,
    // which would make it a fast reader).
    s.wait_log("Slow Consumer", Duration::from_secs(10)).await;
    slow.expect_closed(Duration::from_secs(10)).await;
}

/// A subscriber that keeps reading is not a slow consumer, even when a
/// burst far larger than max_pending arrives at once: the server paces the
/// publisher rather than cut off a live reader.
#[tokio::test]
async fn reading_subscriber_survives_a_burst_larger_than_max_pending() {
    const MSGS: usize = 256;
    let s = Server::start_with_config(
        // 16 MiB against 1 MiB of max_pending: far larger, with room for a
        // reader that the loaded test machine schedules late now and then
        // (the stall budget is the reference's 10 ms per read).
        "max_payload: 65536\nmax_pending: 1048576\nwrite_deadline: \"10s\"\n",
        &[],
    );
    let mut sub = s.raw().await;
    sub.handshake(QUIET).await;
    sub.send("SUB burst 1\r\nPING\r\n").await;
    assert_eq!(sub.next().await.as_deref(), Some("PONG"));
    let reader = tokio::spawn(async move {
        for i in 0..MSGS {
            let line = sub.next().await;
            assert_eq!(
                line.as_deref(),
                Some("MSG burst 1 65536"),
                "message {i}: reader cut off"
            );
            sub.bytes(65536 + 2).await;
        }
    });
    let mut p = s.raw().await;
    p.handshake(QUIET).await;
    let body = vec![b'b'; 65536];
    let mut burst = Vec::with_capacity(MSGS * (65536 + 20));
    for _ in 0..MSGS {
        burst.extend_from_slice(b"PUB burst 65536\r\n");
        burst.extend_from_slice(&body);
        burst.extend_from_slice(b"\r\n");
    }
    p.send_bytes(&burst).await;
    reader.await.expect("reader");
    let varz = s.json("/varz").await;
    assert_eq!(varz["slow_consumers"], 0);
}

/// Headers count toward max_payload.
#[tokio::test]
async fn headers_count_toward_max_payload() {
    let s = Server::start_with_config("max_payload: 1024\n", &[]);
    let connect = r#"{"verbose":false,"pedantic":false,"protocol":1,"headers":true}"#;
    // 12 header bytes + 1012 payload bytes = exactly 1024: fine.
    let mut raw = s.raw().await;
    raw.handshake(connect).await;
    let hdr = "NATS/1.0\r\n\r\n";
    raw.send(&format!(
        "SUB hp 1\r\nHPUB hp 12 1024\r\n{hdr}{}\r\n",
        "p".repeat(1012)
    ))
    .await;
    assert_eq!(raw.next().await.as_deref(), Some("HMSG hp 1 12 1024"));
    raw.bytes(1026).await;
    // One more payload byte is over.
    raw.send("HPUB hp 12 1025\r\n").await;
    assert_eq!(
        raw.next().await.as_deref(),
        Some("-ERR 'Maximum Payload Violation'")
    );
    raw.expect_closed(Duration::from_secs(5)).await;
}

/// With the default (large) max_pending, a reader that is stuck while its
/// socket is full is cut off by the write deadline instead.
#[tokio::test]
async fn write_deadline_cuts_off_a_stuck_reader() {
    let s = Server::start_with_config("write_deadline: \"500ms\"\n", &[]);
    let mut stuck = s.raw().await;
    stuck.handshake(QUIET).await;
    stuck.send("SUB wd 1\r\nPING\r\n").await;
    assert_eq!(stuck.next().await.as_deref(), Some("PONG"));
    let publisher = s.client().await;
    let chunk: bytes::Bytes = vec![b'w'; 256 * 1024].into();
    let flood = async {
        for _ in 0..128 {
            publisher.publish("wd", chunk.clone()).await.unwrap();
        }
        publisher.flush().await.unwrap();
    };
    within("flood", flood).await;
    s.wait_log("Slow Consumer", Duration::from_secs(10)).await;
    let varz = s.json("/varz").await;
    assert!(varz["slow_consumers"].as_u64().unwrap_or(0) >= 1);
    stuck.expect_closed(Duration::from_secs(10)).await;
    sync(&publisher).await;
}
