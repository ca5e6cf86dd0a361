//! The client protocol on the wire, with a raw TCP socket: the INFO
//! greeting, CONNECT/verbose, PING/PONG, MSG/HMSG framing, and the -ERR
//! texts the reference sends (and whether it closes the connection after).

mod common;

use std::time::Duration;

use common::{Raw, Server};

const QUIET: &str = r#"{"verbose":false,"pedantic":false,"protocol":1}"#;

/// Expect `-ERR '<text>'` next, then the connection closed by the server.
async fn expect_err_and_close(raw: &mut Raw, text: &str) {
    assert_eq!(raw.next().await, Some(format!("-ERR '{text}'")));
    raw.expect_closed(Duration::from_secs(5)).await;
}

/// PING gets PONG: the connection is still open and in sync.
async fn expect_alive(raw: &mut Raw) {
    raw.send("PING\r\n").await;
    assert_eq!(raw.next().await.as_deref(), Some("PONG"));
}

#[tokio::test]
async fn info_greeting_has_the_reference_fields() {
    let s = Server::start(&[]);
    let a = s.raw().await;
    let b = s.raw().await;
    let info = &a.info;
    let id = info["server_id"].as_str().expect("server_id string");
    // NATS server ids are nkeys public keys: 56 base32 chars starting with N.
    assert_eq!(id.len(), 56, "server_id {id}");
    assert!(id.starts_with('N'), "server_id {id}");
    assert!(
        id.chars()
            .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)),
        "server_id {id}"
    );
    assert_eq!(b.info["server_id"], info["server_id"], "one server, one id");
    assert!(info["server_name"].as_str().is_some_and(|n| !n.is_empty()));
    let version = info["version"].as_str().expect("version string");
    let parts: Vec<&str> = version.split('.').collect();
    assert!(
        parts.len() >= 3 && parts[..3].iter().all(|p| p.parse::<u32>().is_ok()),
        "version {version:?} is not semver"
    );
    assert!(parts[0].parse::<u32>().unwrap() >= 2, "version {version}");
    assert_eq!(info["proto"], 1);
    assert_eq!(info["headers"], true);
    assert_eq!(info["max_payload"], 1024 * 1024);
    assert_eq!(info["host"], "127.0.0.1");
    assert_eq!(info["port"], s.port);
    assert_eq!(info["client_ip"], "127.0.0.1");
    let ca = info["client_id"].as_u64().expect("client_id number");
    let cb = b.info["client_id"].as_u64().expect("client_id number");
    assert_ne!(ca, cb, "client ids must be unique");
}

#[tokio::test]
async fn ping_pong_before_and_after_connect() {
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    // The reference answers PING before CONNECT, and verbs are case-insensitive.
    expect_alive(&mut raw).await;
    raw.send("ping\r\n").await;
    assert_eq!(raw.next().await.as_deref(), Some("PONG"));
    raw.handshake(QUIET).await;
    expect_alive(&mut raw).await;
}

#[tokio::test]
async fn verbose_connect_acknowledges_every_operation() {
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.send("CONNECT {\"verbose\":true,\"pedantic\":false}\r\n")
        .await;
    assert_eq!(raw.next().await.as_deref(), Some("+OK"));
    raw.send("SUB v.x 1\r\n").await;
    assert_eq!(raw.next().await.as_deref(), Some("+OK"));
    raw.send("PUB v.y 2\r\nhi\r\n").await;
    assert_eq!(raw.next().await.as_deref(), Some("+OK"));
    raw.send("UNSUB 1\r\n").await;
    assert_eq!(raw.next().await.as_deref(), Some("+OK"));
    // An error is not acknowledged as well.
    raw.send("SUB bad..subject 2\r\n").await;
    assert_eq!(raw.next().await.as_deref(), Some("-ERR 'Invalid Subject'"));
    // PING is answered with PONG only.
    expect_alive(&mut raw).await;
}

