//! NATS over WebSocket: the `websocket {}` listener with async-nats's
//! websocket transport (and a raw upgrade), the same protocol, auth and
//! permissions as TCP, with and without TLS. Runs against the reference too
//! (`BROKER_EDGE_BIN=/usr/sbin/nats-server`).

mod common;

use std::time::Duration;

use common::Server;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server with a plain websocket listener (plus `extra` in its block),
/// once it says it listens; returns the server and the websocket port.
async fn ws_server(extra: &str) -> (Server, u16) {
    let port = free_port();
    let s = Server::start_with_config(
        &format!(
            "websocket {{\n  host: 127.0.0.1\n  port: {port}\n  no_tls: true\n  {extra}\n}}\n"
        ),
        &[],
    );
    s.wait_log("Listening for websocket clients", Duration::from_secs(5))
        .await;
    (s, port)
}

async fn ws_client(port: u16, opts: async_nats::ConnectOptions) -> async_nats::Client {
    tokio::time::timeout(
        Duration::from_secs(10),
        opts.connect(format!("ws://127.0.0.1:{port}")),
    )
    .await
    .expect("websocket connect timed out")
    .expect("websocket connect")
}

#[tokio::test]
async fn websocket_and_tcp_clients_share_subjects() {
    let (s, port) = ws_server("").await;
    s.wait_log(
        "Listening for websocket clients on ws://127.0.0.1:",
        Duration::from_secs(5),
    )
    .await;
    let ws = ws_client(port, async_nats::ConnectOptions::new()).await;
    let tcp = s.client().await;
    let mut from_tcp = ws.subscribe("ws.in").await.unwrap();
    let mut from_ws = tcp.subscribe("ws.out").await.unwrap();
    ws.flush().await.unwrap();
    tcp.flush().await.unwrap();
    // Round trips so both subscriptions are known server-wide.
    common::sync(&ws).await;
    common::sync(&tcp).await;
    tcp.publish("ws.in", "to browser".into()).await.unwrap();
    ws.publish("ws.out", "from browser".into()).await.unwrap();
    let a = tokio::time::timeout(Duration::from_secs(5), from_tcp.next())
        .await
        .unwrap()
        .unwrap();
    let b = tokio::time::timeout(Duration::from_secs(5), from_ws.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.payload.as_ref(), b"to browser");
    assert_eq!(b.payload.as_ref(), b"from browser");
    // Request/reply across transports.
    let mut svc = tcp.subscribe("ws.svc").await.unwrap();
    common::sync(&tcp).await;
    let tcp2 = tcp.clone();
    tokio::spawn(async move {
        if let Some(m) = svc.next().await {
            if let Some(r) = m.reply {
                tcp2.publish(r, "pong".into()).await.unwrap();
            }
        }
    });
    let resp = tokio::time::timeout(Duration::from_secs(5), ws.request("ws.svc", "ping".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.payload.as_ref(), b"pong");
}

#[tokio::test]
async fn websocket_authorization_block_applies() {
    let (_s, port) = ws_server("authorization { user: web, password: web-Pw-1 }").await;
    let bad = tokio::time::timeout(
        Duration::from_secs(10),
        async_nats::ConnectOptions::new()
            .max_reconnects(0)
            .user_and_password("web".into(), "wrong".into())
            .connect(format!("ws://127.0.0.1:{port}")),
    )
    .await
    .expect("no answer");
    assert!(bad.is_err(), "wrong websocket password accepted");
    let ok = ws_client(
        port,
        async_nats::ConnectOptions::new().user_and_password("web".into(), "web-Pw-1".into()),
    )
    .await;
    common::sync(&ok).await;
}

#[tokio::test]
async fn raw_upgrade_carries_info_in_a_binary_frame() {
    let (_s, port) = ws_server("").await;
    let mut t = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    t.write_all(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&got).contains("INFO") {
        let n = tokio::time::timeout_at(deadline, t.read(&mut buf))
            .await
            .expect("no INFO frame")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{text}");
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        got[head_end] & 0x0f,
        0x2,
        "INFO should come in a binary frame"
    );
}

#[tokio::test]
async fn plain_http_request_is_refused() {
    let (_s, port) = ws_server("").await;
    let mut t = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    t.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), t.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 4"), "{text}");
}

/// Hardening #11: `allowed_connection_types` holds for websocket clients
/// (they used to be checked as STANDARD: a STANDARD-only user got in over
/// websocket and a WEBSOCKET-only user was refused there).
#[tokio::test]
async fn allowed_connection_types_apply_to_websocket() {
    let port = free_port();
    let s = Server::start_with_config(
        &format!(
            "authorization {{ users: [\n\
               {{ user: tcp, password: tcp-Pw-1, allowed_connection_types: [\"STANDARD\"] }}\n\
               {{ user: web, password: web-Pw-1, allowed_connection_types: [\"WEBSOCKET\"] }}\n\
             ] }}\n\
             websocket {{\n  host: 127.0.0.1\n  port: {port}\n  no_tls: true\n}}\n"
        ),
        &[],
    );
    s.wait_log("Listening for websocket clients", Duration::from_secs(5))
        .await;
    let try_connect = |url: String, user: &str, pass: &str| {
        let opts = async_nats::ConnectOptions::new()
            .max_reconnects(0)
            .user_and_password(user.into(), pass.into());
        async move {
            tokio::time::timeout(Duration::from_secs(10), opts.connect(url))
                .await
                .expect("no answer")
        }
    };
    let ws = format!("ws://127.0.0.1:{port}");
    let web = try_connect(ws.clone(), "web", "web-Pw-1")
        .await
        .expect("WEBSOCKET user over websocket");
    common::sync(&web).await;
    assert!(
        try_connect(ws, "tcp", "tcp-Pw-1").await.is_err(),
        "a STANDARD-only user got in over websocket"
    );
    let tcp = try_connect(s.url(), "tcp", "tcp-Pw-1")
        .await
        .expect("STANDARD user over TCP");
    common::sync(&tcp).await;
    assert!(
        try_connect(s.url(), "web", "web-Pw-1").await.is_err(),
        "a WEBSOCKET-only user got in over TCP"
    );
}