#[tokio::test]
async fn msg_framing_with_and_without_reply() {
    let s = Server::start(&[]);
    let mut sub = s.raw().await;
    sub.handshake(QUIET).await;
    sub.send("SUB frame.* 42\r\nSUB frame.q grp 43\r\nPING\r\n")
        .await;
    assert_eq!(sub.next().await.as_deref(), Some("PONG"));
    let mut p = s.raw().await;
    p.handshake(QUIET).await;
    p.send(
        "PUB frame.a 5\r\nhello\r\nPUB frame.b inbox.1 0\r\n\r\nPUB frame.q 3\r\nabc\r\nPING\r\n",
    )
    .await;
    assert_eq!(p.next().await.as_deref(), Some("PONG"));

    assert_eq!(sub.next().await.as_deref(), Some("MSG frame.a 42 5"));
    assert_eq!(sub.bytes(7).await, b"hello\r\n");
    assert_eq!(
        sub.next().await.as_deref(),
        Some("MSG frame.b 42 inbox.1 0")
    );
    assert_eq!(sub.bytes(2).await, b"\r\n");
    // frame.q matches both the wildcard and the queue subscription.
    let mut lines = vec![sub.next().await.unwrap()];
    sub.bytes(5).await;
    lines.push(sub.next().await.unwrap());
    sub.bytes(5).await;
    lines.sort();
    assert_eq!(lines, ["MSG frame.q 42 3", "MSG frame.q 43 3"]);
}

#[tokio::test]
async fn hpub_is_delivered_as_hmsg() {
    let s = Server::start(&[]);
    let connect = r#"{"verbose":false,"pedantic":false,"protocol":1,"headers":true}"#;
    let mut sub = s.raw().await;
    sub.handshake(connect).await;
    sub.send("SUB h.x 9\r\nPING\r\n").await;
    assert_eq!(sub.next().await.as_deref(), Some("PONG"));
    let mut p = s.raw().await;
    p.handshake(connect).await;
    let hdr = "NATS/1.0\r\nA: b\r\n\r\n";
    let payload = "data";
    p.send(&format!(
        "HPUB h.x reply.to {} {}\r\n{hdr}{payload}\r\nPING\r\n",
        hdr.len(),
        hdr.len() + payload.len()
    ))
    .await;
    assert_eq!(p.next().await.as_deref(), Some("PONG"));
    assert_eq!(
        sub.next().await,
        Some(format!(
            "HMSG h.x 9 reply.to {} {}",
            hdr.len(),
            hdr.len() + payload.len()
        ))
    );
    let body = sub.bytes(hdr.len() + payload.len() + 2).await;
    assert_eq!(body, format!("{hdr}{payload}\r\n").as_bytes());
}

#[tokio::test]
async fn no_responders_status_on_the_wire() {
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.handshake(
        r#"{"verbose":false,"pedantic":false,"protocol":1,"headers":true,"no_responders":true}"#,
    )
    .await;
    raw.send("SUB my.inbox 1\r\nPUB nobody.here my.inbox 2\r\nhi\r\n")
        .await;
    let line = raw.next().await.expect("no-responders reply");
    let parts: Vec<&str> = line.split(' ').collect();
    assert_eq!(&parts[..3], ["HMSG", "my.inbox", "1"], "line {line:?}");
    let total: usize = parts.last().unwrap().parse().unwrap();
    let body = raw.bytes(total + 2).await;
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("NATS/1.0 503"), "status block {text:?}");
    expect_alive(&mut raw).await;
}

#[tokio::test]
async fn unknown_operation_is_an_error_and_closes() {
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.handshake(QUIET).await;
    raw.send("FOO bar\r\n").await;
    expect_err_and_close(&mut raw, "Unknown Protocol Operation").await;

    // Also before CONNECT.
    let mut raw = s.raw().await;
    raw.send("HELLO\r\n").await;
    expect_err_and_close(&mut raw, "Unknown Protocol Operation").await;
}

#[tokio::test]
async fn payload_longer_than_declared_is_an_error_and_closes() {
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.handshake(QUIET).await;
    raw.send("PUB foo 3\r\nxxxxx\r\n").await;
    expect_err_and_close(&mut raw, "Unknown Protocol Operation").await;
}

#[tokio::test]
async fn invalid_subject_on_sub_keeps_the_connection() {
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.handshake(QUIET).await;
    for bad in ["foo..bar", "foo.", ".foo", "foo.>.bar"] {
        raw.send(&format!("SUB {bad} 1\r\n")).await;
        assert_eq!(
            raw.next().await.as_deref(),
            Some("-ERR 'Invalid Subject'"),
            "subject {bad:?}"
        );
        expect_alive(&mut raw).await;
    }
    // The connection still works normally.
    raw.send("SUB ok.subject 2\r\nPUB ok.subject 2\r\nok\r\n")
        .await;
    assert_eq!(raw.next().await.as_deref(), Some("MSG ok.subject 2 2"));
    assert_eq!(raw.bytes(4).await, b"ok\r\n");
}

#[tokio::test]
async fn max_control_line_default_is_4k() {
    let s = Server::start(&[]);
    // Just under the limit is fine.
    let mut raw = s.raw().await;
    raw.handshake(QUIET).await;
    let long = "a".repeat(3000);
    raw.send(&format!("SUB {long} 1\r\n")).await;
    expect_alive(&mut raw).await;

    // Over it is fatal.
    let long = "b".repeat(5000);
    raw.send(&format!("SUB {long} 2\r\n")).await;
    expect_err_and_close(&mut raw, "maximum control line exceeded").await;
}

#[tokio::test]
async fn max_control_line_from_config_even_without_crlf() {
    let s = Server::start_with_config("max_control_line: 512\n", &[]);
    let mut raw = s.raw().await;
    raw.handshake(QUIET).await;
    let long = "c".repeat(600);
    // No line end at all: the server must not wait for one forever.
    raw.send(&format!("SUB {long}")).await;
    expect_err_and_close(&mut raw, "maximum control line exceeded").await;
}

#[tokio::test]
async fn hpub_without_headers_support_closes() {
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.handshake(r#"{"verbose":false,"pedantic":false,"protocol":1,"headers":false}"#)
        .await;
    raw.send("HPUB foo 12 14\r\nNATS/1.0\r\n\r\nxx\r\n").await;
    raw.expect_closed(Duration::from_secs(5)).await;
}

/// The reference's parser is lenient: lower-case verbs, runs of spaces or
/// tabs between arguments, bare LF line ends.
#[tokio::test]
async fn lenient_parsing_like_the_reference() {
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.handshake(QUIET).await;
    raw.send("sub lenient.a 1\r\npub lenient.a 1\r\nx\r\n")
        .await;
    assert_eq!(raw.next().await.as_deref(), Some("MSG lenient.a 1 1"));
    assert_eq!(raw.bytes(3).await, b"x\r\n");
    raw.send("SUB  lenient.b \t 2\r\nPUB   lenient.b\t 2\r\nyz\r\n")
        .await;
    assert_eq!(raw.next().await.as_deref(), Some("MSG lenient.b 2 2"));
    assert_eq!(raw.bytes(4).await, b"yz\r\n");
    raw.send("SUB lenient.c 3\nPUB lenient.c 1\nq\r\nPING\n")
        .await;
    assert_eq!(raw.next().await.as_deref(), Some("MSG lenient.c 3 1"));
    assert_eq!(raw.bytes(3).await, b"q\r\n");
    assert_eq!(raw.next().await.as_deref(), Some("PONG"));
}

/// Malformed arguments are protocol violations: the connection is closed.
#[tokio::test]
async fn malformed_arguments_close_the_connection() {
    let s = Server::start(&[]);
    let cases = [
        "PUB foo\r\n",
        "PUB foo -1\r\n",
        "PUB foo bar baz 1\r\n",
        "SUB foo\r\n",
        "SUB foo bar baz qux\r\n",
        "UNSUB\r\n",
        "CONNECT {bad json\r\n",
    ];
    for case in cases {
        let mut raw = s.raw().await;
        if !case.starts_with("CONNECT") {
            raw.handshake(QUIET).await;
        }
        raw.send(case).await;
        // Whatever -ERR precedes it, the server must hang up.
        raw.expect_closed(Duration::from_secs(5)).await;
    }
    // HPUB whose header size exceeds its total size.
    let mut raw = s.raw().await;
    raw.handshake(r#"{"verbose":false,"pedantic":false,"protocol":1,"headers":true}"#)
        .await;
    raw.send("HPUB foo 20 10\r\n0123456789\r\n").await;
    raw.expect_closed(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn server_only_operations_from_a_client() {
    let s = Server::start(&[]);
    // MSG is not something a client may send.
    let mut raw = s.raw().await;
    raw.handshake(QUIET).await;
    raw.send("MSG foo 1 1\r\nx\r\n").await;
    expect_err_and_close(&mut raw, "Unknown Protocol Operation").await;
    // INFO and PONG from a client are accepted and ignored.
    let mut raw = s.raw().await;
    raw.handshake(QUIET).await;
    raw.send("INFO {}\r\nPONG\r\n").await;
    expect_alive(&mut raw).await;
    // -ERR from a client closes its connection.
    let mut raw = s.raw().await;
    raw.handshake(QUIET).await;
    raw.send("-ERR 'client says no'\r\n").await;
    raw.expect_closed(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn unsub_unknown_sid_and_duplicate_sid_are_harmless() {
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.handshake(QUIET).await;
    raw.send("UNSUB 99\r\nUNSUB 98 5\r\n").await;
    expect_alive(&mut raw).await;
    // The same sid twice is still one subscription: one delivery.
    raw.send("SUB dup 1\r\nSUB dup 1\r\nPUB dup 1\r\nx\r\nPING\r\n")
        .await;
    assert_eq!(raw.next().await.as_deref(), Some("MSG dup 1 1"));
    assert_eq!(raw.bytes(3).await, b"x\r\n");
    assert_eq!(raw.next().await.as_deref(), Some("PONG"));
}

/// The parser copes with any split of the stream: one byte per write.
#[tokio::test]
async fn byte_at_a_time_input() {
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    let stream = format!(
        "CONNECT {QUIET}\r\nSUB trickle 1\r\nPUB trickle reply.x 5\r\nhello\r\nHPUB trickle 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n"
    );
    // Headers must be enabled for the HPUB part.
    let stream = stream.replacen(r#""protocol":1"#, r#""protocol":1,"headers":true"#, 1);
    for b in stream.as_bytes() {
        raw.send_bytes(std::slice::from_ref(b)).await;
        tokio::task::yield_now().await;
    }
    assert_eq!(raw.next().await.as_deref(), Some("MSG trickle 1 reply.x 5"));
    assert_eq!(raw.bytes(7).await, b"hello\r\n");
    assert_eq!(raw.next().await.as_deref(), Some("HMSG trickle 1 12 14"));
    assert_eq!(raw.bytes(16).await, b"NATS/1.0\r\n\r\nhi\r\n");
    assert_eq!(raw.next().await.as_deref(), Some("PONG"));
}

/// Thousands of operations in one write are all processed, in order.
#[tokio::test]
async fn pipelined_batch_in_one_write() {
    let s = Server::start(&[]);
    let mut sub = s.raw().await;
    sub.handshake(QUIET).await;
    sub.send("SUB batch 1\r\nPING\r\n").await;
    assert_eq!(sub.next().await.as_deref(), Some("PONG"));
    let mut p = s.raw().await;
    p.handshake(QUIET).await;
    let mut buf = String::new();
    for i in 0..5000 {
        let body = i.to_string();
        buf.push_str(&format!("PUB batch {}\r\n{body}\r\n", body.len()));
    }
    buf.push_str("PING\r\n");
    p.send(&buf).await;
    assert_eq!(p.next().await.as_deref(), Some("PONG"));
    for i in 0..5000 {
        let body = i.to_string();
        assert_eq!(
            sub.next().await,
            Some(format!("MSG batch 1 {}", body.len())),
            "message {i}"
        );
        assert_eq!(
            sub.bytes(body.len() + 2).await,
            format!("{body}\r\n").as_bytes()
        );
    }
}

/// Random bytes, truncated operations and abrupt closes on many
/// connections do not take the server down or disturb other clients.
#[tokio::test]
async fn server_survives_garbage_and_abrupt_closes() {
    use rand::{Rng, SeedableRng};
    let mut s = Server::start(&[]);
    let good = s.client().await;
    let mut sub = good.subscribe("survivor").await.unwrap();
    common::sync(&good).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let prefixes: [&[u8]; 6] = [
        b"",
        b"PUB foo 100\r\nabc",
        b"HPUB foo 10 5\r\n",
        b"SUB foo",
        b"CONNECT {\"verbose\":",
        b"PUB foo 5\r\nhello\r\nPUB bar 99999999999999999999\r\n",
    ];
    for i in 0..60 {
        let mut raw = s.raw().await;
        let mut bytes = prefixes[i % prefixes.len()].to_vec();
        let n = rng.gen_range(0..2048);
        bytes.extend((0..n).map(|_| rng.gen::<u8>()));
        raw.send_bytes(&bytes).await;
        // Sometimes hang up at once, sometimes wait for the server to.
        if i % 2 == 0 {
            drop(raw);
        } else {
            let _ = tokio::time::timeout(
                Duration::from_millis(200),
                raw.expect_closed(Duration::from_secs(1)),
            )
            .await;
        }
    }
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "server died\n{}",
        s.log()
    );
    let p = s.client().await;
    p.publish("survivor", "ok".into()).await.unwrap();
    p.flush().await.unwrap();
    let m = common::within("delivery", futures::StreamExt::next(&mut sub))
        .await
        .unwrap();
    assert_eq!(m.payload, "ok");
    assert!(!s.log().contains("panicked"), "{}", s.log());
}

/// A subscriber that did not ask for headers gets an HPUB as a plain MSG
/// with the headers stripped, even when it arrives from another connection.
#[tokio::test]
async fn headers_are_stripped_for_subscribers_without_header_support() {
    let s = Server::start(&[]);
    let mut plain = s.raw().await;
    plain
        .handshake(r#"{"verbose":false,"pedantic":false,"protocol":1,"headers":false}"#)
        .await;
    plain.send("SUB strip 1\r\nPING\r\n").await;
    assert_eq!(plain.next().await.as_deref(), Some("PONG"));
    let mut p = s.raw().await;
    p.handshake(r#"{"verbose":false,"pedantic":false,"protocol":1,"headers":true}"#)
        .await;
    p.send("HPUB strip 12 17\r\nNATS/1.0\r\n\r\nhello\r\nPING\r\n")
        .await;
    assert_eq!(p.next().await.as_deref(), Some("PONG"));
    assert_eq!(plain.next().await.as_deref(), Some("MSG strip 1 5"));
    assert_eq!(plain.bytes(7).await, b"hello\r\n");
}

#[tokio::test]
async fn no_responders_without_headers_is_rejected() {
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.send("CONNECT {\"verbose\":false,\"headers\":false,\"no_responders\":true}\r\nPING\r\n")
        .await;
    expect_err_and_close(&mut raw, "no responders requires headers support").await;
}

/// A second CONNECT is accepted (the reference updates the options).
#[tokio::test]
async fn second_connect_is_accepted() {
    let s = Server::start(&[]);
    let mut raw = s.raw().await;
    raw.handshake(QUIET).await;
    raw.send("CONNECT {\"verbose\":true}\r\n").await;
    assert_eq!(raw.next().await.as_deref(), Some("+OK"));
    raw.send("SUB again 1\r\n").await;
    assert_eq!(raw.next().await.as_deref(), Some("+OK"));
    expect_alive(&mut raw).await;
}
